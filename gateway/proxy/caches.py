"""The state cache of the request path (the proof and negative caches, shared with the
admin API's key checks, are in :mod:`gateway.core.proofs`).

* :class:`StateCache`: token id -> what can change (project, expiry, rate limit),
  trusted for ``TOKEN_CACHE_TTL``. A stale entry is kept as a fallback for when
  Postgres cannot be asked, which is why this one is not a ``TTLCache`` (that drops
  expired entries); it also keeps a per-project index and expires everything in O(1).

Every time-dependent class takes an injectable monotonic ``clock``. None of them
is thread-safe (cachetools' caches are not either); they live on the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.core.rates import Quota, Rate

from .capabilities import Rules

Clock = Callable[[], float]


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
    quota: Quota | None = None  # the project's quota (SPEC §11)
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
