"""The token format, generation, parsing and argon2id hashing. Pure functions.

A token reads ``<prefix>_<id>_<secret><checksum>``; every part after the prefix is
base62 (``0-9A-Za-z``, most significant digit first, zero-padded):

* ``id``: 17 characters holding 101 random bits, the public identifier;
* ``secret``: 43 characters holding 256 bits from :mod:`secrets`;
* ``checksum``: 6 characters, the CRC32 of ``<prefix>_<id>_<secret>``, so typos and
  garbage are rejected before any database or hash work (as GitHub tokens do).

Only canonical encodings parse (no value above its bit width), so a string parses
to exactly the token it was generated as, or is rejected.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass, field

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .config import Settings

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {char: value for value, char in enumerate(ALPHABET)}

ID_BITS, ID_LEN = 101, 17
SECRET_BITS, SECRET_LEN = 256, 43
CHECKSUM_LEN = 6

_BODY = re.compile(rf"([0-9A-Za-z]{{{ID_LEN}}})_([0-9A-Za-z]{{{SECRET_LEN + CHECKSUM_LEN}}})")
_ID = re.compile(rf"[0-9A-Za-z]{{{ID_LEN}}}")


def b62encode(value: int, width: int) -> str:
    digits = []
    while value:
        value, digit = divmod(value, 62)
        digits.append(ALPHABET[digit])
    if len(digits) > width:
        raise ValueError("value does not fit the width")
    return "".join(reversed(digits)).rjust(width, "0")


def b62decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + _INDEX[char]
    return value


def checksum(body: str) -> str:
    return b62encode(zlib.crc32(body.encode()), CHECKSUM_LEN)


@dataclass(frozen=True, slots=True)
class Token:
    """A parsed token. The secret never appears in ``repr``."""

    prefix: str
    id: str
    secret: str = field(repr=False)

    def __str__(self) -> str:
        body = f"{self.prefix}_{self.id}_{self.secret}"
        return body + checksum(body)


def new_id() -> str:
    """A fresh public identifier (101 random bits); also used for project ids."""
    return b62encode(secrets.randbits(ID_BITS), ID_LEN)


def generate(prefix: str) -> Token:
    return Token(prefix, new_id(), b62encode(secrets.randbits(SECRET_BITS), SECRET_LEN))


def is_token_id(text: str) -> bool:
    """Whether ``text`` could be a token's public id (cheap check for URL parameters)."""
    return _ID.fullmatch(text) is not None and b62decode(text) < (1 << ID_BITS)


def parse(raw: str, prefix: str) -> Token | None:
    """The token in ``raw``, or None when it is malformed or its checksum is wrong."""
    head = prefix + "_"
    if not raw.startswith(head):
        return None
    match = _BODY.fullmatch(raw, len(head))
    if match is None:
        return None
    token_id, tail = match[1], match[2]
    secret, check = tail[:SECRET_LEN], tail[SECRET_LEN:]
    if b62decode(token_id) >> ID_BITS or b62decode(secret) >> SECRET_BITS:
        return None
    if not secrets.compare_digest(checksum(raw[:-CHECKSUM_LEN]), check):
        return None
    return Token(prefix, token_id, secret)


def scanner_pattern(prefix: str) -> str:
    """The regular expression a secret scanner finds this prefix's tokens with (README)."""
    tail = SECRET_LEN + CHECKSUM_LEN
    return rf"\b{re.escape(prefix)}_[0-9A-Za-z]{{{ID_LEN}}}_[0-9A-Za-z]{{{tail}}}\b"


def masked(prefix: str, token_id: str) -> str:
    """What lists show: enough to recognise a token, nothing that helps guess it."""
    return f"{prefix}_{token_id}_…••••••••"


def digest(raw: str) -> bytes:
    """A cache key for the whole token: the raw token itself is never kept."""
    return hashlib.blake2b(raw.encode(), digest_size=32).digest()


class Hasher:
    """argon2id hashing of token secrets (OWASP profile by default: m=19 MiB, t=2, p=1)."""

    def __init__(self, *, time_cost: int = 2, memory_cost: int = 19456, parallelism: int = 1):
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Hasher:
        """The hasher the ``ARGON2_*`` settings describe."""
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
        )

    def hash(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def verify(self, secret_hash: str, secret: str) -> bool:
        """Whether ``secret`` matches; False for a mismatch or an unreadable hash."""
        try:
            return self._hasher.verify(secret_hash, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
