"""The admin web console in a real browser: Debian's Chromium driven by Playwright.

The admin app, a gateway and its upstream run for real on 127.0.0.1 against the test
database; the browser does what a user does (labels, roles, keyboard) and the tests check
what the user would notice, plus that a new token's value is gone from the page once its
dialog closes. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Locator, Page, async_playwright, expect
from standardwebhooks import Webhook as Verifier

from admin.app import create_app as create_admin_app
from gateway.core.config import Settings
from gateway.proxy.app import running, serve
from tests.conftest import ADMIN_TOKEN
from tests.receiver import Receiver

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent.parent / "artifacts"
SESSION_KEY = "tollgate.adminToken"
TIMEZONE = "Asia/Kolkata"  # +05:30: local and UTC times differ, even in the minutes
EXPIRATIONS = [  # (description, label in the select, days; None = never)
    ("Staging smoke tests", "30 days", 30),
    ("Billing service", "90 days", 90),
    ("Partner: Acme Corp", "6 months", 180),
    ("Mobile app backend", "1 year", 365),
    ("Nightly CI", "Never", None),
]

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="chromium not installed: apt-get install chromium"
    ),
    # One browser and one set of servers for the module: starting them is most of the cost.
    pytest.mark.asyncio(loop_scope="module"),
]


# ---------------------------------------------------------------- servers and browser


async def echo(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path, "project": request.headers.get("X-Project-Id")})


@dataclass(frozen=True)
class Servers:
    admin: str
    gateway: str
    pool: asyncpg.Pool


async def started(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers(database_url: str) -> AsyncIterator[Servers]:
    """The real admin app (API and console), and a real gateway before a real upstream."""
    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", echo)
    upstream = await started(upstream_app)
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "UPSTREAM_URL": str(upstream.make_url("/")),
            "LAST_USED_FLUSH_INTERVAL": "0.05",
            "WEBHOOK_ALLOW_PRIVATE": "true",  # the webhook receivers here are local
        }
    )
    admin = await started(create_admin_app(settings))
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with (
            running(settings) as gateway,
            serve(gateway, "127.0.0.1", 0, shutdown_timeout=1.0) as listening,
        ):
            yield Servers(str(admin.make_url("/")), f"http://127.0.0.1:{listening.port}/", pool)
    finally:
        await pool.close()
        for server in (admin, upstream):
            await server.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@dataclass
class Console:
    """One browser tab on the console, and the problems it reported."""

    page: Page
    base: str
    problems: list[str] = field(default_factory=list)

    def watch(self) -> None:
        self.page.on("pageerror", lambda error: self.problems.append(f"exception: {error}"))
        # A CSP violation (inline script or style) is reported on the console.
        self.page.on(
            "console",
            lambda message: (
                self.problems.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )

    def dialog(self, name: str) -> Locator:
        return self.page.get_by_role("dialog", name=name)

    def button(self, name: str) -> Locator:
        return self.page.get_by_role("button", name=name, exact=True)

    async def open(self) -> None:
        await self.page.goto(self.base)

    async def sign_in(self, token: str = ADMIN_TOKEN) -> None:
        await self.page.get_by_label("Admin token").fill(token)
        await self.button("Sign in").click()

    async def create_project(self, name: str, rate_limit: str = "") -> None:
        await self.button("New project").click()
        dialog = self.dialog("New project")
        await dialog.get_by_label("Name").fill(name)
        await dialog.get_by_label("Rate limit").fill(rate_limit)
        await dialog.get_by_role("button", name="Create", exact=True).click()

    async def fill_token_form(self, description: str, expiration: str) -> Locator:
        await self.button("Create token").click()
        dialog = self.dialog("Create token")
        await dialog.get_by_label("Description").fill(description)
        await dialog.get_by_label("Expiration").select_option(label=expiration)
        return dialog

    async def create_token(self, description: str, expiration: str) -> str:
        """Create a token through the dialogs and read it from the reveal dialog."""
        dialog = await self.fill_token_form(description, expiration)
        await dialog.get_by_role("button", name="Create", exact=True).click()
        reveal = self.dialog("Your new token")
        await expect(reveal).to_be_visible()
        return await reveal.locator("code").inner_text()

    def row(self, text: str) -> Locator:
        return self.page.locator("#tokens-body tr").filter(has_text=text)

    async def screenshot(self, name: str, *, full_page: bool = False) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)

    async def fits(self) -> None:
        """Nothing scrolls sideways: not the page, not a card or the table inside it."""
        overflowing = await self.page.evaluate(
            """[document.documentElement, ...document.querySelectorAll(
                   '.card, .table-wrap, dialog[open]')]
               .filter((e) => e.scrollWidth > e.clientWidth)
               .map((e) => `${e.id || e.className}: ${e.scrollWidth} > ${e.clientWidth}`)
            """
        )
        assert overflowing == [], f"at {self.page.viewport_size}"


@pytest_asyncio.fixture(loop_scope="module")
async def console(browser: Browser, servers: Servers) -> AsyncIterator[Console]:
    """A fresh tab (no storage, no cookies) on the console; each test uses its own projects."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id=TIMEZONE
    )
    tab = Console(await context.new_page(), servers.admin)
    tab.watch()
    yield tab
    await context.close()
    assert tab.problems == []


