"""How projects and tokens look on the wire (the API's JSON and the CLI's ``--json``).

Each view is written here once, and its OpenAPI schema beside it (``ANSWERS``); a test
checks that the two name the same fields.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from gateway.core.journal import ACTIONS
from gateway.core.outbox import rfc3339
from gateway.core.store import Project, TokenInfo, TokenPage
from gateway.core.store_audit import AuditEvent, AuditPage
from gateway.core.store_keys import AdminKey, KeyPage
from gateway.core.store_usage import COLUMNS, UsageRow
from gateway.core.store_webhooks import Delivery, Webhook
from gateway.core.tokens import masked

from . import admin_keys, schemas, tokens, usage, webhooks
from .context import Principal

Schema = dict[str, Any]


def project_view(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "rate_limit": project.rate_limit,
        "quota": project.quota,
        "created_at": rfc3339(project.created_at),
    }


def project_list_view(projects: Sequence[Project]) -> dict[str, Any]:
    return {"projects": [project_view(p) for p in projects]}


class Credential(Protocol):
    """What a token and an admin key have alike (``TokenInfo``, ``AdminKey``)."""

    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def last_used_at(self) -> datetime | None: ...


def _status(credential: Credential, now: datetime) -> str:
    expires_at = credential.expires_at
    return "expired" if expires_at is not None and expires_at <= now else "active"


def credential_view(credential: Credential, prefix: str, now: datetime) -> dict[str, Any]:
    """The fields a token and an admin key show alike: the masked form, never the secret or
    its hash, and its lifetime."""
    return {
        "masked": masked(prefix, credential.id),
        "created_at": rfc3339(credential.created_at),
        "expires_at": rfc3339(credential.expires_at),
        "last_used_at": rfc3339(credential.last_used_at),
        "status": _status(credential, now),
    }


_NO_USAGE: Final = UsageRow("")


def counts_view(row: UsageRow | None) -> dict[str, int]:
    return (row or _NO_USAGE).counts()


def token_view(
    info: TokenInfo,
    prefix: str,
    *,
    now: datetime | None = None,
    usage_30d: UsageRow | None = None,
) -> dict[str, Any]:
    """A token as listings show it."""
    return {
        "id": info.id,
        "project_id": info.project_id,
        "description": info.description,
        **credential_view(info, prefix, now or datetime.now(UTC)),
        "expires_in": tokens.preset_of(info),
        "scopes": list(info.scopes),
        "allowed_ips": list(info.allowed_ips),
        "rotated_from": info.rotated_from,
        "replaced_by": info.replaced_by,
        "rotated_at": rfc3339(info.rotated_at),
        "usage_30d": counts_view(usage_30d),
    }


def new_token_view(issued: tokens.Issued, prefix: str) -> dict[str, Any]:
    """The only answer that ever carries the plaintext token."""
    return {**token_view(issued.info, prefix), "token": issued.token}


def token_page_view(
    page: TokenPage, prefix: str, usage_30d: Mapping[str, UsageRow] | None = None
) -> dict[str, Any]:
    found = usage_30d or {}
    return {
        "tokens": [token_view(info, prefix, usage_30d=found.get(info.id)) for info in page.tokens],
        "next_cursor": page.next_cursor,
    }


def usage_view(report: usage.Report) -> dict[str, Any]:
    key = "date" if report.group_by == "day" else "token_id"
    return {
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "group_by": report.group_by,
        "rows": [{key: str(row.key), **row.counts()} for row in report.rows],
        "totals": report.totals(),
    }


def usage_csv(report: usage.Report) -> str:
    """The same rows as CSV, a header line first (RFC 4180 line ends)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date" if report.group_by == "day" else "token_id", *COLUMNS])
    for row in report.rows:
        writer.writerow([str(row.key), *row.counts().values()])
    return out.getvalue()


def webhook_view(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.id,
        "project_id": webhook.project_id,
        "url": webhook.url,
        "events": list(webhook.events),
        "created_at": rfc3339(webhook.created_at),
    }


def new_webhook_view(created: webhooks.Created) -> dict[str, Any]:
    """The only answer that ever carries the webhook's secret."""
    return {**webhook_view(created.webhook), "secret": created.secret}


def webhook_list_view(found: Sequence[Webhook]) -> dict[str, Any]:
    return {"webhooks": [webhook_view(w) for w in found]}


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "type": delivery.type,
        "state": delivery.state,
        "attempt": delivery.attempts,
        "status_code": delivery.last_status,
        "error": delivery.last_error,
        "duration_ms": None
        if delivery.last_duration_ms is None
        else round(delivery.last_duration_ms, 1),
        "attempted_at": rfc3339(delivery.last_attempt_at),
        "next_attempt_at": rfc3339(delivery.next_attempt_at),
        "created_at": rfc3339(delivery.created_at),
    }


def delivery_list_view(found: Sequence[Delivery]) -> dict[str, Any]:
    return {"deliveries": [delivery_view(d) for d in found]}


