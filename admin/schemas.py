"""What clients may send to the admin API, each request body and query string declared once.

The HTTP API (through ``@documented`` operations) and the CLI check their input against
these declarations before any use case runs; the OpenAPI document, and through it the web
console's limits, are generated from the same declarations.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from gateway.core import capabilities
from gateway.core.journal import ACTIONS
from gateway.core.rates import PATTERN as RATE_PATTERN
from gateway.core.rates import QUOTA_PATTERN, parse_quota, parse_rate
from gateway.core.store import CURSOR_PATTERN
from gateway.core.tokens import ID_LEN

from . import admin_keys, leaks, projects, tokens, usage, webhooks
from .fields import Body, Field, Query

NAME: Final = Field(
    min_length=1,
    max_length=projects.NAME_MAX,
    blank=False,
    description="Not necessarily unique; not only spaces.",
)
RATE_LIMIT: Final = Field(
    nullable=True,
    pattern=RATE_PATTERN,
    must=(
        "must be a number of requests per second, minute or hour, such as 600/minute or "
        "10/sec (1 <= N < 10^9)"
    ),
    null_means="the default",
    convert=lambda text: str(parse_rate(text)),
    description=(
        "Requests per token and period: N/second, N/minute or N/hour (10/sec, 10/min and "
        "10/hr are read the same and stored canonically); null means the gateway default."
    ),
    examples=("600/minute", "10/sec"),
)

QUOTA: Final = Field(
    nullable=True,
    pattern=QUOTA_PATTERN,
    must="must be a number of requests per day or month, such as 10000/day",
    null_means="none",
    convert=lambda text: str(parse_quota(text)),
    description=(
        "Requests the project's tokens may make together per UTC calendar day or month "
        "(N/day, N/month); null means no quota. Changing it keeps what the period used."
    ),
    examples=("10000/day", "1000000/month"),
)

# How long a new token or admin key works (each says which it is in its description).
EXPIRES_IN: Final = Field(choices=tuple(tokens.PRESETS), default=tokens.DEFAULT_PRESET)
# How many items one page of a listing has.
LIMIT: Final = Field(
    type="integer", minimum=1, maximum=tokens.PAGE_MAX, default=tokens.PAGE_DEFAULT
)

PROJECT_CREATE: Final = Body(
    "ProjectCreate",
    {
        "name": replace(NAME, required=True),
        "rate_limit": replace(RATE_LIMIT, default=None),
        "quota": replace(QUOTA, default=None),
    },
)
PROJECT_UPDATE: Final = Body(
    "ProjectUpdate", {"name": NAME, "rate_limit": RATE_LIMIT, "quota": QUOTA}
)
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
USAGE_QUERY: Final = Query(
    {
        "from": Field(
            default=None,
            pattern=_DATE,
            must="must be a date, YYYY-MM-DD",
            description=f"First UTC day, {usage.FIRST_DAY} to {usage.LAST_DAY} (default: 29 "
            "days before `to`).",
        ),
        "to": Field(
            default=None,
            pattern=_DATE,
            must="must be a date, YYYY-MM-DD",
            description="Last UTC day, included (default: today).",
        ),
        "token_id": Field(default=None, opaque=True, description="Only this token's usage."),
        "group_by": Field(
            choices=usage.GROUPINGS,
            default="day",
            description=f"One row per day (zeros included) or per token; at most "
            f"{usage.DAYS_MAX} days.",
        ),
    }
)
TOKEN_CREATE: Final = Body(
    "TokenCreate",
    {
        "description": Field(
            max_length=tokens.DESCRIPTION_MAX,
            default="",
            description="What the token is for; it cannot be changed later.",
        ),
        "expires_in": replace(
            EXPIRES_IN, description="How long the token works; `never` for no expiry."
        ),
        "scopes": Field(
            type="array",
            items=Field(
                pattern=re.compile(r"\S+\s+\S+"),
                must="must be a method (or *) and a path prefix, such as GET /v1/validate",
                convert=capabilities.canonical_scope,
                examples=("GET /v1/validate", "* /v1/status"),
            ),
            max_items=capabilities.SCOPES_MAX,
            default=[],
            description=(
                "`<METHOD or *> <path prefix>` each: what the token may call. A prefix covers "
                "itself and what continues it after a `/`. Empty or absent: everything."
            ),
        ),
        "allowed_ips": Field(
            type="array",
            items=Field(
                pattern=re.compile(r"[0-9A-Fa-f:.]{2,45}(/[0-9]{1,3})?"),
                must="must be an IPv4 or IPv6 address or CIDR block, such as 203.0.113.0/24",
                convert=capabilities.canonical_network,
                examples=("203.0.113.0/24", "2001:db8::/48", "198.51.100.7"),
            ),
            max_items=capabilities.ALLOWED_IPS_MAX,
            default=[],
            description=(
                "IPv4/IPv6 addresses or CIDR blocks the token may be used from (the client "
                "address, see TRUSTED_PROXIES). Empty or absent: any address."
            ),
        ),
    },
)
TOKEN_ROTATE: Final = Body(
    "TokenRotate",
    {
        "grace": Field(
            pattern=tokens.GRACE_PATTERN,
            must="must be a duration from 0s to 7d, such as 0s, 90m, 24h or 7d",
            convert=tokens.check_grace,
            default=tokens.DEFAULT_GRACE,
            description=(
                "How long the old token keeps working (`s`, `m`, `h` or `d`; at most 7d), "
                "never past its own expiry."
            ),
            examples=("24h", "0s", "7d"),
        ),
    },
)
TOKEN_PAGE: Final = Query(
    {
        "status": Field(
            choices=tokens.STATUS_FILTERS,
            default=None,
            description=(
                "Only `active`, `expired` or `expiring` tokens (active, ending within "
                "`within`; rotated tokens in their grace included)."
            ),
        ),
        "within": Field(
            pattern=tokens.GRACE_PATTERN,
            must="must be a duration such as 7d, 24h or 90m (at most 365d)",
            convert=tokens.check_within,
            default=tokens.DEFAULT_WITHIN,
            description="With `status=expiring`: how soon (default 7d).",
            examples=("7d",),
        ),
        "limit": replace(LIMIT, description="How many tokens, at most, on this page."),
        "cursor": Field(
            default=None,
            opaque=True,  # checked by the store: invalid_cursor
            pattern=CURSOR_PATTERN,
            description="`next_cursor` of the previous page.",
        ),
    }
)

# ---------------------------------------------------------------- webhooks and leak reports

WEBHOOK_URL_MAX: Final = 2000
WEBHOOK_CREATE: Final = Body(
    "WebhookCreate",
    {
        "url": Field(
            required=True,
            # Printable ASCII only (an international host in its xn-- form): nothing a
            # header or a log line could be broken with.
            pattern=re.compile(rf"https?://[!-~]{{1,{WEBHOOK_URL_MAX - 8}}}"),
            must="must be an http:// or https:// URL of printable ASCII characters",
            convert=str.strip,
            description=(
                "Where events are POSTed. Its host must resolve to public addresses only "
                "(unless WEBHOOK_ALLOW_PRIVATE)."
            ),
            examples=("https://example.com/hooks/tollgate",),
        ),
        "events": Field(
            type="array",
            items=Field(choices=webhooks.EVENT_CHOICES),
            max_items=len(webhooks.EVENT_CHOICES),
            default=[],
            description="The event types to send; empty or absent: every type.",
        ),
    },
)
DELIVERY_PAGE: Final = Query(
    {
        "limit": replace(LIMIT, description="How many deliveries, newest first."),
    }
)
LEAK_REPORT: Final = Body(
    "LeakReport",
    {
        "tokens": Field(
            type="array",
            required=True,
            items=Field(opaque=True),
            max_items=leaks.REPORT_MAX,
            description="Tokens found in public; strings that are not tokens are ignored.",
        ),
        "source": Field(
            max_length=WEBHOOK_URL_MAX,
            default=None,
            description="Where they were found (a URL).",
        ),
    },
)
# One report of GitHub secret scanning; fields GitHub may add later are ignored.
GITHUB_REPORT_ITEM: Final = Body(
    "GitHubTokenReport",
    {
        "token": Field(required=True, opaque=True),
        "type": Field(opaque=True, default=""),
        "url": Field(opaque=True, default=None),
        "source": Field(opaque=True, default=None),
    },
)

# ---------------------------------------------------------------- the audit log

ID: Final = Field(
    pattern=re.compile(rf"[0-9A-Za-z]{{{ID_LEN}}}"),
    must=f"must be an id: {ID_LEN} letters and digits",
    examples=("3hXwq0PuFLZd9KIbm",),
)
AUDIT_PAGE: Final = Query(
    {
        "project_id": replace(ID, default=None, description="Only this project's events."),
        "action": Field(
            choices=tuple(sorted(ACTIONS)), default=None, description="Only this action."
        ),
        "actor_id": replace(
            ID, default=None, description="Only the events of this admin key or portal session."
        ),
        "since": Field(
            format="date-time", default=None, description="Only events at or after this time."
        ),
        "until": Field(
            format="date-time", default=None, description="Only events before this time."
        ),
        "limit": replace(LIMIT, description="How many events, at most, on this page."),
        "cursor": Field(
            default=None,
            pattern=re.compile(r"[1-9][0-9]{0,17}"),
            must="must be a next_cursor this API returned",
            convert=int,
            description="`next_cursor` of the previous page.",
        ),
    }
)

# ---------------------------------------------------------------- admin keys, portal sessions

ADMIN_KEY_CREATE: Final = Body(
    "AdminKeyCreate",
    {
        "name": replace(
            NAME, required=True, description="What the key is for; not necessarily unique."
        ),
        "role": Field(
            required=True,
            choices=admin_keys.ROLES,
            description="admin: everything; manager or viewer: one project.",
            examples=("manager",),
        ),
        "project_id": replace(
            ID, default=None, description="Required for manager and viewer, refused for admin."
        ),
        "expires_in": replace(
            EXPIRES_IN, description="How long the key works; `never` for no expiry."
        ),
    },
    # project_id: required for manager and viewer, refused for admin (admin_keys.issue).
    rules=(
        {
            "if": {"properties": {"role": {"const": "admin"}}, "required": ["role"]},
            "then": {"not": {"required": ["project_id"]}},
            "else": {"required": ["project_id"]},
        },
    ),
)
KEY_PAGE: Final = Query(
    {name: TOKEN_PAGE.fields[name] for name in ("limit", "cursor")}  # ?limit=&cursor=
)
PORTAL_SESSION_CREATE: Final = Body(
    "PortalSessionCreate",
    {
        "role": Field(
            choices=admin_keys.PROJECT_ROLES,
            default="manager",
            description="What the customer may do on the project's token pages.",
        ),
        "ttl": Field(
            pattern=re.compile(
                r"([5-9]|[1-9][0-9]|[1-6][0-9][0-9]|7[01][0-9]|720)m|([1-9]|1[0-2])h"
            ),
            must="must be a duration from 5m to 12h, in minutes (90m) or hours (2h)",
            default=admin_keys.DEFAULT_SESSION,
            description="How long the session lasts once the link is used: 5m to 12h.",
            examples=("30m", "1h"),
        ),
    },
)
PORTAL_EXCHANGE: Final = Body(
    "PortalExchange",
    {
        "code": Field(
            required=True,
            pattern=re.compile(r"[A-Za-z0-9_-]{43}"),
            must="must be the code of a portal link",
            examples=("Zm9ydHktdGhyZWUtY2hhcmFjdGVycy1vZi1jb2RlLi4",),
            description="The part of the portal link after #/portal/.",
        )
    },
)
