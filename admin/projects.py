"""Project use cases, shared by the HTTP API and the command line.

Their arguments are already checked: both callers pass what a client sent through the
declarations of ``schemas`` first (``PROJECT_CREATE``, ``PROJECT_UPDATE``).
"""

from __future__ import annotations

from typing import Final

from gateway.core.errors import NotFound
from gateway.core.journal import Actor
from gateway.core.store import UNSET, Project, Store, Unset
from gateway.core.tokens import is_token_id

NAME_MAX: Final = 200


def not_found() -> NotFound:
    # The id is not echoed back: it is client input and may be anything.
    return NotFound("project not found", code="project_not_found")


async def create(
    store: Store,
    *,
    name: str,
    rate_limit: str | None = None,
    quota: str | None = None,
    actor: Actor,
) -> Project:
    return await store.create_project(name, rate_limit, actor=actor, quota=quota)


async def list_all(store: Store, *, only: str | None = None) -> list[Project]:
    """Every project, newest first (as token listings are); ``only``: that one project
    (a project role's listing)."""
    if only is not None:
        project = await store.get_project(only)
        return [] if project is None else [project]
    return list(reversed(await store.list_projects()))


async def get(store: Store, project_id: str) -> Project:
    project = await store.get_project(project_id) if is_token_id(project_id) else None
    if project is None:
        raise not_found()
    return project


async def update(
    store: Store,
    project_id: str,
    *,
    name: str | Unset = UNSET,
    rate_limit: str | Unset | None = UNSET,
    quota: str | Unset | None = UNSET,
    actor: Actor,
) -> Project:
    """Rename or change the rate limit or quota; gateways hear of a new one at once."""
    if not is_token_id(project_id):
        raise not_found()
    project = await store.update_project(
        project_id, name=name, rate_limit=rate_limit, quota=quota, actor=actor
    )
    if project is None:
        raise not_found()
    return project


async def delete(store: Store, project_id: str, *, actor: Actor) -> None:
    """Delete a project and its tokens; they stop working on every gateway at once."""
    if not is_token_id(project_id) or not await store.delete_project(project_id, actor=actor):
        raise not_found()
