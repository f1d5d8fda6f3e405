"""The ``redis`` rate-limit backend: GCRA buckets shared by every gateway instance.

Each hit is one round trip: ``EVALSHA`` of :data:`SCRIPT` (``EVAL`` once after a
``NOSCRIPT``, which also caches it on the server). The script reads the server's
clock (``TIME``), so instances with skewed clocks agree, and the step is atomic, so
instances share each token's limit exactly. A key lives until its TAT (``PX``): an
idle token costs nothing.

Needs Redis 5 or later (scripts replicate their effects, so ``TIME`` may precede
a write). When Redis fails (unreachable, timeout, any error), requests are limited
by a local limiter instead, counted in ``gateway_rate_limit_fallbacks_total``; an
outage is logged once when it starts and once when Redis answers again, and Redis
is tried again only after a growing backoff, not on every request. Meanwhile each
instance admits up to the full limit on its own.

A token refused by its rate limit is refused by this process, without asking Redis
again, until the first moment its bucket may admit a request (:class:`Refusals`): with
GCRA that moment cannot come sooner whatever other instances do, so this changes no
decision. A flood of over-limit requests then costs no round trips.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from gateway.core.config import mask_url
from gateway.core.gcra import US, Decision, Tat, bucket, decide, refused_until
from gateway.core.rates import Rate

from ..metrics import GatewayMetrics
from .local import DEFAULT_MAX_KEYS, LocalLimiter, QuotaHit, Shared
from .resp import NoScript, ReplyError, RespClient

log = logging.getLogger(__name__)

PREFIX = "tollgate:rl:"
QUOTA_PREFIX = "tollgate:quota:"
# Redis answers in well under a millisecond; a stalled one must not stall requests.
SOCKET_TIMEOUT = 0.5
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 5.0

# gcra.gcra in Lua, and the project's quota in the same step (one round trip for both).
# KEYS[1]: the bucket; ARGV: limit, period in µs. The value is "<us> <frac>": the TAT is
# us + frac/limit µs (Lua numbers are doubles, exact below 2^53, and epoch microseconds
# are about 2^51). With a quota, KEYS[2] counts the period's units and ARGV[3], ARGV[4]
# are the quota and the counter's lifetime in ms: a request is admitted only if the rate
# allows it AND a unit is left, and only then are the TAT moved and a unit taken.
# Returns {allowed, now, us, frac, used}: allowed 1, 0 (rate) or 2 (quota used up).
SCRIPT = """
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local us, frac = now, 0
local state = redis.call('GET', KEYS[1])
if state then
  local s_us, s_frac = string.match(state, '^(%d+) (%d+)$')
  s_us, s_frac = tonumber(s_us), tonumber(s_frac)
  if s_us and (s_us > now or (s_us == now and s_frac > 0)) then
    us, frac = s_us, math.min(s_frac, limit - 1)
  end
end
local used = 0
if KEYS[2] then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= tonumber(ARGV[3]) then
    return {2, now, us, frac, used}
  end
end
local step = math.floor(period / limit)
local rest = period - step * limit
local new_us, new_frac = us + step, frac + rest
if new_frac >= limit then
  new_us, new_frac = new_us + 1, new_frac - limit
end
local ahead = new_us - now
if ahead < period or (ahead == period and new_frac == 0) then
  local value = string.format('%.0f %.0f', new_us, new_frac)
  redis.call('SET', KEYS[1], value, 'PX', math.floor(ahead / 1000) + 1)
  if KEYS[2] then
    used = redis.call('INCR', KEYS[2])
    if used == 1 then
      redis.call('PEXPIRE', KEYS[2], ARGV[4])
    end
  end
  return {1, now, new_us, new_frac, used}
