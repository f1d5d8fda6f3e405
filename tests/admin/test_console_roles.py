# ruff: noqa: F811  (the fixtures imported from test_console are parameters here)
"""The console for every kind of credential (SPEC §8), in a real Chromium: a portal customer
reaches one project's Access Tokens page and nothing of any other project, a viewer gets no
buttons that change anything, a manager only its project, an admin the Admin keys and
Activity pages. Servers and browser are test_console's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Response, expect

from tests.admin.test_console import (  # noqa: F401  (fixtures)
    CHROMIUM,
    Console,
    Servers,
    admin_api,
    browser,
    console,
    servers,
)

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="chromium not installed: apt-get install chromium"
    ),
    pytest.mark.asyncio(loop_scope="module"),
]


async def project_named(servers: Servers, name: str) -> dict[str, Any]:
    project: dict[str, Any] = await admin_api(servers.admin, "POST", "/v1/projects", {"name": name})
    await admin_api(
        servers.admin, "POST", f"/v1/projects/{project['id']}/tokens", {"description": name}
    )
    return project


async def key_for(servers: Servers, role: str, project_id: str) -> str:
    body = {"name": f"{role} key", "role": role, "project_id": project_id}
    made = await admin_api(servers.admin, "POST", "/v1/admin-keys", body)
    return str(made["key"])


class Recorder:
    """Every answer the page received, read in full."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self._reading: list[asyncio.Task[None]] = []

    def attach(self, console: Console) -> None:
        console.page.on(
            "response", lambda r: self._reading.append(asyncio.ensure_future(self._read(r)))
        )

    async def _read(self, response: Response) -> None:
        try:
            self.bodies.append(f"{response.url}\n{await response.text()}")
        except Exception:  # a redirect or an aborted answer has no body
            self.bodies.append(response.url)

    async def everything(self) -> str:
        await asyncio.gather(*self._reading)
        return "\n".join(self.bodies)


async def test_a_portal_customer_reaches_one_project_and_nothing_else(
    console: Console, servers: Servers
) -> None:
    page = console.page
    own = await project_named(servers, "Acme Rockets")
    others = [await project_named(servers, name) for name in ("Globex Secret", "Initech Payroll")]
    link = await admin_api(
        servers.admin, "POST", f"/v1/projects/{own['id']}/portal-sessions", {"role": "manager"}
    )
    code = link["url"].rsplit("/", 1)[1]
    recorder = Recorder()
    recorder.attach(console)
    await page.goto(f"{servers.admin}#/portal/{code}")

    await expect(page.get_by_role("heading", name="Acme Rockets")).to_be_visible()
    await expect(page.get_by_role("heading", name="Access Tokens")).to_be_visible()
    assert code not in page.url  # the one-time code leaves the address bar (and history)
    for hidden in ("Settings", "Webhooks", "Delete this project"):
        await expect(page.get_by_role("heading", name=hidden)).to_have_count(0)
    await expect(page.get_by_role("link", name="Projects")).to_have_count(0)
    await expect(page.get_by_role("link", name="Admin keys")).to_have_count(0)

    raw = await console.create_token("Customer CI", "Never")
    assert raw.startswith("tg_")
    await console.button("Copy").click()
    await console.button("Done").click()
    row = console.row("Customer CI")
    await expect(row).to_be_visible()
    await row.get_by_role("button", name="Revoke").click()
    await console.dialog("Revoke token?").get_by_role("button", name="Revoke").click()
    await expect(row).to_have_count(0)
    await expect(console.row("Acme Rockets")).to_be_visible()  # the token made beforehand
    await console.screenshot("portal.png", full_page=True)

    # Nowhere on the page, nor in any answer the page received: another project.
    html = await page.evaluate("document.documentElement.outerHTML")
    received = await recorder.everything()
    assert "/v1/me" in received and "/v1/projects/" in received
    for other in others:
        for trace in (other["name"], other["id"]):
            assert trace not in html and trace not in received
    # The link worked once.
    again = await console.page.context.new_page()
    await again.goto(f"{servers.admin}#/portal/{code}")
    await expect(again.get_by_role("alert")).to_contain_text("used already")
    await again.close()


