"""Rate-limit values: the ``N/unit`` strings used by settings and projects.

The canonical units are ``second``, ``minute`` and ``hour``; the short spellings people
write anyway (``10/sec``, ``10/min``, ``10/hr``, ``10/s``, ``10/h``) are read as the same
rate and always written back canonically. ``m`` alone is not one of them: next to quotas
per month it would be a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
