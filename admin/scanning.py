"""GitHub secret scanning's partner protocol: verifying its signed reports (SPEC §13).

GitHub POSTs a JSON array of ``{"token", "type", "url", "source"}`` and signs the raw
body with ECDSA (NIST P-256, SHA-256): ``Github-Public-Key-Identifier`` names the key,
``Github-Public-Key-Signature`` is the base64 DER signature. The keys come from the file
``GITHUB_SCANNING_KEYS_FILE``, in the format GitHub publishes them::

    {"public_keys": [{"key_identifier": "...", "key": "-----BEGIN PUBLIC KEY-----...",
                      "is_current": true}]}

It is read at start (a missing or bad file stops the admin with one line) and again
whenever it changes, so a key rotation needs no restart; a bad new version is logged
and the keys read before stay in use.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.core.config import ConfigError

log = logging.getLogger(__name__)

VARIABLE: Final = "GITHUB_SCANNING_KEYS_FILE"
KEY_ID_HEADER: Final = "Github-Public-Key-Identifier"
SIGNATURE_HEADER: Final = "Github-Public-Key-Signature"

Keys = dict[str, ec.EllipticCurvePublicKey]


def parse_keys(text: str) -> Keys:
    """The P-256 public keys of a key list; ValueError naming what is wrong."""
    try:
        listed = json.loads(text)["public_keys"]
        entries = [(entry["key_identifier"], entry["key"]) for entry in listed]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f'not a GitHub key list ({{"public_keys": [...]}}): {err!r}') from None
    keys: Keys = {}
    for key_id, pem in entries:
        if not isinstance(key_id, str) or not isinstance(pem, str):
            raise ValueError("key_identifier and key must be strings")
        try:
            key = load_pem_public_key(pem.encode())
        except ValueError:
            raise ValueError(f"key {key_id!r} is not a PEM public key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError(f"key {key_id!r} is not an ECDSA P-256 key")
        keys[key_id] = key
    if not keys:
        raise ValueError("the list holds no keys")
    return keys


def verify(keys: Keys, key_id: str | None, signature: str | None, body: bytes) -> bool:
    """Whether ``body`` is signed by the listed key ``key_id``."""
    key = keys.get(key_id or "")
    if key is None or not signature:
        return False
    try:
        key.verify(base64.b64decode(signature, validate=True), body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


class KeyFile:
    """The keys of ``GITHUB_SCANNING_KEYS_FILE``, read again whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp = self._stat()
        try:
            self._keys = parse_keys(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeError, ValueError) as err:
            raise ConfigError(VARIABLE, f"cannot use {path}: {_reason(err)}") from None

    def keys(self) -> Keys:
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._keys = parse_keys(self._path.read_text(encoding="utf-8"))
                log.info("GitHub scanning keys read again from %s", self._path)
            except (OSError, UnicodeError, ValueError) as err:
                log.warning("keeping the GitHub scanning keys read before: %s", _reason(err))
        return self._keys

    def _stat(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self._path)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return str(err)


def labels(reports: list[dict[str, Any]], genuine: list[bool]) -> list[dict[str, Any]]:
    """GitHub's answer: each reported token with its verdict."""
    return [
        {
            "token_raw": report["token"],
            "token_type": report["type"],
            "label": "true_positive" if real else "false_positive",
        }
        for report, real in zip(reports, genuine, strict=True)
    ]
