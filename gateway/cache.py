"""The verification caches of the request path, and single-flight.

* :class:`ProofCache`: digest of a whole token -> token id, filled only after argon2
  verified the secret. Tokens are immutable, so a proof holds as long as the row
  exists. LRU-bounded; the raw token is never kept.
* :class:`StateCache`: token id -> what can change (project, expiry, rate limit),
  trusted for ``TOKEN_CACHE_TTL``. A stale entry is kept as a fallback for when
  Postgres cannot be asked.
* :class:`NegativeCache`: digests known to be wrong, for a short time.
* :class:`SingleFlight`: concurrent callers for one key share one computation.

Every time-dependent class takes an injectable monotonic ``clock``. None of them
is thread-safe; they live on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .rates import Rate

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Clock = Callable[[], float]


class ProofCache:
    """digest -> token id, least recently used first out.

    A token id has exactly one valid token, hence at most one proof: the reverse
    map lets a revocation drop it without scanning.
    """

    def __init__(self, maxsize: int = 100_000) -> None:
        self._maxsize = maxsize
        self._by_digest: OrderedDict[bytes, str] = OrderedDict()
        self._by_id: dict[str, bytes] = {}

    def get(self, key: bytes) -> str | None:
        token_id = self._by_digest.get(key)
        if token_id is not None:
            self._by_digest.move_to_end(key)
        return token_id

    def add(self, key: bytes, token_id: str) -> None:
        self.evict(token_id)
        self._by_digest[key] = token_id
        self._by_id[token_id] = key
        if len(self._by_digest) > self._maxsize:
            _, oldest = self._by_digest.popitem(last=False)
            self._by_id.pop(oldest, None)

    def evict(self, token_id: str) -> None:
        key = self._by_id.pop(token_id, None)
        if key is not None:
            self._by_digest.pop(key, None)

    def __len__(self) -> int:
        return len(self._by_digest)


@dataclass(slots=True, eq=False)
class TokenState:
    """What the request path needs about a proven token; the identity of a request."""

    token_id: str
    project_id: str
    expires_at: float | None  # epoch seconds; None: never expires
    rate: Rate  # the project's limit, or the default one
    fresh_until: float = field(default=0.0, repr=False)  # monotonic clock
    generation: int = field(default=0, repr=False)


class StateCache:
    """token id -> :class:`TokenState`, fresh for ``ttl`` seconds, bounded.

    :meth:`get` answers fresh entries only; :meth:`stale` also answers expired
    ones (the fallback while Postgres is unreachable). :meth:`expire_all` makes
    every entry stale in O(1), by bumping a generation number.
    """

    def __init__(self, ttl: float, *, clock: Clock = time.monotonic, maxsize: int = 100_000):
        self.ttl = ttl
        self._clock = clock
        self._maxsize = maxsize
        self._generation = 0
        self._entries: OrderedDict[str, TokenState] = OrderedDict()
        self._by_project: dict[str, set[str]] = {}

    def get(self, token_id: str) -> TokenState | None:
        state = self._entries.get(token_id)
        if (
            state is not None
            and state.generation == self._generation
            and state.fresh_until > self._clock()
        ):
            return state
        return None

    def stale(self, token_id: str) -> TokenState | None:
        return self._entries.get(token_id)

    def put(self, state: TokenState) -> None:
        self.evict(state.token_id)
        state.fresh_until = self._clock() + self.ttl
        state.generation = self._generation
        self._entries[state.token_id] = state
        self._by_project.setdefault(state.project_id, set()).add(state.token_id)
        if len(self._entries) > self._maxsize:
            self.evict(next(iter(self._entries)))

    def retry_later(self, state: TokenState, delay: float) -> None:
        """Keep serving a stale entry for ``delay`` seconds (a refresh just failed)."""
        state.fresh_until = self._clock() + min(delay, self.ttl)
        state.generation = self._generation

    def evict(self, token_id: str) -> None:
        state = self._entries.pop(token_id, None)
        if state is None:
            return
        siblings = self._by_project.get(state.project_id)
        if siblings is not None:
            siblings.discard(token_id)
            if not siblings:
                del self._by_project[state.project_id]

    def evict_project(self, project_id: str) -> list[str]:
        """Drop every entry of a project; returns their token ids."""
        token_ids = list(self._by_project.pop(project_id, ()))
        for token_id in token_ids:
            self._entries.pop(token_id, None)
        return token_ids

    def expire_all(self) -> None:
        """Treat every entry as stale (events may have been missed)."""
        self._generation += 1

    def __len__(self) -> int:
        return len(self._entries)


class NegativeCache:
    """Digests of tokens known to be wrong, each remembered for ``ttl`` seconds."""

    def __init__(self, ttl: float, *, clock: Clock = time.monotonic, maxsize: int = 10_000):
        self.ttl = ttl
        self._clock = clock
        self._maxsize = maxsize
        self._until: OrderedDict[bytes, float] = OrderedDict()

    def __contains__(self, key: bytes) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._until[key]
        return False

    def add(self, key: bytes) -> None:
        self._until.pop(key, None)
        self._until[key] = self._clock() + self.ttl
        if len(self._until) > self._maxsize:
            self._until.popitem(last=False)

    def __len__(self) -> int:
        return len(self._until)


class SingleFlight(Generic[K, V]):
    """Concurrent :meth:`run` calls for one key share one call of the function.

    The shared call runs in its own task, shielded: a caller that goes away (a
    client disconnecting) does not cancel the work the others wait for.
    """

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, func: Callable[[], Awaitable[V]]) -> V:
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(func())
            self._calls[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        # Every waiter may have gone: mark the outcome as seen so asyncio does
        # not report "exception was never retrieved".
        if not task.cancelled():
            task.exception()

    def __len__(self) -> int:
        return len(self._calls)


class FailureThrottle:
    """Unproven attempts per token id: a burst of ``burst``, then one per ``period / burst``.

    Taken before any work for a token that has no cached proof (and handed back
    when the token proves genuine), so a flood of wrong secrets for one id cannot
    buy more than a few argon2 runs, however many arrive at once. The owner, whose
    proof is cached, never reaches it.
    """

    def __init__(
        self,
        burst: int = 5,
        period: float = 60.0,
        *,
        clock: Clock = time.monotonic,
        maxsize: int = 100_000,
    ) -> None:
        self._interval = period / burst
        self._period = period
        self._clock = clock
        self._maxsize = maxsize
        # GCRA's theoretical arrival time per id: one timestamp is all the state.
        self._tats: dict[str, float] = {}

    def acquire(self, token_id: str) -> float:
        """Take one attempt: 0 when allowed, else the seconds until one is."""
        now = self._clock()
        tat = max(self._tats.get(token_id, now), now) + self._interval
        if tat - now > self._period:
            return tat - now - self._period
        self._tats[token_id] = tat
        if len(self._tats) > self._maxsize:
            self._tats = {key: value for key, value in self._tats.items() if value > now}
        return 0.0

    def refund(self, token_id: str) -> None:
        """Give back an attempt that proved genuine."""
        tat = self._tats.get(token_id)
        if tat is not None:
            self._tats[token_id] = tat - self._interval
