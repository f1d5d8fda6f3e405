"""Rate limits: the canonical ``N/unit`` spellings, the short ones people write, and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.config import ConfigError, Settings
from gateway.core.rates import PATTERN, Rate, parse_rate


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("600/minute", "600/minute"),
        ("10/second", "10/second"),
        ("10/hour", "10/hour"),
        ("10/sec", "10/second"),
        ("10/s", "10/second"),
        ("10/min", "10/minute"),
        ("10/hr", "10/hour"),
        ("10/h", "10/hour"),
        (" 5/min ", "5/minute"),
        ("999999999/hr", "999999999/hour"),
    ],
)
def test_short_spellings_mean_the_canonical_rate(text: str, canonical: str) -> None:
    assert str(parse_rate(text)) == canonical
    assert parse_rate(canonical) == parse_rate(text)


def test_the_period_is_in_seconds() -> None:
    assert parse_rate("10/sec") == Rate(10, 1)
    assert parse_rate("10/min") == Rate(10, 60)
    assert parse_rate("10/hr") == Rate(10, 3600)


@pytest.mark.parametrize(
    "text",
    [
        "10/m",
        "10/day",
        "10/month",
        "0/min",
        "01/min",
        "1000000000/second",
        "10/MIN",
        "10 / min",
        "10/minutes",
        "10",
        "/min",
        "ten/min",
        "",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="N/second, N/minute or N/hour"):
        parse_rate(text)


@given(
    st.integers(1, 10**9 - 1),
    st.sampled_from(["sec", "s", "second", "min", "minute", "hr", "h", "hour"]),
)
def test_every_accepted_spelling_round_trips_to_a_canonical_one(limit: int, unit: str) -> None:
    canonical = str(parse_rate(f"{limit}/{unit}"))
    assert canonical.split("/")[1] in {"second", "minute", "hour"}
    assert str(parse_rate(canonical)) == canonical
    assert PATTERN.fullmatch(canonical)


def test_the_rate_limit_setting_reads_short_spellings_too() -> None:
    assert Settings.from_env({"RATE_LIMIT": "10/min"}).rate_limit == Rate(10, 60)
    with pytest.raises(ConfigError, match="RATE_LIMIT"):
        Settings.from_env({"RATE_LIMIT": "10/m"})
