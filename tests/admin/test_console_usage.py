"""Usage pictures and the quota setting in the web console, in Chromium: the project's
30-day bar chart and each token's sparkline, drawn by our own SVG code under the strict
CSP, with their numbers readable by a screen reader. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Route, expect

from gateway.core.store_usage import Batch, UsageStore
from tests.admin.test_console import (
    ARTIFACTS,
    CHROMIUM,
    Console,
    Servers,
    admin_api,
    browser,
    console,
    servers,
)

__all__ = ["browser", "console", "servers"]  # the fixtures, shared

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="chromium not installed: apt-get install chromium"
    ),
    pytest.mark.asyncio(loop_scope="module"),
]

TODAY = datetime.now(UTC).date()


def day_number(day: date) -> int:
    return (day - date(1970, 1, 1)).days


async def test_usage_chart_sparklines_and_quota(console: Console, servers: Servers) -> None:
    page = console.page
    project = await admin_api(console.base, "POST", "/v1/projects", {"name": "Metered"})
    pid = project["id"]
    busy = await admin_api(
        console.base, "POST", f"/v1/projects/{pid}/tokens", {"description": "busy"}
    )
    await admin_api(console.base, "POST", f"/v1/projects/{pid}/tokens", {"description": "idle"})
    counts = {}
    for back in range(30):
        proxied = (back * 37) % 120 + 5
        counts[(busy["id"], pid, day_number(TODAY - timedelta(days=back)))] = [
            proxied,
            back % 3,
            proxied // 10,
            back % 2,
        ]
    await UsageStore(servers.pool).flush([], [], [Batch(counts, {})])
    proxied_total = sum(row[0] for row in counts.values())
    refused_total = sum(row[2] + row[3] for row in counts.values())

    await console.open()
    await console.sign_in()
    await page.get_by_role("link", name="Metered", exact=True).click()
    section = page.get_by_role("region", name="Usage")
    chart = section.get_by_role("img")
    await expect(chart).to_have_attribute(
        "aria-label",
        f"Last 30 days: {proxied_total:,} proxied, {refused_total:,} refused; "
        f"busiest day {busiest(counts)}.",
    )
    assert await section.locator("rect.bar-proxied").count() == 30
    table = section.locator("table")
    assert await table.locator("tbody tr").count() == 30
    last = table.locator("tbody tr").last
    today_row = counts[(busy["id"], pid, day_number(TODAY))]
    await expect(last).to_contain_text(TODAY.isoformat())
    await expect(last).to_contain_text(str(today_row[0]))
    await expect(section).to_contain_text(f"{proxied_total:,} proxied")

    busy_row = console.row("busy")
    spark = busy_row.get_by_role("img")
    await expect(spark).to_have_attribute(
        "aria-label",
        f"Proxied per day, last 30 days: {proxied_total:,} proxied, "
        f"{refused_total:,} refused; busiest day {busiest(counts)}.",
    )
    await expect(busy_row).to_contain_text(f"{proxied_total:,}")
    idle_spark = console.row("idle").get_by_role("img")
    await expect(idle_spark).to_have_attribute(
        "aria-label", "Proxied per day, last 30 days: 0 proxied, 0 refused."
    )
    await console.fits()
    await section.screenshot(path=str(artifacts("usage-chart.png")))
    await console.screenshot("usage-project.png", full_page=True)

    # The quota, set in Settings: a bad one explained, a good one saved and applied.
    quota = page.get_by_label("Quota", exact=True)
    await quota.fill("lots")
    await console.button("Save settings").click()
    alert = page.locator("#settings-error")
    await expect(alert).to_contain_text("requests per day or month")
    await quota.fill("5000/day")
    await console.button("Save settings").click()
    await expect(page.locator("#settings-saved")).to_have_text("Saved.")
    assert (await admin_api(console.base, "GET", f"/v1/projects/{pid}"))["quota"] == "5000/day"
    await quota.fill("")
    await console.button("Save settings").click()
    await expect(page.locator("#settings-saved")).to_have_text("Saved.")
    assert (await admin_api(console.base, "GET", f"/v1/projects/{pid}"))["quota"] is None


async def test_the_chart_fits_a_phone(console: Console) -> None:
    await console.page.set_viewport_size({"width": 360, "height": 800})
    project = await admin_api(console.base, "POST", "/v1/projects", {"name": "Narrow"})
    await admin_api(console.base, "POST", f"/v1/projects/{project['id']}/tokens", {})
    await console.open()
    await console.sign_in()
    await console.page.get_by_role("link", name="Narrow", exact=True).click()
    section = console.page.get_by_role("region", name="Usage")
    await expect(section.get_by_role("img")).to_be_visible()
    await console.fits()
    await console.screenshot("usage-project-360.png", full_page=True)


def busiest(counts: dict[tuple[str, str, int], list[int]]) -> str:
    day, row = max(
        ((key[2], row) for key, row in counts.items()), key=lambda item: (item[1][0], -item[0])
    )
    moment = date(1970, 1, 1) + timedelta(days=day)
    return f"{moment.isoformat()} with {row[0]:,} proxied"


def artifacts(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


async def test_the_tokens_card_stays_put_while_the_usage_chart_loads(console: Console) -> None:
    """The chart above the Access Tokens card arrives after the page: its room is kept
    meanwhile, so "Create token" is where it was when the pointer reached it."""
    page = console.page
    project = await admin_api(console.base, "POST", "/v1/projects", {"name": "Steady"})
    held: list[Route] = []

    async def hold(route: Route) -> None:
        held.append(route)

    def chart(url: str) -> bool:
        return f"/v1/projects/{project['id']}/usage" in url and "token_id" not in url

    await page.route(chart, hold)
    await console.open()
    await console.sign_in()
    await page.get_by_role("link", name="Steady", exact=True).click()
    button = console.button("Create token")
    await expect(button).to_be_visible()
    await expect(page.locator("#usage-totals")).to_have_text("Loading…")
    assert await page.get_by_role("region", name="Usage").get_by_role("img").count() == 0
    before = await button.bounding_box()
    deadline = time.monotonic() + 10
    while not held:  # the chart's request is out (the route sees it)
        assert time.monotonic() < deadline, "the usage request never came"
        await asyncio.sleep(0.02)
    for route in held:
        await route.continue_()
    await page.unroute(chart)
    await expect(page.locator("#usage-totals")).to_contain_text("0 proxied")
    await expect(page.get_by_role("region", name="Usage").get_by_role("img")).to_be_visible()
    assert await button.bounding_box() == before