# ---------------------------------------------------------------- helpers


async def admin_api(base: str, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base.rstrip("/") + path, json=body, headers=headers) as response,
    ):
        assert response.status < 300, await response.text()
        return None if response.status == 204 else await response.json()


async def gateway_status(gateway: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway + "v1/validate?email=a@example.com", headers=headers) as response,
    ):
        return response.status


async def wait_for_status(gateway: str, token: str, expected: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while (status := await gateway_status(gateway, token)) != expected:
        assert time.monotonic() < deadline, f"gateway still answers {status}, not {expected}"
        await asyncio.sleep(0.05)


async def assert_secret_gone(page: Page, raw: str) -> None:
    """The token (or its secret part alone) is nowhere a script or a user could find it."""
    secret = raw.rsplit("_", 1)[1]
    html = await page.evaluate("document.documentElement.outerHTML")
    assert secret not in html
    values = await page.evaluate(
        "[...document.querySelectorAll('input, textarea, select')].map((e) => e.value)"
    )
    assert not [value for value in values if secret in value]
    assert await page.evaluate("({...localStorage})") == {}
    assert await page.evaluate("({...sessionStorage})") == {SESSION_KEY: ADMIN_TOKEN}
    assert await page.evaluate("document.cookie") == ""
    assert not await in_js_heap(page, secret), "a script still holds the token"


async def in_js_heap(page: Page, needle: str) -> bool:
    """Whether any string reachable by the page's scripts (variables, closures) has ``needle``.

    A V8 heap snapshot after a garbage collection: text held only by the DOM is not in it,
    which the DOM checks above cover.
    """
    cdp = await page.context.new_cdp_session(page)
    chunks: list[str] = []
    cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))
    try:
        await cdp.send("HeapProfiler.enable")
        await cdp.send("HeapProfiler.collectGarbage")
        await cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
    finally:
        await cdp.detach()
    return needle in "".join(chunks)


