"""Usage use cases (SPEC §11), shared by the HTTP API, the command line and the console.

A report covers whole UTC days, ``from`` to ``to`` included, at most :data:`DAYS_MAX` of
them; grouped by day it has one row per day, zeros where nothing happened, grouped by
token one row per token that was used. Arguments come checked by ``schemas.USAGE_QUERY``
(shape only: whether a date exists and the span are judged here).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from gateway.core.errors import BadRequest
from gateway.core.store import Store
from gateway.core.store_usage import COLUMNS, UsageRow, UsageStore
from gateway.core.tokens import is_token_id

from . import projects
from .fields import field_error

GROUPINGS: Final = ("day", "token")
DAYS_MAX: Final = 400
DEFAULT_DAYS: Final = 30  # a report without ``from``: the 30 days up to ``to``
# The days a report may name: the ledger counts UTC days since 1970 (none before); Python
# has no dates past 9999, and asyncpg sends its last one, 9999-12-31, as 'infinity'.
FIRST_DAY: Final = date(1970, 1, 1)
LAST_DAY: Final = date(9999, 12, 30)


@dataclass(frozen=True, slots=True)
class Report:
    start: date
    end: date
    group_by: str
    rows: list[UsageRow]

    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(row, name) for row in self.rows) for name in COLUMNS}


def today() -> date:
    return datetime.now(UTC).date()


def _day(name: str, text: str | None, default: date) -> date:
    if text is None:
        return default
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise field_error("invalid_value", name, "is not a calendar date") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise field_error("invalid_value", name, f"must be between {FIRST_DAY} and {LAST_DAY}")
    return day


def span(
    start_text: str | None, end_text: str | None, *, now: date | None = None
) -> tuple[date, date]:
    """The days a report covers; 400 when they are backwards or too many."""
    end = _day("to", end_text, now or today())
    start = _day("from", start_text, max(FIRST_DAY, end - timedelta(days=DEFAULT_DAYS - 1)))
    if start > end:
        raise BadRequest('"from" must not be after "to"', code="invalid_value")
    if (end - start).days + 1 > DAYS_MAX:
        raise BadRequest(
            f"a report covers at most {DAYS_MAX} days; narrow from/to", code="invalid_value"
        )
    return start, end


async def report(
    store: Store,
    usage: UsageStore,
    project_id: str,
    *,
    start: date,
    end: date,
    token_id: str | None = None,
    group_by: str = "day",
) -> Report:
    """The project's usage; a ``token_id`` it never had simply has none (revoked tokens'
    usage stays in the project's totals, so the id need not exist any more)."""
    await projects.get(store, project_id)
    if token_id is not None and not is_token_id(token_id):
        raise field_error("invalid_value", "token_id", "is not a token id")
    read = usage.by_day if group_by == "day" else usage.by_token
    return Report(start, end, group_by, await read(project_id, start, end, token_id))


async def last_30_days(usage: UsageStore, token_ids: list[str]) -> dict[str, UsageRow]:
    """``usage_30d`` of each token (absent: none)."""
    if not token_ids:
        return {}
    return await usage.last_30_days(token_ids, today())
