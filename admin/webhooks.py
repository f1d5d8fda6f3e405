"""Webhook use cases, shared by the HTTP API and the command line (SPEC §12).

A webhook's secret is made here and returned once, at creation. Its URL must be an
``http(s)`` URL with a host and no credentials, and every address of that host public
(``ssrf``), unless ``WEBHOOK_ALLOW_PRIVATE``. Arguments are already checked
(``schemas.WEBHOOK_CREATE``, ``DELIVERY_PAGE``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from yarl import URL

from gateway.core.errors import NotFound, TollgateError
from gateway.core.journal import EVENT_TYPES, Actor
from gateway.core.store import Store
from gateway.core.store_webhooks import Delivery, Webhook, WebhookLimit, WebhookStore
from gateway.core.tokens import is_token_id

from . import projects, signing
from .fields import field_error
from .ssrf import Guard, NotAllowed, Unresolvable

# What a webhook may subscribe to; webhook.test goes to the webhook it tests, whatever.
EVENT_CHOICES: Final = tuple(sorted(EVENT_TYPES - {"webhook.test"}))


@dataclass(frozen=True, slots=True)
class Created:
    """A new webhook and its secret, to show exactly once."""

    webhook: Webhook
    secret: str = field(repr=False)


def not_found() -> NotFound:
    return NotFound("webhook not found", code="webhook_not_found")


def check_url(url: str) -> URL:
    """``url`` as a URL webhooks can be sent to (its form only; its addresses: ``Guard``)."""
    try:
        parsed = URL(url)
        port = parsed.port  # a port out of range raises here
    except ValueError:
        raise field_error("invalid_value", "url", "is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or port is None:
        raise field_error("invalid_value", "url", "must be an http:// or https:// URL with a host")
    if parsed.user is not None or parsed.password is not None:
        # It would be shown in every listing: send a secret in the path instead.
        raise field_error("invalid_value", "url", "must not carry a user name or password")
    if parsed.fragment:
        raise field_error("invalid_value", "url", "must not carry a #fragment")
    return parsed


async def check_addresses(guard: Guard, url: str) -> None:
    """400 unless every address of the URL's host may be reached."""
    try:
        await guard.check_url(url)
    except NotAllowed as err:
        problem = f"is not allowed: {err}; webhooks reach public addresses only"
        raise field_error("webhook_url_not_allowed", "url", problem) from None
    except Unresolvable as err:
        raise field_error("webhook_url_unresolvable", "url", f"cannot be used: {err}") from None


async def create(
    store: Store,
    webhooks: WebhookStore,
    guard: Guard,
    project_id: str,
    *,
    url: str,
    events: list[str],
    actor: Actor,
) -> Created:
    await projects.get(store, project_id)
    check_url(url)
    await check_addresses(guard, url)
    secret = signing.new_secret()
    try:
        webhook = await webhooks.create(
            project_id, url=url, events=sorted(set(events)), secret=secret, actor=actor
        )
    except WebhookLimit:
        raise TollgateError(
            "the project has as many webhooks as it may; delete one first",
            code="too_many_webhooks",
            status=409,
        ) from None
    if webhook is None:  # the project was deleted meanwhile
        raise projects.not_found()
    return Created(webhook, secret)


async def list_all(store: Store, webhooks: WebhookStore, project_id: str) -> list[Webhook]:
    """The project's webhooks, newest first."""
    await projects.get(store, project_id)
    return await webhooks.list_webhooks(project_id)


async def delete(
    store: Store, webhooks: WebhookStore, project_id: str, webhook_id: str, *, actor: Actor
) -> None:
    """Delete the webhook; its pending deliveries are dropped."""
    known = is_token_id(project_id) and is_token_id(webhook_id)
    if known and await webhooks.delete(project_id, webhook_id, actor=actor):
        return
    raise await _missing(store, project_id)


async def send_test(store: Store, webhooks: WebhookStore, project_id: str, webhook_id: str) -> str:
    """Queue a ``webhook.test`` event for this webhook; its event id."""
    event_id = None
    if is_token_id(project_id) and is_token_id(webhook_id):
        event_id = await webhooks.send_test(project_id, webhook_id)
    if event_id is None:
        raise await _missing(store, project_id)
    return event_id


async def deliveries(
    store: Store, webhooks: WebhookStore, project_id: str, webhook_id: str, *, limit: int
) -> list[Delivery]:
    """The webhook's recent deliveries, newest first."""
    if not (is_token_id(project_id) and is_token_id(webhook_id)):
        raise await _missing(store, project_id)
    if await webhooks.get(project_id, webhook_id) is None:
        raise await _missing(store, project_id)
    return await webhooks.deliveries(project_id, webhook_id, limit=limit)


async def _missing(store: Store, project_id: str) -> NotFound:
    """Say which part is missing: the project, or the webhook within it."""
    await projects.get(store, project_id)
    return not_found()
