"""What clients may send to the admin API, each request body and query string declared once.

The HTTP API (through ``@documented`` operations) and the CLI check their input against
these declarations before any use case runs; the OpenAPI document, and through it the web
console's limits, are generated from the same declarations.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from gateway.core.rates import PATTERN as RATE_PATTERN
from gateway.core.rates import parse_rate

from . import projects, tokens
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
