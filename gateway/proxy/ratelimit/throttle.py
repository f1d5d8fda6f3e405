"""The failure throttle (how many unproven attempts one token id may cost) and the
failure pacing (how fast failed first uses are answered while they are frequent)."""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache

Clock = Callable[[], float]


class FailureThrottle:
    """Unproven attempts per token id: a burst of ``burst``, then one per ``period / burst``.

    Taken before any work for a token that has no cached proof (and handed back
    when the token proves genuine), so a flood of wrong secrets for one id cannot
    buy more than a few argon2 runs, however many arrive at once. The owner, whose
    proof is cached, never reaches it.

    The state is GCRA's theoretical arrival time (TAT) per id, at most ``maxsize``
    ids. An entry written at ``t`` holds a TAT of at most ``t + period``, so after
    ``period`` seconds it says nothing an absent entry would not: a ``TTLCache`` with
    that ttl drops it then, a few at a time as new ids arrive (amortised O(1) per
    call, whatever a flood of random ids does). When every entry is still live, the
    least recently attempted id goes: an id being hammered stays, and evicting it
    would take ``maxsize`` other ids' attempts in between.
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
        self._tats: TTLCache[str, float] = TTLCache(maxsize, period, timer=clock)

    def acquire(self, token_id: str) -> float:
        """Take one attempt: 0 when allowed, else the seconds until one is."""
        now = self._clock()
        tat = max(self._tats.get(token_id, now), now) + self._interval
        if tat - now > self._period:
            return tat - now - self._period
        self._tats[token_id] = tat
        return 0.0

    def refund(self, token_id: str) -> None:
        """Give back an attempt that proved genuine."""
        tat = self._tats.get(token_id)
        if tat is not None:
            self._tats[token_id] = tat - self._interval

    def __len__(self) -> int:
        """Ids whose attempts still count."""
        return len(self._tats)


class FailurePacing:
    """How long a failed first use waits for its 401, while such failures are frequent.

    A failed first use (an unknown token id, a new wrong secret) costs a Postgres lookup,
    and a flood of new guesses, every id different, gets past the failure throttle and the
    negative cache. Up to ``free`` failures in a second (of this process) are answered at
    once; beyond that each waits ``delay`` seconds first. A client waits for its answer on
    each HTTP/1.1 connection, so a flood can then cost at most one lookup per connection
    and ``delay``, and a wait costs a timer, not CPU: the cores stay with the tokens that
    work. Genuine tokens never wait, nor do 401s the negative cache answers (no lookup).
    """

    def __init__(self, free: int = 100, delay: float = 0.25, *, clock: Clock = time.monotonic):
        self._free = free
        self._delay = delay
        self._clock = clock
        self._second = -1
        self._failures = 0

    def failed(self) -> float:
        """Count one failure: the seconds its answer should wait (0: none)."""
        second = int(self._clock())
        if second != self._second:
            self._second, self._failures = second, 0
        self._failures += 1
        return self._delay if self._failures > self._free else 0.0
