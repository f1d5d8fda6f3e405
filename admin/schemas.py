"""What clients may send to the admin API, each request body and query string declared once.

The HTTP API (through ``@documented`` operations) and the CLI check their input against
these declarations before any use case runs; the OpenAPI document, and through it the web
console's limits, are generated from the same declarations.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from gateway.core.journal import ACTIONS
from gateway.core.rates import PATTERN as RATE_PATTERN
from gateway.core.rates import parse_rate
from gateway.core.tokens import ID_LEN

from . import leaks, projects, tokens, webhooks
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
        "10/sec (1 <= N < 10^9), or null for the default"
    ),
    convert=lambda text: str(parse_rate(text)),
    description=(
        "Requests per token and period: N/second, N/minute or N/hour (10/sec, 10/min and "
        "10/hr are read the same and stored canonically); null means the gateway default."
    ),
    examples=("600/minute", "10/sec"),
)

PROJECT_CREATE: Final = Body(
    "ProjectCreate",
    {"name": replace(NAME, required=True), "rate_limit": replace(RATE_LIMIT, default=None)},
)
PROJECT_UPDATE: Final = Body("ProjectUpdate", {"name": NAME, "rate_limit": RATE_LIMIT})
TOKEN_CREATE: Final = Body(
    "TokenCreate",
    {
        "description": Field(
            max_length=tokens.DESCRIPTION_MAX,
            default="",
            description="What the token is for; it cannot be changed later.",
        ),
        "expires_in": Field(
            choices=tuple(tokens.PRESETS),
            default=tokens.DEFAULT_PRESET,
            description="How long the token works; `never` for no expiry.",
        ),
    },
)
TOKEN_PAGE: Final = Query(
    {
        "limit": Field(
            type="integer",
            minimum=1,
            maximum=tokens.PAGE_MAX,
            default=tokens.PAGE_DEFAULT,
            description="How many tokens, at most, on this page.",
        ),
        "cursor": Field(
            default=None, opaque=True, description="`next_cursor` of the previous page."
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
        "limit": Field(
            type="integer",
            minimum=1,
            maximum=tokens.PAGE_MAX,
            default=tokens.PAGE_DEFAULT,
            description="How many deliveries, newest first.",
        ),
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
        "limit": Field(
            type="integer",
            minimum=1,
            maximum=tokens.PAGE_MAX,
            default=tokens.PAGE_DEFAULT,
            description="How many events, at most, on this page.",
        ),
        "cursor": Field(
            default=None,
            pattern=re.compile(r"[1-9][0-9]{0,17}"),
            must="must be a next_cursor this API returned",
            convert=int,
            description="`next_cursor` of the previous page.",
        ),
    }
)
