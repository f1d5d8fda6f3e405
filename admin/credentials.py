"""Proving the credentials the admin API accepts besides ``ADMIN_TOKEN``: admin keys and
portal sessions (SPEC §8), both in the token format of §3 with the prefix
``<TOKEN_PREFIX>adm``.

A presented key costs one indexed lookup on every request (its row: role, project,
expiry; and its last use stamped), so a revoked key or a deleted project is refused at
once by every admin instance; the argon2 proof of its secret runs at most once per
process (``gateway.core.proofs``, as the gateway does for tokens), concurrent first uses
share one run, and a wrong secret is remembered for a while so it costs no new run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from gateway.core import tokens
from gateway.core.errors import Unauthorized
from gateway.core.proofs import NegativeCache, ProofCache
from gateway.core.singleflight import SingleFlight
from gateway.core.store_keys import PORTAL, KeyRecord, KeyStore

from .context import ROLES, Principal, Role

NEGATIVE_TTL: Final = 60.0  # seconds a wrong key is remembered


def key_prefix(token_prefix: str) -> str:
    """``tg`` -> ``tgadm``: admin keys look like tokens but never pass for one."""
    return f"{token_prefix}adm"


class Credentials:
    def __init__(
        self,
        store: KeyStore,
        hasher: tokens.Hasher,
        token_prefix: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self.prefix = key_prefix(token_prefix)
        self._proofs = ProofCache(maxsize=10_000)
        self._negatives = NegativeCache(NEGATIVE_TTL, clock=clock)
        self._verifying: SingleFlight[bytes, bool] = SingleFlight()
        self.argon2_runs = 0

    def looks_like_key(self, raw: str) -> bool:
        return raw.startswith(self.prefix + "_")

    async def prove(self, raw: str) -> Principal:
        """The principal of a live key or session; 401 for anything else."""
        token = tokens.parse(raw, self.prefix)
        key = tokens.digest(raw)
        if token is None or key in self._negatives:
            raise _invalid()
        record = await self._store.record(token.id)
        if record is None:  # revoked, its project deleted, or never issued
            self._proofs.evict(token.id)
            raise _invalid()
        proven = self._proofs.get(key) == token.id
        if not proven and not await self._verifying.run(
            key, lambda: self._verify(key, record, token)
        ):
            raise _invalid()
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            what = "portal session" if record.kind == PORTAL else "admin key"
            raise Unauthorized(f"the {what} has expired", headers=_challenge("invalid_token"))
        return _principal(record)

    async def _verify(self, key: bytes, record: KeyRecord, token: tokens.Token) -> bool:
        """argon2 once, its verdict remembered before the shared call ends: a request whose
        lookup returns just after it ended finds the verdict, and does not verify again."""
        self.argon2_runs += 1
        genuine = await asyncio.to_thread(self._hasher.verify, record.secret_hash, token.secret)
        if genuine:
            self._proofs.add(key, token.id)
        else:
            self._negatives.add(key)
        return genuine


REALM: Final = 'Bearer realm="tollgate-admin"'


def _challenge(error: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'{REALM}, error="{error}"'}


def _invalid() -> Unauthorized:
    return Unauthorized("the admin credential is not valid", headers=_challenge("invalid_token"))


_ROLES: Final[dict[str, Role]] = {role: role for role in ROLES}


def _principal(record: KeyRecord) -> Principal:
    role = _ROLES[record.role]  # the table's CHECK allows these three only
    if record.kind == PORTAL:
        return Principal("portal", role, record.id, record.name, record.project_id)
    return Principal("admin_key", role, record.id, record.name, record.project_id)
