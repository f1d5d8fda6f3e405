"""The verification caches of the request path, and single-flight.

* :class:`ProofCache`: digest of a whole token -> token id, filled only after argon2
  verified the secret. Tokens are immutable, so a proof holds as long as the row
  exists. A cachetools ``LRUCache`` beside a reverse map by token id; the raw token
  is never kept.
* :class:`StateCache`: token id -> what can change (project, expiry, rate limit),
  trusted for ``TOKEN_CACHE_TTL``. A stale entry is kept as a fallback for when
  Postgres cannot be asked, which is why this one is not a ``TTLCache`` (that drops
  expired entries); it also keeps a per-project index and expires everything in O(1).
* :class:`NegativeCache`: digests known to be wrong, for a short time: a cachetools
  ``TTLCache``.

Every time-dependent class takes an injectable monotonic ``clock``. None of them
is thread-safe (cachetools' caches are not either); they live on the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from cachetools import LRUCache, TTLCache

from gateway.core.rates import Rate

from .capabilities import Rules

Clock = Callable[[], float]


class ProofCache:
    """digest -> token id, least recently used first out.

    A token id has exactly one valid token, hence at most one proof: the reverse
    map lets a revocation drop it without scanning. The positive hit is keyed by
    the digest of the whole token, never by the token id alone.
    """

    def __init__(self, maxsize: int = 100_000) -> None:
        self._by_digest: LRUCache[bytes, str] = LRUCache(maxsize)
        self._by_id: dict[str, bytes] = {}

    def get(self, key: bytes) -> str | None:
        return self._by_digest.get(key)

    def add(self, key: bytes, token_id: str) -> None:
        self.evict(token_id)
        # Make room ourselves: an eviction the LRUCache made on its own would leave
        # the reverse map behind.
        if len(self._by_digest) >= self._by_digest.maxsize:
            _, oldest = self._by_digest.popitem()
            del self._by_id[oldest]
        self._by_digest[key] = token_id
        self._by_id[token_id] = key

    def evict(self, token_id: str) -> None:
        key = self._by_id.pop(token_id, None)
        if key is not None:
            del self._by_digest[key]

    def __len__(self) -> int:
        return len(self._by_digest)


@dataclass(slots=True, eq=False)
class TokenState:
    """What the request path needs about a proven token; the identity of a request."""

    token_id: str
    project_id: str
    expires_at: float | None  # epoch seconds; None: never expires
    rate: Rate  # the project's limit, or the default one
    rules: Rules | None = None  # its scopes and allowed addresses; None: anything, anywhere
    # Deprecation/Sunset for the answers of a rotated token in its grace period.
    notice: dict[str, str] | None = None
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
    """Digests of tokens known to be wrong, each remembered for ``ttl`` seconds.

    Expired digests leave as new ones arrive (amortised O(1)); when full, the oldest
    goes first.
    """

    def __init__(self, ttl: float, *, clock: Clock = time.monotonic, maxsize: int = 10_000):
        self.ttl = ttl
        self._wrong: TTLCache[bytes, bool] = TTLCache(maxsize, ttl, timer=clock)

    def __contains__(self, key: bytes) -> bool:
        return key in self._wrong

    def add(self, key: bytes) -> None:
        self._wrong[key] = True  # a second sighting starts the ttl again

    def __len__(self) -> int:
        return len(self._wrong)
