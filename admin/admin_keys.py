"""Admin key and portal session use cases (SPEC §8), shared by the HTTP API and the CLI.

An admin key is issued like a token (``gateway.core.tokens``: the same format, with the
prefix ``<TOKEN_PREFIX>adm``; only its argon2id hash is stored) and shown once. A portal
session starts as a one-time code the seller's backend asks for: the code (only its
SHA-256 is stored) works once, within :data:`CODE_LIFETIME`, and is exchanged by the
console for a session credential with the code's role on its one project.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from gateway.core.errors import BadRequest, NotFound, Unauthorized
from gateway.core.journal import Actor
from gateway.core.store import InvalidCursor, Store
from gateway.core.store_keys import AdminKey, KeyPage, KeyStore, PortalGrant
from gateway.core.tokens import Hasher, generate, is_token_id

from . import projects, tokens
from .fields import field_error

ROLES: Final = ("admin", "manager", "viewer")
PROJECT_ROLES: Final = ("manager", "viewer")
NAME_MAX: Final = 200
CODE_LIFETIME: Final = timedelta(minutes=5)
DEFAULT_SESSION: Final = "1h"
SESSION_HASHER: Final = Hasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new admin key: its stored form, and the plaintext to show exactly once."""

    key: AdminKey
    raw: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PortalLink:
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PortalSession:
    expires_at: datetime
    raw: str = field(repr=False)


def not_found() -> NotFound:
    return NotFound("admin key not found", code="admin_key_not_found")


def _lifetime(preset: str) -> timedelta | None:
    days = tokens.PRESETS[preset]
    return None if days is None else timedelta(days=days)


async def issue(
    keys: KeyStore,
    store: Store,
    hasher: Hasher,
    prefix: str,
    *,
    name: str,
    role: str,
    project_id: str | None = None,
    expires_in: str = tokens.DEFAULT_PRESET,
    actor: Actor,
) -> IssuedKey:
    """``prefix``: the key prefix (``credentials.key_prefix``)."""
    if role == "admin" and project_id is not None:
        raise field_error("invalid_value", "project_id", "must not be given for the admin role")
    if role != "admin" and project_id is None:
        raise field_error("missing_field", "project_id", f"is required for the {role} role")
    if project_id is not None:
        await projects.get(store, project_id)  # first: an unknown project costs no argon2
    raw = generate(prefix)
    secret_hash = await asyncio.to_thread(hasher.hash, raw.secret)
    key = await keys.create(
        raw.id,
        name=name,
        role=role,
        project_id=project_id,
        secret_hash=secret_hash,
        lifetime=_lifetime(expires_in),
        actor=actor,
    )
    if key is None:  # the project was deleted meanwhile
        raise projects.not_found()
    return IssuedKey(key, str(raw))


async def list_page(keys: KeyStore, *, limit: int, cursor: str | None = None) -> KeyPage:
    try:
        return await keys.page(limit=limit, cursor=cursor)
    except InvalidCursor:
        raise BadRequest(
            '"cursor" is not one this API returned; start again without it',
            code="invalid_cursor",
        ) from None


async def list_all(keys: KeyStore) -> list[AdminKey]:
    """Every admin key, newest first (for the command line)."""
    found: list[AdminKey] = []
    cursor: str | None = None
    while True:
        page = await list_page(keys, limit=tokens.PAGE_MAX, cursor=cursor)
        found += page.keys
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def get(keys: KeyStore, key_id: str) -> AdminKey:
    key = await keys.get(key_id) if is_token_id(key_id) else None
    if key is None:
        raise not_found()
    return key


async def revoke(keys: KeyStore, key_id: str, *, actor: Actor) -> None:
    """Delete the key: every admin instance refuses it from its next request on."""
    if not is_token_id(key_id) or not await keys.revoke(key_id, actor=actor):
        raise not_found()


# ---------------------------------------------------------------- portal sessions


def session_ttl(text: str) -> timedelta:
    """``5m``..``12h`` (``schemas.PORTAL_TTL`` checked the range)."""
    number, unit = int(text[:-1]), text[-1]
    return timedelta(minutes=number) if unit == "m" else timedelta(hours=number)


def _code_hash(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


async def mint(
    keys: KeyStore,
    store: Store,
    public_url: str,
    project_id: str,
    *,
    role: str = "manager",
    ttl: str = DEFAULT_SESSION,
    actor: Actor,
) -> PortalLink:
    """A one-time link to the console's portal for ``project_id``."""
    await projects.get(store, project_id)
    code = secrets.token_urlsafe(32)
    grant = PortalGrant(project_id, role, session_ttl(ttl))
    expires_at = await keys.create_code(
        _code_hash(code), grant, valid_for=CODE_LIFETIME, actor=actor
    )
    if expires_at is None:
        raise projects.not_found()
    return PortalLink(f"{public_url}/#/portal/{code}", expires_at)


async def exchange(keys: KeyStore, prefix: str, code: str) -> PortalSession:
    """The session credential for a one-time code; 401 for a used or expired one.

    Anyone may call this (no credential): the session's hash uses argon2's cheapest
    parameters, which cost no more than a millisecond, and lose nothing, since the
    secret is 256 random bits, not a password to guess."""
    raw = generate(prefix)
    secret_hash = await asyncio.to_thread(SESSION_HASHER.hash, raw.secret)
    used = await keys.exchange(_code_hash(code), raw.id, secret_hash=secret_hash)
    if used is None:
        raise Unauthorized(
            "the portal link is not valid: it was used already or has expired; ask for a new one",
            code="invalid_code",
        )
    return PortalSession(used[1], str(raw))