async def test_a_viewer_gets_no_buttons_that_change_anything(
    console: Console, servers: Servers
) -> None:
    page = console.page
    project = await project_named(servers, "Read Only Co")
    await console.open()
    await console.sign_in(await key_for(servers, "viewer", project["id"]))
    await expect(page.get_by_role("heading", name="Read Only Co")).to_be_visible()
    await expect(console.row("Read Only Co")).to_be_visible()
    buttons = ("Create token", "Revoke", "Rotate", "Save settings", "New project", "Delete project")
    for name in buttons:
        await expect(page.get_by_role("button", name=name)).to_have_count(0)
    await expect(page.get_by_role("heading", name="Webhooks")).to_have_count(0)
    settings = page.get_by_role("region", name="Settings")
    await expect(settings.get_by_label("Name")).not_to_be_editable()
    await expect(page.get_by_role("region", name="Activity")).to_contain_text("created a token")


async def test_a_manager_sees_its_project_only(console: Console, servers: Servers) -> None:
    page = console.page
    project = await project_named(servers, "Managed Ltd")
    other = await project_named(servers, "Not Yours Inc")
    await console.open()
    await console.sign_in(await key_for(servers, "manager", project["id"]))
    await expect(page.get_by_role("heading", name="Managed Ltd")).to_be_visible()
    await expect(console.button("Create token")).to_be_visible()
    await expect(page.get_by_role("button", name="Delete project")).to_have_count(0)
    await expect(page.get_by_role("link", name="Projects")).to_have_count(0)
    # The project list and another project's page both lead back to its own.
    for elsewhere in ("#/", f"#/projects/{other['id']}", "#/admin-keys"):
        await page.goto(f"{servers.admin}{elsewhere}")
        await expect(page).to_have_url(f"{servers.admin}#/projects/{project['id']}")
        await expect(page.get_by_role("heading", name="Managed Ltd")).to_be_visible()
    assert "Not Yours Inc" not in await page.evaluate("document.documentElement.outerHTML")


async def test_an_admin_creates_reveals_and_revokes_an_admin_key(
    console: Console, servers: Servers
) -> None:
    page = console.page
    await project_named(servers, "Keyed Project")
    await console.open()
    await console.sign_in()
    await page.get_by_role("link", name="Admin keys").click()
    await expect(page.get_by_role("heading", name="Admin keys")).to_be_visible()
    await console.button("Create admin key").click()
    dialog = console.dialog("Create admin key")
    await dialog.get_by_label("Name").fill("Billing backend")
    await dialog.get_by_label("Role").select_option("viewer")
    await dialog.get_by_label("Project").select_option(label="Keyed Project")
    await dialog.get_by_role("button", name="Create", exact=True).click()
    reveal = console.dialog("Your new admin key")
    await expect(reveal).to_be_visible()
    raw = await reveal.locator("code").inner_text()
    assert raw.startswith("tgadm_")
    await console.button("Copy").click()
    await console.button("Done").click()
    row = page.locator("#keys-body tr").filter(has_text="Billing backend")
    await expect(row).to_contain_text("Viewer of Keyed Project")
    secret = raw.rsplit("_", 1)[1]
    assert secret not in await page.evaluate("document.documentElement.outerHTML")
    await console.screenshot("admin-keys.png")
    await row.get_by_role("button", name="Revoke").click()
    await console.dialog("Revoke admin key?").get_by_role("button", name="Revoke").click()
    await expect(row).to_have_count(0)
    # The global Activity page has both changes.
    await page.get_by_role("link", name="Activity").click()
    activity = page.locator("#activity-list")
    await expect(activity).to_contain_text("revoked an admin key")
    await expect(activity).to_contain_text("created an admin key")