def admin_key_view(key: AdminKey, prefix: str) -> dict[str, Any]:
    """An admin key as listings show it; ``prefix``: the key prefix (``tgadm``)."""
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "project_id": key.project_id,
        **credential_view(key, prefix, datetime.now(UTC)),
    }


def new_admin_key_view(issued: admin_keys.IssuedKey, prefix: str) -> dict[str, Any]:
    """The only answer that ever carries the key itself."""
    return {**admin_key_view(issued.key, prefix), "key": issued.raw}


def admin_key_page_view(page: KeyPage, prefix: str) -> dict[str, Any]:
    return {
        "admin_keys": [admin_key_view(key, prefix) for key in page.keys],
        "next_cursor": page.next_cursor,
    }


def me_view(who: Principal) -> dict[str, Any]:
    return {
        "type": who.type,
        "id": who.id,
        "name": who.name,
        "role": who.role,
        "project_id": who.project_id,
    }


def audit_event_view(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "at": rfc3339_ms(event.at),
        "actor": {"type": event.actor_type, "id": event.actor_id, "name": event.actor_name},
        "action": event.action,
        "project_id": event.project_id,
        "target_id": event.target_id,
        "request_id": event.request_id,
        "ip": event.ip,
        "changes": event.changes,
    }


def audit_page_view(page: AuditPage) -> dict[str, Any]:
    return {
        "events": [audit_event_view(e) for e in page.events],
        "next_cursor": None if page.next_cursor is None else str(page.next_cursor),
    }


