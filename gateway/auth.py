"""Who is calling: the Bearer header (RFC 6750) and the token behind it.

Checks, cheapest first: header syntax, proof cache (one dict lookup for a token
already proven), negative cache, checksum (no database or hash work for garbage),
per-id failure throttle, the row from Postgres, then argon2 in a bounded thread
pool, never on the event loop. Unknown, wrong-secret and revoked tokens get the
same 401, so an answer never tells whether a token id exists; only an expired
(but genuine) token says so.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime

from multidict import CIMultiDictProxy

from . import db, tokens
from .cache import (
    FailureThrottle,
    NegativeCache,
    ProofCache,
    SingleFlight,
    StateCache,
    TokenState,
)
from .errors import (
    BadRequest,
    InvalidToken,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from .metrics import GatewayMetrics
from .rates import Rate, parse_rate
from .store import AuthRecord, Store

log = logging.getLogger(__name__)

REALM = 'Bearer realm="tollgate"'
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

DB_TIMEOUT = 3.0  # seconds for one auth lookup before Postgres counts as unreachable
STALE_RETRY = 1.0  # after a failed refresh, serve the stale state this long before retrying
NEGATIVE_TTL = 60.0  # a wrong token is remembered this long (it can never become right)


# ---------------------------------------------------------------- the header


def _challenge(error: str, description: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'{REALM}, error="{error}", error_description="{description}"'}


def unauthenticated() -> Unauthorized:
    return Unauthorized(
        "send the token as: Authorization: Bearer <token>", headers={"WWW-Authenticate": REALM}
    )


def invalid_request(message: str) -> BadRequest:
    return BadRequest(
        message, code="invalid_request", headers=_challenge("invalid_request", message)
    )


class ExpiredToken(InvalidToken):
    """A genuine token past its ``expires_at``: the only refusal that admits a token exists."""

    message = "token expired"


def invalid_token() -> InvalidToken:
    return InvalidToken(headers=_challenge("invalid_token", InvalidToken.message))


def expired_token() -> ExpiredToken:
    return ExpiredToken(headers=_challenge("invalid_token", ExpiredToken.message))


def bearer_token(headers: CIMultiDictProxy[str]) -> str:
    """The token of ``Authorization: Bearer <token>``; raises the RFC 6750 answer.

    No header or another scheme: 401 without an error code (§3.1). A Bearer
    header that is not exactly ``Bearer <token>``, or several Authorization
    headers: 400 ``invalid_request``.
    """
    values = headers.getall("Authorization", ())
    if not values:
        raise unauthenticated()
    if len(values) > 1:
        raise invalid_request("send exactly one Authorization header")
    value = values[0]
    scheme, space, token = value.partition(" ")
    if scheme.lower() != "bearer":
        # "Bearer" followed by a tab is still a Bearer header, only a malformed one.
        if scheme[:6].lower() == "bearer" and scheme[6:7].isspace():
            raise invalid_request("use exactly: Authorization: Bearer <token>")
        raise unauthenticated()
    if not space or _B64TOKEN.fullmatch(token) is None:
        raise invalid_request("use exactly: Authorization: Bearer <token>")
    return token


# ---------------------------------------------------------------- the token


def _epoch(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()


class Authenticator:
    """Turns a raw token into the :class:`TokenState` of a proven, live token."""

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
        self.negatives = NegativeCache(NEGATIVE_TTL, clock=clock)
        self.throttle = FailureThrottle(clock=clock)
        self._verifications: SingleFlight[bytes, str] = SingleFlight()
        self._lookups: SingleFlight[str, AuthRecord | None] = SingleFlight()
        self._db_down = False
        self._hit = metrics.token_cache.labels("hit")
        self._miss = metrics.token_cache.labels("miss")
        self._negative = metrics.token_cache.labels("negative")
        self._valid = metrics.verifications.labels("valid")
        self._invalid = metrics.verifications.labels("invalid")

    async def authenticate(self, raw: str) -> TokenState:
        key = tokens.digest(raw)
        token_id = self.proofs.get(key)
        if token_id is None:
            token_id = await self._prove(raw, key)
        else:
            self._hit.inc()
        state = self.states.get(token_id)
        if state is None:
            state = await self._refresh(token_id)
        if state.expires_at is not None and state.expires_at <= self._wallclock():
            raise expired_token()
        return state

    # ------------------------------------------------------------ events

    def forget_token(self, token_id: str) -> None:
        self.states.evict(token_id)
        self.proofs.evict(token_id)

    def forget_project(self, project_id: str, *, deleted: bool) -> None:
        for token_id in self.states.evict_project(project_id):
            if deleted:
                self.proofs.evict(token_id)

    # ------------------------------------------------------------ slow path

    async def _prove(self, raw: str, key: bytes) -> str:
        if key in self.negatives:
            self._negative.inc()
            raise invalid_token()
        token = tokens.parse(raw, self._prefix)
        if token is None:
            raise invalid_token()
        self._miss.inc()
        return await self._verifications.run(key, lambda: self._verify(token, key))

    async def _verify(self, token: tokens.Token, key: bytes) -> str:
        wait = self.throttle.acquire(token.id)
        if wait:
            raise TooManyRequests(
                "too many failed attempts with this token id; retry later",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        try:
            ok = await self._check(token)
        except ServiceUnavailable:
            self.throttle.refund(token.id)  # nothing was tried: not a failed attempt
            raise
        if not ok:
            self.negatives.add(key)
            raise invalid_token()
        self.throttle.refund(token.id)
        self.proofs.add(key, token.id)
        return token.id

    async def _check(self, token: tokens.Token) -> bool:
        """Whether the row exists and its hash matches (argon2 in the thread pool)."""
        record = await self._lookup(token.id)
        if record is None:
            return False
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
                self._executor, self._hasher.verify, record.secret_hash, token.secret
            )
        finally:
            self._pending -= 1
        (self._valid if ok else self._invalid).inc()
        return ok

    async def _refresh(self, token_id: str) -> TokenState:
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
        # The entry _lookup just stored (fresh unless TOKEN_CACHE_TTL is 0).
        return self.states.stale(token_id) or self._state(record)

    async def _lookup(self, token_id: str) -> AuthRecord | None:
        """The row (one query for concurrent callers); stores the state it carries."""
        return await self._lookups.run(token_id, lambda: self._fetch(token_id))

    async def _fetch(self, token_id: str) -> AuthRecord | None:
        try:
            async with asyncio.timeout(DB_TIMEOUT):
                record = await self._store.auth_record(token_id)
        except db.UNREACHABLE as err:
            if not self._db_down:
                log.warning("Postgres unreachable for token lookups: %s", err)
                self._db_down = True
            raise ServiceUnavailable(
                "token store unreachable; retry shortly", headers={"Retry-After": "1"}
            ) from None
        if self._db_down:
            log.info("Postgres reachable again for token lookups")
            self._db_down = False
        if record is not None:
            self.states.put(self._state(record))
        return record

    def _state(self, record: AuthRecord) -> TokenState:
        rate = self._default_rate
        if record.rate_limit is not None:
            try:
                rate = parse_rate(record.rate_limit)
            except ValueError:
                log.warning("project %s has an unreadable rate limit", record.project_id)
        return TokenState(record.token_id, record.project_id, _epoch(record.expires_at), rate)