def utc_title(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_title(title: str) -> datetime:
    return datetime.strptime(title, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)


# ---------------------------------------------------------------- the seed flow


async def test_sign_in_create_reveal_call_and_revoke(console: Console, servers: Servers) -> None:
    page = console.page
    gateway_url = servers.gateway
    await console.open()

    await console.sign_in("not-the-admin-token")
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    assert await page.evaluate("sessionStorage.length") == 0

    await console.sign_in()
    await expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    await console.create_project("Email validation", "100/minute")
    await expect(page.get_by_role("heading", name="Access Tokens")).to_be_visible()
    settings = page.get_by_role("region", name="Settings")
    await expect(settings.get_by_label("Rate limit")).to_have_value("100/minute")

    issued: dict[str, str] = {}
    for number, (description, label, days) in enumerate(EXPIRATIONS):
        raw = await console.create_token(description, label)
        assert raw.startswith("tg_")
        assert await gateway_status(gateway_url, raw) == 200
        if number == 1:
            await console.screenshot("reveal-dialog.png")
        # Both ways out of the reveal dialog: the Done button, and Escape (which asks first).
        if number % 2:
            await page.keyboard.press("Escape")
            await console.button("Close without copying").click()
        else:
            await console.button("Done").click()
        await expect(console.dialog("Your new token")).to_be_hidden()
        await expect(console.button("Create token")).to_be_focused()
        await expect(console.row(description)).to_be_visible()
        await assert_secret_gone(page, raw)
        await check_row(console.row(description), days)
        issued[description] = raw

    # Newest first; the gateway's calls show up as "Last used" once it has written them.
    first = page.locator("#tokens-body tr").first
    await expect(first).to_contain_text("Nightly CI")
    for description in issued:
        await reload_until_used(console, description)
    await console.fill_token_form("Screenshot of the create dialog", "90 days")
    await console.screenshot("create-dialog.png")
    await console.button("Cancel").click()
    await console.fits()
    await console.screenshot("token-list.png", full_page=True)

    for number, (description, raw) in enumerate(issued.items()):
        await console.row(description).get_by_role("button", name="Revoke").click()
        confirm = console.dialog("Revoke token?")
        await expect(confirm).to_contain_text(description)
        if number == 0:
            await console.screenshot("revoke-dialog.png")
        await confirm.get_by_role("button", name="Revoke").click()
        await expect(console.row(description)).to_have_count(0)
        await wait_for_status(gateway_url, raw, 401)
    await expect(page.get_by_text("No access tokens yet.")).to_be_visible()


async def reload_until_used(console: Console, description: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        last_used = console.row(description).get_by_role("cell").nth(4)
        await expect(last_used).to_be_visible()
        if await last_used.locator("time").count():
            title = await last_used.locator("time").get_attribute("title") or ""
            assert abs(datetime.now(UTC) - parse_title(title)) < timedelta(minutes=1)
            return
        assert time.monotonic() < deadline, f"{description!r} still shows no last use"
        await console.page.reload()


async def check_row(row: Locator, days: int | None) -> None:
    """Masked value, dates, "Never" for no expiry and no use yet, and the Active badge."""
    cells = row.get_by_role("cell")
    await expect(cells.nth(1)).to_contain_text("…")
    created = parse_title(await cells.nth(2).locator("time").get_attribute("title") or "")
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    if days is None:
        await expect(cells.nth(3)).to_have_text("Never")
    else:
        expires = parse_title(await cells.nth(3).locator("time").get_attribute("title") or "")
        assert abs(expires - created - timedelta(days=days)) < timedelta(minutes=1)
    await expect(cells.nth(4)).to_have_text("Never")
    await expect(cells.nth(5)).to_have_text("Active")


# ---------------------------------------------------------------- the token table


async def open_project(console: Console, name: str, rate_limit: str | None = None) -> str:
    """A project made through the API, opened in the console; returns its id."""
    body = {"name": name} if rate_limit is None else {"name": name, "rate_limit": rate_limit}
    project = await admin_api(console.base, "POST", "/v1/projects", body)
    await console.open()
    await console.sign_in()
    await console.page.get_by_role("link", name=name, exact=True).click()
    await expect(console.page.get_by_role("heading", name=name, level=1)).to_be_visible()
    return str(project["id"])


async def test_load_more_pages_with_the_cursor(console: Console) -> None:
    project_id = await open_project(console, "Paged")
    path = f"/v1/projects/{project_id}/tokens"
    for number in range(23):
        await admin_api(console.base, "POST", path, {"description": f"key {number:02}"})
    await console.page.reload()

    rows = console.page.locator("#tokens-body tr")
    await expect(rows).to_have_count(20)
    await expect(rows.first).to_contain_text("key 22")
    await console.button("Load more").click()
    await expect(rows).to_have_count(23)
    await expect(rows.last).to_contain_text("key 00")
    await expect(console.button("Load more")).to_be_hidden()


async def test_expired_badge_and_local_dates(console: Console, servers: Servers) -> None:
    project_id = await open_project(console, "Dates")
    path = f"/v1/projects/{project_id}/tokens"
    old = await admin_api(console.base, "POST", path, {"description": "old"})
    used = await admin_api(console.base, "POST", path, {"description": "used"})
    past = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    await servers.pool.execute("UPDATE tokens SET expires_at = $1 WHERE id = $2", past, old["id"])
    await servers.pool.execute(
        "UPDATE tokens SET last_used_at = $1 WHERE id = $2", past, used["id"]
    )
    await console.page.reload()

    expired = console.row("old").get_by_role("cell")
    await expect(expired.nth(5)).to_have_text("Expired")
    expires = expired.nth(3).locator("time")
    await expect(expires).to_have_attribute("title", "2025-03-04 05:06:07 UTC")
    # 05:06 UTC is 10:36 in Kolkata: the page speaks the reader's local time.
    text = (await expires.inner_text()).replace("\u202f", " ")
    assert text == "Mar 4, 2025, 10:36 AM"
    assert past.astimezone(ZoneInfo(TIMEZONE)).strftime("%H:%M") == "10:36"

    active = console.row("used").get_by_role("cell")
    await expect(active.nth(5)).to_have_text("Active")
    await expect(active.nth(4).locator("time")).to_have_attribute("title", utc_title(past))


# ---------------------------------------------------------------- errors and settings


async def refused_new_project(console: Console, name: str, rate_limit: str) -> Locator:
    """Sign in, submit the New project dialog with a bad rate limit: the dialog, still open."""
    await console.open()
    await console.sign_in()
    await console.create_project(name, rate_limit)
    return console.dialog("New project")


async def test_api_errors_show_next_to_the_action(console: Console) -> None:
    page = console.page
    dialog = await refused_new_project(console, "Bad limit", "lots")
    await expect(dialog.get_by_role("alert")).to_contain_text("rate")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Rate limit").fill("5/second")
    await dialog.get_by_role("button", name="Create", exact=True).click()
    await expect(page.get_by_role("heading", name="Bad limit", level=1)).to_be_visible()

    settings = page.get_by_role("region", name="Settings")
    await settings.get_by_label("Rate limit").fill("often")
    await settings.get_by_role("button", name="Save settings").click()
    await expect(settings.get_by_role("alert")).to_contain_text("rate")
    await settings.get_by_label("Rate limit").fill("")
    await settings.get_by_role("button", name="Save settings").click()
    await expect(settings.get_by_role("status")).to_have_text("Saved.")
    projects = (await admin_api(console.base, "GET", "/v1/projects"))["projects"]
    assert [p["rate_limit"] for p in projects if p["name"] == "Bad limit"] == [None]


async def test_revoking_a_token_already_gone_still_removes_the_row(console: Console) -> None:
    project_id = await open_project(console, "Race")
    path = f"/v1/projects/{project_id}/tokens"
    token = await admin_api(console.base, "POST", path, {"description": "twice"})
    await console.page.reload()
    await console.row("twice").get_by_role("button", name="Revoke").click()
    await admin_api(console.base, "DELETE", f"{path}/{token['id']}")
    await console.dialog("Revoke token?").get_by_role("button", name="Revoke").click()
    await expect(console.row("twice")).to_have_count(0)


async def test_deleting_a_project_stops_its_tokens(console: Console, servers: Servers) -> None:
    page = console.page
    project_id = await open_project(console, "Short-lived")
    raw = await console.create_token("doomed", "Never")
    await console.button("Done").click()
    assert await gateway_status(servers.gateway, raw) == 200

    await console.button("Delete project").click()
    confirm = console.dialog("Delete project?")
    await expect(confirm).to_contain_text("Short-lived")
    await confirm.get_by_role("button", name="Delete project").click()
    await expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    await expect(page.get_by_role("status")).to_have_text("Project “Short-lived” deleted.")
    await expect(page.get_by_role("link", name="Short-lived", exact=True)).to_have_count(0)
    await wait_for_status(servers.gateway, raw, 401)

    await page.goto(f"{console.base}#/projects/{project_id}")
    await expect(page.get_by_role("heading", name="Project not found")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("does not exist")


# ---------------------------------------------------------------- webhooks


async def test_add_a_webhook_see_its_secret_once_send_a_test_and_delete_it(
    console: Console,
) -> None:
    page = console.page
    receiver = await Receiver().start()
    try:
        await open_project(console, "Hooked")
        section = page.get_by_role("region", name="Webhooks")
        await expect(section.get_by_text("No webhooks yet.")).to_be_visible()
        await console.button("Add webhook").click()
        dialog = console.dialog("Add webhook")
        await dialog.get_by_label("URL").fill("ftp://example.com/x")
        await dialog.get_by_role("button", name="Add", exact=True).click()
        await expect(dialog.get_by_role("alert")).to_contain_text("URL")
        await dialog.get_by_label("URL").fill(receiver.url())
        await dialog.get_by_label("token.revoked").check()
        await dialog.get_by_label("token.leaked").check()
        await console.screenshot("webhook-dialog.png")
        await dialog.get_by_role("button", name="Add", exact=True).click()

        reveal = console.dialog("Your webhook signing secret")
        await expect(reveal).to_be_visible()
        secret = await reveal.locator("code#webhook-secret").inner_text()
        assert secret.startswith("whsec_")
        await reveal.get_by_role("button", name="Copy").click()
        await expect(reveal.get_by_role("status")).not_to_be_empty()
        await reveal.get_by_role("button", name="Done").click()
        await expect(reveal).to_be_hidden()
        item = section.get_by_role("listitem").filter(has_text=receiver.url())
        await expect(item).to_contain_text("token.leaked, token.revoked")  # the dialog is done
        await assert_secret_gone(page, secret)
        await expect(item.get_by_text("No deliveries yet.")).to_be_visible()
        await item.get_by_role("button", name="Send test event").click()
        rows = item.get_by_role("table").locator("tbody tr")
        await expect(rows.first).to_contain_text("webhook.test")
        await expect(rows.first).to_contain_text("Delivered")
        await expect(rows.first).to_contain_text("HTTP 200")
        (received,) = receiver.received
        assert Verifier(secret).verify(received.body, received.headers)["type"] == "webhook.test"
        await expect(rows.first).to_contain_text(received.event_id)
        await console.fits()
        await console.screenshot("webhooks.png", full_page=True)

        await item.get_by_role("button", name="Delete").click()
        confirm = console.dialog("Delete webhook?")
        await expect(confirm).to_contain_text(receiver.url())
        await confirm.get_by_role("button", name="Delete webhook").click()
        await expect(item).to_have_count(0)
        await expect(section.get_by_text("No webhooks yet.")).to_be_visible()
    finally:
        await receiver.close()


# ---------------------------------------------------------------- session and keyboard


async def test_sign_out_forgets_the_admin_token(console: Console) -> None:
    page = console.page
    await console.open()
    await console.sign_in()
    await expect(console.button("New project")).to_be_visible()
    assert await page.evaluate("({...sessionStorage})") == {SESSION_KEY: ADMIN_TOKEN}
    await page.reload()  # the tab keeps its session
    await expect(console.button("New project")).to_be_visible()

    await console.button("Sign out").click()
    await expect(page.get_by_label("Admin token")).to_be_visible()
    assert await page.evaluate("sessionStorage.length + localStorage.length") == 0
    assert await page.context.cookies() == []
    await page.reload()
    await expect(page.get_by_label("Admin token")).to_be_visible()


async def test_a_token_the_api_stops_accepting_signs_the_tab_out(console: Console) -> None:
    page = console.page
    await console.open()
    await console.sign_in()
    await expect(console.button("New project")).to_be_visible()
    # As if the server restarted with another ADMIN_TOKEN.
    await page.evaluate(f"sessionStorage.setItem('{SESSION_KEY}', 'rotated-away')")
    await page.reload()
    await expect(page.get_by_role("alert")).to_contain_text("Sign in again")
    assert await page.evaluate("sessionStorage.length") == 0


async def test_keyboard_only_create_and_revoke(console: Console) -> None:
    page = console.page
    await open_project(console, "Keys")
    await console.button("Create token").focus()
    await page.keyboard.press("Enter")
    await expect(console.dialog("Create token").get_by_label("Description")).to_be_focused()
    await page.keyboard.type("typed")
    await page.keyboard.press("Tab")
    await expect(console.dialog("Create token").get_by_label("Expiration")).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Scopes")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Allowed addresses")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(console.button("Cancel").first).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(console.button("Copy")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(console.button("Back to the token")).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")  # Close without copying
    await expect(console.button("Create token")).to_be_focused()

    await console.row("typed").get_by_role("button", name="Revoke").focus()
    await page.keyboard.press("Enter")
    await expect(
        console.dialog("Revoke token?").get_by_role("button", name="Cancel")
    ).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(console.row("typed")).to_have_count(0)
    await expect(console.button("Create token")).to_be_focused()


async def test_copy_puts_the_token_on_the_clipboard(console: Console) -> None:
    await console.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await open_project(console, "Copy")
    raw = await console.create_token("copied", "Never")
    await console.button("Copy").click()
    await expect(console.dialog("Your new token").get_by_role("status")).to_have_text(
        "Copied to the clipboard."
    )
    assert await console.page.evaluate("navigator.clipboard.readText()") == raw


# ---------------------------------------------------------------- small screens


async def test_layout_fits_from_phone_to_desktop(console: Console) -> None:
    page = console.page
    await page.set_viewport_size({"width": 360, "height": 780})
    await console.open()
    await console.fits()
    project_id = await open_project(console, "A project name long enough to need wrapping")
    path = f"/v1/projects/{project_id}/tokens"
    await admin_api(console.base, "POST", path, {"description": "x" * 200, "expires_in": "never"})
    await admin_api(console.base, "POST", path, {"description": "phone"})
    await page.reload()
    await expect(console.row("phone")).to_be_visible()
    await console.fits()
    await console.screenshot("token-list-360.png", full_page=True)

    await console.create_token("small", "1 year")
    await console.fits()
    await console.screenshot("reveal-dialog-360.png")
    await console.button("Done").click()
    await console.fill_token_form("small", "30 days")
    await console.fits()
    await console.screenshot("create-dialog-360.png")
    await console.button("Cancel").click()

    for width in (414, 768, 1024, 1100, 1280, 1920):
        await page.set_viewport_size({"width": width, "height": 900})
        await console.fits()


# ---------------------------------------------------------------- the only copy of a token


async def test_escape_asks_before_the_only_copy_of_a_token_is_thrown_away(
    console: Console,
) -> None:
    page = console.page
    await open_project(console, "Careful")
    raw = await console.create_token("precious", "Never")
    reveal = console.dialog("Your new token")

    await page.mouse.click(5, 5)  # the backdrop
    await expect(reveal.locator("code")).to_have_text(raw)
    await page.keyboard.press("Escape")
    await expect(reveal.get_by_role("alert")).to_contain_text("Close without copying the token?")
    await expect(reveal.locator("code")).to_have_text(raw)  # still there to copy
    await expect(console.button("Back to the token")).to_be_focused()
    await console.screenshot("reveal-ask.png")

    await console.button("Back to the token").click()
    await expect(reveal.get_by_role("alert")).to_be_hidden()
    await expect(console.button("Copy")).to_be_focused()
    await page.keyboard.press("Escape")  # asks again
    await console.button("Close without copying").click()
    await expect(reveal).to_be_hidden()
    await expect(console.button("Create token")).to_be_focused()
    await expect(console.row("precious")).to_be_visible()  # added once the dialog's close ran
    await assert_secret_gone(page, raw)


async def test_done_empties_the_reveal_at_once(console: Console) -> None:
    # Checked in the same task as the click: the dialog's close event, which empties it
    # too, comes a task later, and until then the secret was still in the page.
    await open_project(console, "At once")
    raw = await console.create_token("instant", "Never")
    secret = raw.rsplit("_", 1)[1]
    still_there = await console.page.evaluate(
        """(secret) => {
            document.getElementById("reveal-done").click();
            return document.documentElement.outerHTML.includes(secret);
        }""",
        secret,
    )
    assert still_there is False
    await assert_secret_gone(console.page, raw)


async def test_escape_twice_closes(console: Console) -> None:
    await open_project(console, "Twice")
    raw = await console.create_token("gone", "Never")
    await console.page.keyboard.press("Escape")
    await expect(console.button("Close without copying")).to_be_visible()
    await console.page.keyboard.press("Escape")
    await expect(console.dialog("Your new token")).to_be_hidden()
    await expect(console.row("gone")).to_be_visible()  # added once the dialog's close ran
    await assert_secret_gone(console.page, raw)


@pytest.mark.parametrize("copy_with", ["button", "keys"])
async def test_once_copied_escape_closes_at_once(console: Console, copy_with: str) -> None:
    page = console.page
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await open_project(console, f"Copied with {copy_with}")
    raw = await console.create_token("kept", "Never")
    reveal = console.dialog("Your new token")
    if copy_with == "button":
        await console.button("Copy").click()
        await expect(reveal.get_by_role("status")).to_have_text("Copied to the clipboard.")
    else:
        await reveal.locator("code").select_text()
        await page.keyboard.press("Control+C")
    assert await page.evaluate("navigator.clipboard.readText()") == raw
    await page.keyboard.press("Escape")
    await expect(reveal).to_be_hidden()
    await expect(console.button("Create token")).to_be_focused()
    await expect(console.row("kept")).to_be_visible()  # added once the dialog's close ran
    await assert_secret_gone(page, raw)


# ---------------------------------------------------------------- words for people


async def test_a_bad_rate_limit_is_explained_with_an_example(console: Console) -> None:
    page = console.page
    dialog = await refused_new_project(console, "Explained", "lots")
    alert = dialog.get_by_role("alert")
    await expect(alert).to_contain_text("requests per second, minute or hour")
    await expect(alert).to_contain_text("for example 600/minute")
    for jargon in ("null", "rate_limit", "N/"):
        assert jargon not in await alert.inner_text()
    rate = dialog.get_by_label("Rate limit")
    await expect(rate).to_have_attribute("aria-invalid", "true")
    await expect(rate).to_be_focused()
    await console.screenshot("rate-limit-error.png")

    await rate.press("Backspace")  # the field changes: its error goes
    await expect(alert).to_be_hidden()
    await expect(rate).not_to_have_attribute("aria-invalid", "true")

    await rate.fill("10/min")  # a short spelling, stored canonically
    await dialog.get_by_role("button", name="Create", exact=True).click()
    settings = page.get_by_role("region", name="Settings")
    await expect(settings.get_by_label("Rate limit")).to_have_value("10/minute")

    await settings.get_by_label("Rate limit").fill("often")
    await settings.get_by_role("button", name="Save settings").click()
    await expect(settings.get_by_role("alert")).to_contain_text("for example 600/minute")
    await settings.get_by_label("Rate limit").fill("5/sec")
    await expect(settings.get_by_role("alert")).to_be_hidden()
    await settings.get_by_role("button", name="Save settings").click()
    await expect(settings.get_by_label("Rate limit")).to_have_value("5/second")


async def test_an_api_refusal_is_told_in_the_console_words(console: Console) -> None:
    """Without the API's description the console cannot check first: the API's own
    refusal is then shown next to the field, in the console's words."""
    page = console.page
    await page.route("**/v1/openapi.json", lambda route: route.fulfill(status=404, body="not here"))
    dialog = await refused_new_project(console, "Unchecked", "lots")
    alert = dialog.get_by_role("alert")
    await expect(alert).to_contain_text("requests per second, minute or hour")
    assert "null" not in await alert.inner_text()
    assert "rate_limit" not in await alert.inner_text()
    await expect(dialog.get_by_label("Rate limit")).to_have_attribute("aria-invalid", "true")
    await dialog.get_by_label("Rate limit").fill("")
    await expect(alert).to_be_hidden()


async def test_a_token_without_a_description_reads_naturally_when_revoked(
    console: Console,
) -> None:
    project_id = await open_project(console, "Nameless")
    path = f"/v1/projects/{project_id}/tokens"
    token = await admin_api(console.base, "POST", path, {})
    named = await admin_api(console.base, "POST", path, {"description": "CI runner"})
    await console.page.reload()

    await console.row(named["masked"]).get_by_role("button", name="Revoke").click()
    text = console.dialog("Revoke token?").locator("#revoke-text")
    await expect(text).to_have_text(
        f"Programs using “CI runner” ({named['masked']}) will be refused at once. "
        "This cannot be undone."
    )
    await console.button("Cancel").click()

    await console.row(token["masked"]).get_by_role("button", name="Revoke").click()
    await expect(text).to_have_text(
        f"Programs using the token {token['masked']} will be refused at once. "
        "This cannot be undone."
    )


# ---------------------------------------------------------------- limits from the API


async def test_the_console_takes_its_limits_from_the_api_description(
    console: Console, servers: Servers
) -> None:
    """A description with other limits (as a newer server might have) changes the console."""
    page = console.page
    real = await admin_api(console.base, "GET", "/v1/openapi.json")
    bodies = real["components"]["schemas"]
    assert bodies["ProjectCreate"]["properties"]["name"]["maxLength"] == 200
    bodies["ProjectCreate"]["properties"]["name"]["maxLength"] = 12
    bodies["ProjectUpdate"]["properties"]["name"]["maxLength"] = 13
    bodies["TokenCreate"]["properties"]["description"]["maxLength"] = 7
    bodies["TokenCreate"]["properties"]["expires_in"]["enum"] = ["90d", "never"]
    bodies["TokenCreate"]["properties"]["expires_in"]["default"] = "never"

    async def other(route: Any) -> None:
        await route.fulfill(json=real)

    await page.route("**/v1/openapi.json", other)
    await console.open()
    await console.sign_in()
    await console.button("New project").click()
    await expect(console.dialog("New project").get_by_label("Name")).to_have_attribute(
        "maxlength", "12"
    )
    await console.button("Cancel").click()
    await admin_api(console.base, "POST", "/v1/projects", {"name": "Limits"})
    await page.reload()
    await page.get_by_role("link", name="Limits", exact=True).click()
    await expect(page.locator("#settings-name")).to_have_attribute("maxlength", "13")

    await console.button("Create token").click()
    dialog = console.dialog("Create token")
    await expect(dialog.get_by_label("Description")).to_have_attribute("maxlength", "7")
    await expect(dialog).to_contain_text("up to 7 characters")
    expiration = dialog.get_by_label("Expiration")
    await expect(expiration.locator("option")).to_have_text(["90 days", "Never"])
    await expect(expiration).to_have_value("never")
    await dialog.get_by_label("Description").fill("much longer than seven")
    await expect(dialog.get_by_label("Description")).to_have_value("much lo")
    await dialog.get_by_role("button", name="Create", exact=True).click()
    await expect(console.dialog("Your new token")).to_be_visible()
    await console.button("Done").click()
    await expect(console.row("much lo").get_by_role("cell").nth(3)).to_have_text("Never")


async def test_the_real_limits_are_the_api_limits(console: Console) -> None:
    page = console.page
    await open_project(console, "Real limits")
    await expect(page.locator("#settings-name")).to_have_attribute("maxlength", "200")
    await console.button("Create token").click()
    dialog = console.dialog("Create token")
    await expect(dialog.get_by_label("Description")).to_have_attribute("maxlength", "200")
    await expect(dialog.get_by_label("Expiration").locator("option")).to_have_text(
        ["30 days", "90 days", "6 months", "1 year", "Never"]
    )
    await expect(dialog.get_by_label("Expiration")).to_have_value("30d")


# ---------------------------------------------------------------- capabilities (SPEC §10)


async def gateway_answer(gateway: str, token: str, path: str) -> tuple[int, str | None]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway + path.lstrip("/"), headers=headers) as response,
    ):
        return response.status, response.headers.get("Deprecation")


async def test_create_a_token_with_scopes_and_allowed_addresses(
    console: Console, servers: Servers
) -> None:
    await open_project(console, "Scoped")
    await console.button("Create token").click()
    dialog = console.dialog("Create token")
    await dialog.get_by_label("Description").fill("validator")
    await dialog.get_by_label("Scopes").fill("GET /v1/validate\n\nbogus")
    await dialog.get_by_label("Allowed addresses").fill("127.0.0.1\n2001:db8::/48")
    await dialog.get_by_role("button", name="Create", exact=True).click()
    # The API's refusal, next to its field, in the console's words.
    await expect(dialog.get_by_role("alert")).to_contain_text("Scopes must be a method")
    await expect(dialog.get_by_label("Scopes")).to_be_focused()
    await dialog.get_by_label("Scopes").fill("GET /v1/validate\n* /v1/status")
    await dialog.get_by_role("button", name="Create", exact=True).click()
    reveal = console.dialog("Your new token")
    raw = await reveal.locator("code").inner_text()
    await console.button("Done").click()
    row = console.row("validator")
    await expect(row).to_contain_text("Only GET /v1/validate · * /v1/status")
    await expect(row).to_contain_text("From 127.0.0.1, 2001:db8::/48")
    assert (await gateway_answer(servers.gateway, raw, "/v1/validate?x=1"))[0] == 200
    assert (await gateway_answer(servers.gateway, raw, "/v1/other"))[0] == 403
    await console.fits()


async def test_rotate_reveals_the_successor_and_the_old_row_says_until_when(
    console: Console, servers: Servers
) -> None:
    project_id = await open_project(console, "Rotating")
    old = await admin_api(
        console.base, "POST", f"/v1/projects/{project_id}/tokens", {"description": "billing"}
    )
    await console.page.reload()
    await console.row("billing").get_by_role("button", name="Rotate").click()
    confirm = console.dialog("Rotate token?")
    await expect(confirm).to_contain_text("billing")
    grace = confirm.get_by_label("Old token keeps working for")
    assert await grace.locator("option").all_inner_texts() == [
        "No time: stop it now",
        "1 hour",
        "24 hours",
        "7 days",
    ]
    await expect(grace).to_have_value("24h")
    await grace.select_option(label="1 hour")
    await confirm.get_by_role("button", name="Rotate").click()
    reveal = console.dialog("Your new token")
    await expect(reveal).to_be_visible()
    raw = await reveal.locator("code").inner_text()
    await console.screenshot("rotate-reveal.png")
    await console.button("Done").click()
    await assert_secret_gone(console.page, raw)

    rows = console.page.locator("#tokens-body tr")
    await expect(rows).to_have_count(2)
    old_row = console.page.locator(f'#tokens-body tr[data-token-id="{old["id"]}"]')
    status = old_row.locator('td[data-label="Status"]')
    await expect(status).to_contain_text("Rotating")
    await expect(status).to_contain_text("until")
    ends = parse_title(await status.locator("time").get_attribute("title") or "")
    assert abs(ends - datetime.now(UTC) - timedelta(hours=1)) < timedelta(minutes=1)
    await expect(old_row.get_by_role("button", name="Rotate")).to_have_count(0)
    await status.get_by_role("button", name="its successor").click()
    successor = rows.first
    await expect(successor).to_have_class(re.compile("highlight"))
    await expect(successor.locator('td[data-label="Status"]')).to_have_text("Active")
    await console.screenshot("rotating-row.png")
    # Both work; the old one's answers say it is deprecated.
    assert await gateway_answer(servers.gateway, raw, "/v1/x") == (200, None)
    status_code, deprecation = await gateway_answer(servers.gateway, old["token"], "/v1/x")
    assert status_code == 200 and deprecation is not None and deprecation.startswith("@")


async def test_expires_soon_badge_and_filter(console: Console, servers: Servers) -> None:
    project_id = await open_project(console, "Soon")
    path = f"/v1/projects/{project_id}/tokens"
    soon = await admin_api(console.base, "POST", path, {"description": "soon"})
    await admin_api(console.base, "POST", path, {"description": "later"})
    gone = await admin_api(console.base, "POST", path, {"description": "gone"})
    await servers.pool.execute(
        "UPDATE tokens SET expires_at = now() + interval '3 days' WHERE id = $1", soon["id"]
    )
    await servers.pool.execute(
        "UPDATE tokens SET expires_at = now() - interval '1 day' WHERE id = $1", gone["id"]
    )
    await console.page.reload()
    await expect(console.row("soon").locator('td[data-label="Status"]')).to_have_text(
        "Expires soon"
    )
    await expect(console.row("later").locator('td[data-label="Status"]')).to_have_text("Active")
    rows = console.page.locator("#tokens-body tr")
    show = console.page.get_by_label("Show")
    for label, expected in [
        ("Expires soon (7 days)", ["soon"]),
        ("Expired", ["gone"]),
        ("Active", ["later", "soon"]),
        ("All tokens", ["gone", "later", "soon"]),
    ]:
        await show.select_option(label=label)
        await expect(rows).to_have_count(len(expected))
        assert (
            sorted([await r.get_by_role("cell").first.inner_text() for r in await rows.all()])
            == expected
        )