end
return {0, now, us, frac, used}
"""


class _Held(NamedTuple):
    until: int  # this process's clock (µs) at which the refusal may end
    asked: int  # this process's clock (µs) when Redis was asked
    now: int  # Redis's clock (µs) when it refused
    tat: Tat  # the TAT Redis kept


class Refusals:
    """Rate-limit refusals from Redis, held in this process until they may end.

    A refusal at Redis time ``now`` with TAT ``tat`` holds until
    :func:`~gateway.core.gcra.refused_until`. Redis's clock is mapped to this process's by
    the moment the request was sent: the script ran no earlier, so a held refusal ends no
    later than Redis's would. The answers' headers are computed as Redis would at that
    mapped moment. The bucket key names the rate, so a changed limit is asked afresh.
    Memory is bounded: the oldest entries make room (forgetting one costs a round trip).
    """

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._max_keys = max_keys
        self._held: dict[str, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key: str, rate: Rate, clock: int) -> Decision | None:
        """The refusal held for bucket ``key`` at ``clock`` (µs), or None: ask Redis."""
        held = self._held.get(key)
        if held is None:
            return None
        if clock >= held.until:
            del self._held[key]
            return None
        return decide(False, held.now + clock - held.asked, held.tat, rate)

    def hold(self, key: str, rate: Rate, asked: int, now: int, tat: Tat) -> None:
        """Keep Redis's refusal of bucket ``key`` (asked at ``asked``, refused at ``now``)."""
        held = self._held
        held.pop(key, None)
        until = asked + refused_until(tat, rate) - now
        if until <= asked:  # refused at the last µs: the next request may be admitted
            return
        held[key] = _Held(until, asked, now, tat)
        while len(held) > self._max_keys:
            del held[next(iter(held))]
        for _ in range(2):  # entries past their end go, oldest first (never the new one)
            oldest = next(iter(held))
            if held[oldest].until > asked:
                break
            del held[oldest]

    def clear(self) -> None:
        self._held.clear()


class _Outage:
    """Redis failing since ``started``: try it again at ``retry_at``."""

    def __init__(self, started: float, backoff: float) -> None:
        self.started = started
        self.backoff = backoff
        self.retry_at = started + backoff
        self.fallbacks = 0

    def may_retry(self, now: float) -> bool:
        if now < self.retry_at:
            return False
        self.retry_at = now + self.backoff  # one probe at a time, the others go local
        return True


