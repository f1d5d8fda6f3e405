"""Rate-limit values: the ``N/unit`` strings used by settings and projects, and quotas
(``N/day``, ``N/month``: UTC calendar periods).

The canonical units are ``second``, ``minute`` and ``hour``; the short spellings people
write anyway (``10/sec``, ``10/min``, ``10/hr``, ``10/s``, ``10/h``) are read as the same
rate and always written back canonically. ``m`` alone is not one of them: next to quotas
per month it would be a guess.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

# Seconds per canonical unit, and every spelling read as that unit.
_SECONDS: Final = {"second": 1, "minute": 60, "hour": 3600}
_SPELLINGS: Final = {
    "second": "second",
    "sec": "second",
    "s": "second",
    "minute": "minute",
    "min": "minute",
    "hour": "hour",
    "hr": "hour",
    "h": "hour",
}
PATTERN = re.compile(rf"([1-9][0-9]{{0,8}})/({'|'.join(_SPELLINGS)})")


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``period`` seconds (a burst of ``limit`` is allowed)."""

    limit: int
    period: int

    def __str__(self) -> str:
        unit = next(name for name, seconds in _SECONDS.items() if seconds == self.period)
        return f"{self.limit}/{unit}"


def parse_rate(text: str) -> Rate:
    """Parse ``N/second``, ``N/minute`` or ``N/hour`` (or a short spelling of the unit);
    raise ValueError naming the problem."""
    match = PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a rate limit: use N/second, N/minute or N/hour with 1 <= N < 10^9"
        )
    return Rate(int(match[1]), _SECONDS[_SPELLINGS[match[2]]])


# ---------------------------------------------------------------- quotas (SPEC §11)

QUOTA_PATTERN = re.compile(r"([1-9][0-9]{0,11})/(day|month)")


@dataclass(frozen=True, slots=True)
class Quota:
    """``limit`` units per UTC calendar ``unit`` (``day`` or ``month``)."""

    limit: int
    unit: str

    def __str__(self) -> str:
        return f"{self.limit}/{self.unit}"

    def period(self, now: float) -> tuple[str, int]:
        """The period ``now`` (epoch seconds) falls in, as a key (``day:2026-12-01``,
        ``month:2026-12``), and the whole seconds until it resets (at least 1)."""
        return period(self.unit, now)


def period(unit: str, now: float) -> tuple[str, int]:
    """See :meth:`Quota.period`."""
    moment = datetime.fromtimestamp(now, UTC)
    if unit == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
        key = f"day:{start:%Y-%m-%d}"
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        key = f"month:{start:%Y-%m}"
    return key, max(1, math.ceil(end.timestamp() - now))


def parse_quota(text: str) -> Quota:
    """Parse ``N/day`` or ``N/month``; raise ValueError naming the problem."""
    match = QUOTA_PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a quota: use N/day or N/month with 1 <= N < 10^12")
    return Quota(int(match[1]), match[2])
