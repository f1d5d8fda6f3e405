"""Token use cases, shared by the HTTP API and the command line.

Issuing a token is the only moment its plaintext exists outside the client: the
secret is hashed with argon2id (in a thread, it is slow on purpose) and only the
hash is stored. Tokens are immutable; rotating issues a successor with the same
description, scopes, allowed addresses and expiry preset, and ends the old one after a
grace period (SPEC §10). Arguments are already checked (``schemas.TOKEN_CREATE``,
``TOKEN_ROTATE`` and ``TOKEN_PAGE`` at the API and in the CLI alike).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from gateway.core.errors import BadRequest, NotFound, TollgateError
from gateway.core.journal import Actor
from gateway.core.store import AlreadyRotated, InvalidCursor, Store, TokenInfo, TokenPage
from gateway.core.tokens import Hasher, generate, is_token_id

from . import projects

# Expiry presets (SPEC §3); None: the token never expires.
PRESETS: Final[dict[str, int | None]] = {
    "30d": 30,
    "90d": 90,
    "180d": 180,
    "365d": 365,
    "never": None,
}
DEFAULT_PRESET: Final = "30d"
DESCRIPTION_MAX: Final = 200
# Listing pages: the size when the client names none, and the most one may ask for.
PAGE_DEFAULT: Final = 20
PAGE_MAX: Final = 100

# Durations: a rotation's grace ("0s".."7d") and the "within" of expiring listings.
GRACE_PATTERN: Final = re.compile(r"([0-9]{1,7})([smhd])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_GRACE: Final = "24h"
GRACE_MAX: Final = 7 * 86400
DEFAULT_WITHIN: Final = "7d"
WITHIN_MAX: Final = 365 * 86400
STATUS_FILTERS: Final = ("active", "expired", "expiring")
EXPIRING_SOON: Final = DEFAULT_WITHIN  # the console's badge and the admin gauge


def seconds(duration: str) -> int:
    """``"90m"`` -> 5400 (a duration the pattern already matched)."""
    match = GRACE_PATTERN.fullmatch(duration.strip())
    if match is None:
        raise ValueError("must be a duration such as 0s, 90m, 24h or 7d")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def check_grace(duration: str) -> str:
    if seconds(duration) > GRACE_MAX:
        raise ValueError("must be at most 7d")
    return duration.strip()


def check_within(duration: str) -> str:
    if seconds(duration) > WITHIN_MAX:
        raise ValueError("must be at most 365d")
    return duration.strip()


def preset_of(info: TokenInfo) -> str:
    """The preset a token was made with (recorded since capabilities; else its lifetime's)."""
    if info.expires_in in PRESETS:
        return info.expires_in
    if info.expires_at is None:
        return "never"
    days = (info.expires_at - info.created_at) / timedelta(days=1)
    return min(PRESETS, key=lambda p: abs((PRESETS[p] or 10**6) - days))


def status(info: TokenInfo, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return "expired" if info.expires_at is not None and info.expires_at <= now else "active"


def expiring(info: TokenInfo, within: str = EXPIRING_SOON, now: datetime | None = None) -> bool:
    """Still working, and ending within ``within`` (a rotated token in its grace too)."""
    now = now or datetime.now(UTC)
    ends = info.expires_at
    return ends is not None and now < ends <= now + timedelta(seconds=seconds(within))


@dataclass(frozen=True, slots=True)
class Issued:
    """A new token: its stored form, and the plaintext to show exactly once."""

    info: TokenInfo
    token: str = field(repr=False)


def not_found() -> NotFound:
    return NotFound("token not found", code="token_not_found")


async def issue(
    store: Store,
    hasher: Hasher,
    prefix: str,
    project_id: str,
    *,
    description: str = "",
    expires_in: str = DEFAULT_PRESET,
    scopes: Sequence[str] = (),
    allowed_ips: Sequence[str] = (),
    actor: Actor,
) -> Issued:
    # Checked first so an unknown project costs no argon2 work.
    await projects.get(store, project_id)
    token = generate(prefix)
    secret_hash = await asyncio.to_thread(hasher.hash, token.secret)
    info = await store.create_token(
        project_id,
        token.id,
        secret_hash=secret_hash,
        description=description,
        expires_in_days=PRESETS[expires_in],
        expires_in=expires_in,
        scopes=scopes,
        allowed_ips=allowed_ips,
        actor=actor,
    )
    if info is None:  # the project was deleted meanwhile
        raise projects.not_found()
    return Issued(info, str(token))


async def rotate(
    store: Store,
    hasher: Hasher,
    prefix: str,
    project_id: str,
    token_id: str,
    *,
    grace: str = DEFAULT_GRACE,
    actor: Actor,
) -> Issued:
    """Issue the token's successor (shown once); the old one works for ``grace`` more, at
    most until its own expiry, on every gateway (NOTIFY), then stops."""
    old = await get(store, project_id, token_id)  # a 404 costs no argon2 work
    if old.replaced_by is not None:
        raise already_rotated(old.replaced_by)
    token = generate(prefix)
    secret_hash = await asyncio.to_thread(hasher.hash, token.secret)
    try:
        rotated = await store.rotate_token(
            project_id,
            token_id,
            token.id,
            secret_hash=secret_hash,
            expires_in_days=PRESETS[preset_of(old)],
            grace_seconds=seconds(grace),
            actor=actor,
        )
    except AlreadyRotated as err:  # rotated by someone else meanwhile
        raise already_rotated(err.replaced_by) from None
    if rotated is None:  # revoked meanwhile
        raise await _missing(store, project_id)
    return Issued(rotated.new, str(token))


def already_rotated(replaced_by: str) -> TollgateError:
    return TollgateError(
        f"this token was rotated already: its successor is {replaced_by}",
        code="already_rotated",
        status=409,
    )


async def list_page(
    store: Store,
    project_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    within: str = DEFAULT_WITHIN,
) -> TokenPage:
    """A page of the project's tokens, newest first."""
    await projects.get(store, project_id)
    try:
        return await store.list_tokens(
            project_id,
            limit=limit,
            cursor=cursor,
            status=status,
            within_seconds=seconds(within),
        )
    except InvalidCursor:
        raise BadRequest(
            '"cursor" is not one this API returned; start again without it',
            code="invalid_cursor",
        ) from None


async def list_all(
    store: Store, project_id: str, *, status: str | None = None, within: str = DEFAULT_WITHIN
) -> list[TokenInfo]:
    """Every token of the project, newest first (for the command line)."""
    tokens: list[TokenInfo] = []
    cursor: str | None = None
    while True:
        page = await list_page(
            store, project_id, limit=PAGE_MAX, cursor=cursor, status=status, within=within
        )
        tokens += page.tokens
        if page.next_cursor is None:
            return tokens
        cursor = page.next_cursor


async def get(store: Store, project_id: str, token_id: str) -> TokenInfo:
    info = None
    if is_token_id(project_id) and is_token_id(token_id):
        info = await store.get_token(project_id, token_id)
    if info is None:
        raise await _missing(store, project_id)
    return info


async def revoke(store: Store, project_id: str, token_id: str, *, actor: Actor) -> None:
    """Delete the token: it stops working on every gateway at once (NOTIFY)."""
    known = is_token_id(project_id) and is_token_id(token_id)
    if known and await store.revoke_token(project_id, token_id, actor=actor):
        return
    raise await _missing(store, project_id)


async def _missing(store: Store, project_id: str) -> NotFound:
    """Say which part is missing: the project, or the token within it."""
    await projects.get(store, project_id)
    return not_found()