class RedisLimiter:
    """``RateLimiter`` on a shared Redis, falling back to a local limiter while it fails."""

    def __init__(
        self,
        client: RespClient,
        *,
        name: str = "Redis",
        metrics: GatewayMetrics | None = None,
        fallback: LocalLimiter | None = None,
        prefix: str = PREFIX,
        clock: Callable[[], float] = time.monotonic,
        backoff: tuple[float, float] = (BACKOFF_FIRST, BACKOFF_MAX),
    ) -> None:
        self._client = client
        self._name = name
        self._metrics = metrics
        self._fallback = fallback if fallback is not None else LocalLimiter()
        self._prefix = prefix
        self._clock = clock
        self._backoff_first, self._backoff_max = backoff
        self._sha = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self._outage: _Outage | None = None
        self._generation = 0  # counts outage starts and ends
        self._refusals = Refusals()

    @classmethod
    def from_url(cls, url: str, *, timeout: float = SOCKET_TIMEOUT, **options: Any) -> RedisLimiter:
        """A limiter on its own client for ``url``; ``options`` as for the constructor.
        ``timeout`` bounds connecting and each round trip; a broken reused connection is
        retried once on a new one, a timeout never (the script may have run, and the
        request would count twice)."""
        return cls(RespClient(url, timeout=timeout), name=mask_url(url), **options)

    async def start(self) -> None:
        """Ask Redis once at startup, so a wrong ``REDIS_URL`` shows in the log at once.

        A failure only starts an outage: requests are served with the local limiter.
        """
        try:
            await self._client.call("PING")
        except (ReplyError, OSError) as err:
            self._failed(err)
        else:
            log.info("rate limits: shared through %s", self._name)

    @property
    def degraded(self) -> bool:
        """True while Redis fails and requests are limited per process."""
        return self._outage is not None

    async def hit(self, key: str, rate: Rate) -> Decision:
        where = bucket(key, rate)
        asked = round(self._clock() * US)
        held = self._refusals.get(where, rate, asked)
        if held is not None:
            return held
        # The outage state a request saw when it started: answers of requests that
        # started under an earlier state (in flight when Redis broke or came back)
        # neither start nor end an outage, so the log says it once.
        generation, outage = self._generation, self._outage
        if outage is not None and not outage.may_retry(self._clock()):
            return self._fall_back(key, rate)
        try:
            reply = await self._step(where, rate, None)
        except (ReplyError, OSError) as err:  # OSError includes TimeoutError, ConnectionError
            if generation == self._generation:
                self._failed(err)
            return self._fall_back(key, rate)
        if outage is not None and generation == self._generation:
            self._recovered()
        allowed, now, tat, _used = reply
        if not allowed:
            self._refusals.hold(where, rate, asked, now, tat)
        return decide(bool(allowed), now, tat, rate)

    async def hit_quota(self, key: str, rate: Rate, quota: QuotaHit) -> Shared | None:
        """The rate limit and the quota in one script; None while Redis fails (the
        caller then decides the quota itself and calls :meth:`hit`, local meanwhile)."""
        generation, outage = self._generation, self._outage
        if outage is not None and not outage.may_retry(self._clock()):
            return None
        try:
            allowed, now, tat, used = await self._step(bucket(key, rate), rate, quota)
        except (ReplyError, OSError) as err:
            if generation == self._generation:
                self._failed(err)
            return None
        if outage is not None and generation == self._generation:
            self._recovered()
        # Refusals by the rate are not held here: the script checks the quota first, and
        # a quota used up meanwhile must answer quota_exceeded.
        if allowed == 2:  # the quota is used up: the bucket was left as it was
            return Shared(decide(True, now, tat, rate), used, refused=True)
        return Shared(decide(bool(allowed), now, tat, rate), used, refused=False)

    async def _step(
        self, key: str, rate: Rate, quota: QuotaHit | None
    ) -> tuple[int, int, Tat, int]:
        """One run of the script for bucket ``key``: (allowed, now, tat, used) as it
        answered them (allowed 1, 0 for the rate, 2 for the quota)."""
        keys: tuple[str, ...] = (self._prefix + key,)
        args: tuple[int, ...] = (rate.limit, rate.period * US)
        if quota is not None:
            keys += (QUOTA_PREFIX + quota.key,)
            args += (quota.limit, quota.ttl_ms)
        try:
            reply = await self._client.call("EVALSHA", self._sha, len(keys), *keys, *args)
        except NoScript:  # a restarted or flushed Redis: EVAL runs and caches it
            reply = await self._client.call("EVAL", SCRIPT, len(keys), *keys, *args)
        if not isinstance(reply, list) or len(reply) != 5:
            raise ReplyError("the limiter script answered something else than 5 integers")
        allowed, now, us, frac, used = (int(value) for value in reply)  # type: ignore[arg-type]
        return allowed, now, Tat(us, frac), used

    def _fall_back(self, key: str, rate: Rate) -> Decision:
        if self._metrics is not None:
            self._metrics.rate_limit_fallbacks.inc()
        if self._outage is not None:
            self._outage.fallbacks += 1
        return self._fallback.hit_now(key, rate)

    def _failed(self, err: Exception) -> None:
        now = self._clock()
        if self._outage is not None:  # a probe failed: wait longer before the next one
            self._outage.backoff = min(self._outage.backoff * 2, self._backoff_max)
            self._outage.retry_at = now + self._outage.backoff
            return
        self._outage = _Outage(now, self._backoff_first)
        self._generation += 1
        log.warning(
            "rate limits: %s failed (%s: %s); limiting per process until it answers",
            self._name,
            type(err).__name__,
            err,
        )

    def _recovered(self) -> None:
        assert self._outage is not None
        outage, self._outage = self._outage, None
        self._generation += 1
        log.info(
            "rate limits: %s answers again after %.1f s; %d requests were limited per process",
            self._name,
            self._clock() - outage.started,
            outage.fallbacks,
        )

    async def close(self) -> None:
        self._refusals.clear()
        await self._client.close()
        await self._fallback.close()