def rfc3339_ms(moment: datetime) -> str:
    """An event's time to the millisecond: several may fall within one second."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- their schemas


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _always(properties: dict[str, Schema]) -> Schema:
    """An object the API returns: every field is always present (null when it has no value)."""
    return {"type": "object", "required": list(properties), "properties": properties}


_TIME: Final[Schema] = {
    "type": "string",
    "format": "date-time",
    "examples": ["2026-11-22T10:00:00Z"],
}
_TIME_OR_NULL: Final[Schema] = {**_TIME, "type": ["string", "null"]}
_CURSOR: Final[Schema] = {"type": ["string", "null"]}

# The schema of credential_view's fields.
_CREDENTIAL: Final[dict[str, Schema]] = {
    "masked": {"type": "string", "description": "Prefix and id; never the secret."},
    "created_at": _TIME,
    "expires_at": _TIME_OR_NULL,
    "last_used_at": _TIME_OR_NULL,
    "status": {"enum": ["active", "expired"]},
}


def _list(name: str, item: str) -> Schema:
    """``{name: [item, ...]}``: every item at once."""
    return _always({name: {"type": "array", "items": _ref(item)}})


def _page(name: str, item: str) -> Schema:
    """``{name: [item, ...], "next_cursor": ...}``: one page, and how to ask for the next."""
    return _always({name: {"type": "array", "items": _ref(item)}, "next_cursor": _CURSOR})


def _with_secret(base: str, name: str, what: str) -> Schema:
    """``base`` and the secret it was created with, ``what`` (its description) shown once."""
    shown = {"type": "string", "description": f"{what} Shown in this answer only, never again."}
    return {"allOf": [_ref(base), _always({name: shown})]}


ANSWERS: Final[dict[str, Schema]] = {
    "Project": _always(
        {
            "id": {"type": "string"},
            "name": {k: v for k, v in schemas.NAME.schema().items() if k != "description"},
            "rate_limit": {
                "type": ["string", "null"],
                "description": "Canonical (`600/minute`); null means the gateway default.",
                "examples": ["600/minute"],
            },
            "quota": {
                "type": ["string", "null"],
                "description": "Requests per UTC day or month (`10000/day`); null: none.",
                "examples": ["10000/day"],
            },
            "created_at": _TIME,
        }
    ),
    "ProjectList": _list("projects", "Project"),
    "Token": _always(
        {
            "id": {"type": "string", "description": "The public id inside the token."},
            "project_id": {"type": "string"},
            "description": {"type": "string", "maxLength": tokens.DESCRIPTION_MAX},
            **_CREDENTIAL,
            "expires_in": {
                "enum": list(tokens.PRESETS),
                "description": "The expiry preset it was created with (a successor keeps it).",
            },
            "scopes": {
                "type": "array",
                "items": {"type": "string"},
                "description": "`<METHOD or *> <path prefix>` each; empty: everything.",
            },
            "allowed_ips": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Addresses and CIDR blocks it may be used from; empty: any.",
            },
            "rotated_from": {
                "type": ["string", "null"],
                "description": "The token this one replaced.",
            },
            "replaced_by": {
                "type": ["string", "null"],
                "description": "Its successor: set once rotated; it then works until "
                "`expires_at` (the end of its grace) and its answers carry Deprecation and "
                "Sunset.",
            },
            "rotated_at": {**_TIME_OR_NULL, "description": "When its successor was issued."},
            "usage_30d": {**_ref("UsageCounts"), "description": "The last 30 UTC days."},
        }
    ),
    "UsageCounts": _always({name: {"type": "integer", "minimum": 0} for name in COLUMNS}),
    "Usage": _always(
        {
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "group_by": {"enum": list(usage.GROUPINGS)},
            "rows": {
                "type": "array",
                "items": {
                    "allOf": [_ref("UsageCounts")],
                    "type": "object",
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "token_id": {"type": "string"},
                    },
                    "description": "`date` (group_by=day) or `token_id` (group_by=token).",
                },
            },
            "totals": _ref("UsageCounts"),
        }
    ),
    "NewToken": _with_secret("Token", "token", "The token itself."),
    "TokenPage": _page("tokens", "Token"),
    "Webhook": _always(
        {
            "id": {"type": "string"},
            "project_id": {"type": "string"},
            "url": {"type": "string"},
            "events": {
                "type": "array",
                "items": {"enum": list(webhooks.EVENT_CHOICES)},
                "description": "The event types sent; empty: every type.",
            },
            "created_at": _TIME,
        }
    ),
    "NewWebhook": _with_secret("Webhook", "secret", "The signing secret (whsec_...)."),
    "WebhookList": _list("webhooks", "Webhook"),
    "Delivery": _always(
        {
            "id": {"type": "integer"},
            "event_id": {"type": "string", "description": "The webhook-id header."},
            "type": {"type": "string"},
            "state": {"enum": ["pending", "delivered", "failed"]},
            "attempt": {"type": "integer", "description": "Attempts made so far."},
            "status_code": {
                "type": ["integer", "null"],
                "description": "The receiver's status at the latest attempt.",
            },
            "error": {
                "type": ["string", "null"],
                "description": "Why the latest attempt got no status (timeout, refused...).",
            },
            "duration_ms": {"type": ["number", "null"]},
            "attempted_at": _TIME_OR_NULL,
            "next_attempt_at": {**_TIME_OR_NULL, "description": "Null unless pending."},
            "created_at": _TIME,
        }
    ),
    "DeliveryList": _list("deliveries", "Delivery"),
    "TestEvent": _always({"event_id": {"type": "string"}}),
    "LeakReceipt": _always(
        {"received": {"type": "integer", "description": "How many strings were received."}}
    ),
    "AuditEvent": _always(
        {
            "id": {"type": "string"},
            "at": {**_TIME, "examples": ["2026-11-22T10:00:00.123Z"]},
            "actor": _always(
                {
                    "type": {"enum": ["bootstrap", "admin_key", "portal", "cli", "leak_report"]},
                    "id": {
                        "type": ["string", "null"],
                        "description": "The admin key or portal session; null otherwise.",
                    },
                    "name": {
                        "type": ["string", "null"],
                        "description": "The key's name; for a leak report, where it was found.",
                    },
                }
            ),
            "action": {"enum": sorted(ACTIONS)},
            "project_id": {"type": ["string", "null"]},
            "target_id": {
                "type": ["string", "null"],
                "description": "The project, token, webhook or admin key changed.",
            },
            "request_id": {"type": ["string", "null"]},
            "ip": {"type": ["string", "null"]},
            "changes": {
                "type": ["object", "null"],
                "description": 'For updates: {"field": [before, after]}.',
                "additionalProperties": {"type": "array", "minItems": 2, "maxItems": 2},
            },
        }
    ),
    "AuditPage": _page("events", "AuditEvent"),
    "AdminKey": _always(
        {
            "id": {"type": "string", "description": "The public id inside the key."},
            "name": {"type": "string"},
            "role": {"enum": list(admin_keys.ROLES)},
            "project_id": {"type": ["string", "null"], "description": "Null for admin."},
            **_CREDENTIAL,
        }
    ),
    "NewAdminKey": _with_secret("AdminKey", "key", "The key itself."),
    "AdminKeyPage": _page("admin_keys", "AdminKey"),
    "Me": _always(
        {
            "type": {"enum": ["bootstrap", "admin_key", "portal"]},
            "id": {"type": ["string", "null"]},
            "name": {"type": ["string", "null"]},
            "role": {"enum": list(admin_keys.ROLES)},
            "project_id": {"type": ["string", "null"]},
        }
    ),
    "PortalLink": _always(
        {
            "url": {"type": "string", "description": "Send the customer there; it works once."},
            "expires_at": {**_TIME, "description": "The link works until then (5 minutes)."},
        }
    ),
    "PortalSession": _always(
        {
            "session": {
                "type": "string",
                "description": "The credential: Authorization: Bearer <session> on /v1.",
            },
            "expires_at": _TIME,
        }
    ),
    "GitHubLabels": {
        "type": "array",
        "items": _always(
            {
                "token_raw": {"type": "string"},
                "token_type": {"type": "string"},
                "label": {"enum": ["true_positive", "false_positive"]},
            }
        ),
    },
}
