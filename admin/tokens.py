"""Token use cases, shared by the HTTP API and the command line.

Issuing a token is the only moment its plaintext exists outside the client: the
secret is hashed with argon2id (in a thread, it is slow on purpose) and only the
hash is stored. Tokens are immutable; rotating means issuing a new one and then
revoking the old one. Arguments are already checked (``schemas.TOKEN_CREATE`` and
``TOKEN_PAGE`` at the API and in the CLI alike).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Final

from gateway.core.errors import BadRequest, NotFound
from gateway.core.journal import Actor
from gateway.core.store import InvalidCursor, Store, TokenInfo, TokenPage
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
        actor=actor,
    )
    if info is None:  # the project was deleted meanwhile
        raise projects.not_found()
    return Issued(info, str(token))


async def list_page(
    store: Store, project_id: str, *, limit: int, cursor: str | None = None
) -> TokenPage:
    """A page of the project's tokens, newest first."""
    await projects.get(store, project_id)
    try:
        return await store.list_tokens(project_id, limit=limit, cursor=cursor)
    except InvalidCursor:
        raise BadRequest(
            '"cursor" is not one this API returned; start again without it',
            code="invalid_cursor",
        ) from None


async def list_all(store: Store, project_id: str) -> list[TokenInfo]:
    """Every token of the project, newest first (for the command line)."""
    tokens: list[TokenInfo] = []
    cursor: str | None = None
    while True:
        page = await list_page(store, project_id, limit=PAGE_MAX, cursor=cursor)
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
