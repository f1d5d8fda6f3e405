"""Proofs: a raw token in, the :class:`TokenState` of a proven, live token out.

One pass, cheapest step first::

    digest -> proof cache -> state cache                      (a token proven before)
           -> negative cache -> checksum -> failure throttle   (a first use)
           -> single flight -> one store lookup (batched) -> argon2 in the executor
           -> a failure paced while failures are frequent
           -> both caches filled in :meth:`Authenticator._remember`, and only there

argon2 runs at most once per token and process, never on the event loop. Unknown,
wrong-secret and revoked tokens get the same 401, so an answer never tells whether a
token id exists; only an expired (but genuine) token says so. The listener calls
:meth:`~Authenticator.forget_token`, :meth:`~Authenticator.update_token`,
:meth:`~Authenticator.forget_project` and :meth:`~Authenticator.expire_all` when
Postgres says something changed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from email.utils import formatdate
from typing import Any

from gateway.core import db, tokens
from gateway.core.batches import Batches
from gateway.core.errors import ServiceUnavailable, TollgateError, TooManyRequests
from gateway.core.proofs import NegativeCache, ProofCache
from gateway.core.rates import Quota, Rate, parse_quota, parse_rate
from gateway.core.singleflight import SingleFlight
from gateway.core.store import AuthRecord, Store

from .bearer import expired_token, invalid_token
from .caches import StateCache, TokenState
from .capabilities import compile_rules
from .metrics import GatewayMetrics
from .ratelimit.throttle import FailurePacing, FailureThrottle

log = logging.getLogger(__name__)

DB_TIMEOUT = 3.0  # seconds for one auth lookup before Postgres counts as unreachable
STALE_RETRY = 1.0  # after a failed refresh, serve the stale state this long before retrying
NEGATIVE_TTL = 60.0  # a wrong token is remembered this long (it can never become right)
# Lookups of concurrent cache misses are sent together: this many queries at a time at most,
# the others gather meanwhile (a flood of unknown ids costs Postgres one query per batch).
LOOKUP_QUERIES = 2


def deprecation(rotated_at: float | None, expires_at: float | None) -> dict[str, str] | None:
    """The headers telling a rotated token's clients it is retired, and when it stops
    working: ``Deprecation`` (RFC 9745) and ``Sunset`` (RFC 8594)."""
    if rotated_at is None:
        return None
    notice = {"Deprecation": f"@{int(rotated_at)}"}
    if expires_at is not None:
        notice["Sunset"] = formatdate(expires_at, usegmt=True)
    return notice


class Authenticator:
    def __init__(
        self,
        store: Store,
        hasher: tokens.Hasher,
        executor: Executor,
        metrics: GatewayMetrics,
        *,
        prefix: str,
        ttl: float,
        default_rate: Rate,
        max_pending: int,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._executor = executor
        self._prefix = prefix
        self._default_rate = default_rate
        self._max_pending = max_pending
        self._pending = 0
        self._wallclock = wallclock
        self.proofs = ProofCache()
        self.states = StateCache(ttl, clock=clock)
        self._negatives = NegativeCache(NEGATIVE_TTL, clock=clock)
        self._throttle = FailureThrottle(clock=clock)
        self.pacing = FailurePacing(clock=clock)
        self._verifications: SingleFlight[bytes, TokenState] = SingleFlight()
        self._lookups: SingleFlight[str, AuthRecord | None] = SingleFlight()
        self._batches: Batches[str, AuthRecord | None] = Batches(
            self._records, missing=None, max_in_flight=LOOKUP_QUERIES
        )
        self._db_down = False
        self._lookups_failing = False
        self._hit = metrics.token_cache.labels("hit")
        self._miss = metrics.token_cache.labels("miss")
        self._negative = metrics.token_cache.labels("negative")
        self._valid = metrics.verifications.labels("valid")
        self._invalid = metrics.verifications.labels("invalid")

    async def prove(self, raw: str) -> TokenState:
        """The state of the live token ``raw``; raises the 401/429/503 to answer otherwise."""
        key = tokens.digest(raw)
        token_id = self.proofs.get(key)
        if token_id is None:
            state = await self._first_use(raw, key)
        else:
            self._hit.inc()
            state = self.states.get(token_id) or await self._current(token_id)
        if state.expires_at is not None and state.expires_at <= self._wallclock():
            raise expired_token()
        return state

    # ------------------------------------------------------------ what the listener says

    def forget_token(self, token_id: str) -> None:
        self.states.evict(token_id)
        self.proofs.evict(token_id)

    def update_token(self, token_id: str, extra: Mapping[str, Any]) -> None:
        """A rotation moved the token's expiry: applied to its cached state at once (stale
        or fresh), from the event; re-read from Postgres when the event does not say."""
        state = self.states.stale(token_id)
        if state is None:
            return
        expires_at, rotated_at = extra.get("expires_at"), extra.get("rotated_at")
        if not all(isinstance(v, int | float) for v in (expires_at, rotated_at)):
            self.states.evict(token_id)
            return
        assert isinstance(expires_at, int | float) and isinstance(rotated_at, int | float)
        state.expires_at = float(expires_at)
        state.notice = deprecation(float(rotated_at), float(expires_at))

    def forget_project(self, project_id: str, *, deleted: bool) -> None:
        for token_id in self.states.evict_project(project_id):
            if deleted:
                self.proofs.evict(token_id)

    def expire_all(self) -> None:
        """Events may have been missed: re-read every cached state before its next use."""
        self.states.expire_all()

    # ------------------------------------------------------------ first use

    async def _first_use(self, raw: str, key: bytes) -> TokenState:
        if key in self._negatives:
            self._negative.inc()
            raise invalid_token()
        token = tokens.parse(raw, self._prefix)
        if token is None:  # bad shape or checksum: no database or hash work
            raise invalid_token()
        self._miss.inc()
        return await self._verifications.run(key, lambda: self._verify(token, key))

    async def _verify(self, token: tokens.Token, key: bytes) -> TokenState:
        wait = self._throttle.acquire(token.id)
        if wait:
            raise TooManyRequests(
                "too many failed attempts with this token id; retry later",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        try:
            record = await self._lookup(token.id)
            genuine = record is not None and await self._argon2(record.secret_hash, token.secret)
        except Exception:
            # Nothing was tried (Postgres unreachable, shedding, or a bug answered 500):
            # not a failed attempt, or a bug would soon turn into 429s.
            self._throttle.refund(token.id)
            raise
        if record is None or not genuine:
            self._negatives.add(key)
            wait = self.pacing.failed()
            if wait:
                await asyncio.sleep(wait)
            raise invalid_token()
        self._throttle.refund(token.id)
        return self._remember(key, record)

    async def _argon2(self, secret_hash: str, secret: str) -> bool:
        if self._pending >= self._max_pending:
            # Shedding: a queue of argon2 runs longer than this only adds latency.
            raise ServiceUnavailable(
                "too many token verifications in progress; retry shortly",
                headers={"Retry-After": "1"},
            )
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(
                self._executor, self._hasher.verify, secret_hash, secret
            )
        finally:
            self._pending -= 1
        (self._valid if ok else self._invalid).inc()
        return ok

    def _remember(self, key: bytes, record: AuthRecord) -> TokenState:
        """The one place both caches are filled: a proven token and its current state."""
        state = self._state(record)
        self.states.put(state)
        self.proofs.add(key, record.token_id)
        return state

    # ------------------------------------------------------------ a proven token

    async def _current(self, token_id: str) -> TokenState:
        """Fresh state from Postgres; the stale one if Postgres cannot answer."""
        try:
            record = await self._lookup(token_id)
        except ServiceUnavailable:
            stale = self.states.stale(token_id)
            if stale is None:
                raise
            self.states.retry_later(stale, STALE_RETRY)
            return stale
        if record is None:  # revoked or deleted while we were not listening
            self.forget_token(token_id)
            raise invalid_token()
        state = self._state(record)
        self.states.put(state)
        return state

    # ------------------------------------------------------------ Postgres

    async def _lookup(self, token_id: str) -> AuthRecord | None:
        """The row, one query for all concurrent callers; 503 when Postgres cannot answer,
        500 when it answers with an error."""
        return await self._lookups.run(token_id, lambda: self._fetch(token_id))

    async def _records(self, token_ids: list[str]) -> dict[str, AuthRecord]:
        async with asyncio.timeout(DB_TIMEOUT):  # a hung query must give its place back
            return await self._store.auth_records(token_ids)

    async def close(self) -> None:
        """Cancel the lookups still out (before the pool closes)."""
        await self._batches.close()

    async def _fetch(self, token_id: str) -> AuthRecord | None:
        try:
            async with asyncio.timeout(DB_TIMEOUT):
                record = await self._batches.load(token_id)
        except db.UNREACHABLE as err:
            if not self._db_down:
                log.warning("Postgres unreachable for token lookups: %s", err)
                self._db_down = True
            raise ServiceUnavailable(
                "token store unreachable; retry shortly", headers={"Retry-After": "1"}
            ) from None
        except Exception:
            # A missing table, a query error: a bug or a schema mismatch, answered 500 and
            # never mistaken for an outage (no stale fallback, no 503).
            self._lookup_failed()
            raise TollgateError() from None
        if self._db_down or self._lookups_failing:
            log.info("token lookups answer again")
            self._db_down = self._lookups_failing = False
        return record

    def _lookup_failed(self) -> None:
        """The traceback once (called from an ``except``), then one line per lookup."""
        if self._lookups_failing:
            log.error("token lookup failed again (not an outage); see the first error")
            return
        self._lookups_failing = True
        log.exception("token lookup failed: not an outage but a bug or a schema mismatch")

    def _state(self, record: AuthRecord) -> TokenState:
        rate = self._default_rate
        if record.rate_limit is not None:
            try:
                rate = parse_rate(record.rate_limit)
            except ValueError:
                log.warning("project %s has an unreadable rate limit", record.project_id)
        expires_at = None if record.expires_at is None else record.expires_at.timestamp()
        rotated_at = None if record.rotated_at is None else record.rotated_at.timestamp()
        return TokenState(
            record.token_id,
            record.project_id,
            expires_at,
            rate,
            compile_rules(record.scopes, record.allowed_ips),
            deprecation(rotated_at, expires_at),
            self._quota(record),
        )

    def _quota(self, record: AuthRecord) -> Quota | None:
        if record.quota is None:
            return None
        try:
            return parse_quota(record.quota)
        except ValueError:
            log.warning("project %s has an unreadable quota; none applied", record.project_id)
            return None
