"""The admin's background loops (admin/background.py): a pass that fails because the
database is unreachable is retried, and the outage is logged once, not at every pass."""

from __future__ import annotations

import asyncio
import logging

import pytest

from admin.background import repeat


async def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="admin.background")
    passes = 0
    done = asyncio.Event()

    async def work() -> None:
        nonlocal passes
        passes += 1
        if passes <= 5:  # five passes while Postgres is away
            raise ConnectionRefusedError(111, "Connection refused")
        if passes == 7:
            done.set()

    async def pause() -> None:
        await asyncio.sleep(0)

    loop = asyncio.create_task(repeat("webhook delivery", work, pause))
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        loop.cancel()
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [
        (
            "WARNING",
            "webhook delivery postponed, the database is unavailable: "
            "ConnectionRefusedError(111, 'Connection refused')",
        ),
        ("INFO", "webhook delivery resumed after 5 postponed pass(es)"),
    ]
