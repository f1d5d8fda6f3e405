"""The usage ledger's buffer on the request path (SPEC §11).

:meth:`Ledger.count` runs once per request of a proven token, in the handler's
``finally``: a clock read, a dict lookup and an increment. It sorts the answer into
one of the four counts, per token and UTC day:

* ``proxied`` — the answer came from the upstream, whatever its status;
* ``upstream_errors`` — the gateway's own 502 and 504, and upstream answers with a 5xx
  status (an upstream 500 counts in both);
* ``rate_limited`` — any 429 (rate limit or quota);
* ``forbidden`` — a 403 (scopes, IP allowlists).

Other refusals count nothing. :meth:`Ledger.unit` records the quota units a project's
admitted requests consumed, per quota period. :meth:`Ledger.take` hands everything
counted so far to the flusher as one :class:`Batch` with a fresh id: the flusher
(:mod:`.lastused`) writes it with the last-used times in one transaction, and the id,
recorded in that transaction, makes a retried batch count once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.core.store_usage import DAY, Batch, Counts, Units


class Ledger:
    """Counts since the last :meth:`take`, in memory."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: Counts = {}
        self._units: Units = {}

    def count(self, token_id: str, project_id: str, status: int, answered: bool) -> None:
        """One request of a proven token; ``answered``: the upstream sent the answer."""
        if answered:
            column = 0
        elif status == 429:
            column = 2
        elif status == 502 or status == 504:
            column = 1
        elif status == 403:
            column = 3
        else:
            return
        key = (token_id, project_id, int(self._clock() // DAY))
        row = self._counts.get(key)
        if row is None:
            row = self._counts[key] = [0, 0, 0, 0]
        row[column] += 1
        if answered and status >= 500:
            row[1] += 1

    def unit(self, project_id: str, period: str, limit: int) -> None:
        """One quota unit consumed by ``project_id`` in ``period`` (limit: the quota's N)."""
        entry = self._units.get((project_id, period))
        if entry is None:
            self._units[(project_id, period)] = [1, limit]
        else:
            entry[0] += 1
            entry[1] = limit

    def take(self) -> Batch | None:
        """Everything counted since the last take, or None when nothing was."""
        if not self._counts and not self._units:
            return None
        batch = Batch(self._counts, self._units)
        self._counts, self._units = {}, {}
        return batch

    @property
    def pending(self) -> int:
        """Rows counted and not taken yet."""
        return len(self._counts) + len(self._units)
