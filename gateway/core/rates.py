"""Rate-limit values: the ``N/unit`` strings used by settings and projects."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"second": 1, "minute": 60, "hour": 3600}
PATTERN = re.compile(r"([1-9][0-9]{0,8})/(second|minute|hour)")


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``period`` seconds (a burst of ``limit`` is allowed)."""

    limit: int
    period: int

    def __str__(self) -> str:
        unit = next(name for name, seconds in _UNITS.items() if seconds == self.period)
        return f"{self.limit}/{unit}"


def parse_rate(text: str) -> Rate:
    """Parse ``N/second``, ``N/minute`` or ``N/hour``; raise ValueError naming the problem."""
    match = PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a rate limit: use N/second, N/minute or N/hour with 1 <= N < 10^9"
        )
    return Rate(int(match[1]), _UNITS[match[2]])
