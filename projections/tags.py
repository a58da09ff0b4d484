"""Identity tags (``millrace.identities``' tags map): the names and values in use.

``within`` (a scoped caller's scope, an RE2 expression): over the identities inside it
only, so a scoped role learns no tag name or value of an identity it cannot see."""

from __future__ import annotations

from typing import Any

from millrace.projections.identity_filter import within_sql
from millrace.projections.store.base import ProjectionStore


def _present(params: dict[str, Any], within: str | None) -> str:
    if within is None:
        return "present = 1"
    return "present = 1 AND " + within_sql("identity", within, params)


def tag_names(store: ProjectionStore, within: str | None = None) -> list[str]:
    """The tag names of the present identities, sorted."""
    params: dict[str, Any] = {}
    rows = store.execute(
        "SELECT DISTINCT arrayJoin(mapKeys(tags)) AS t "
        f"FROM millrace.identities FINAL WHERE {_present(params, within)} ORDER BY t",
        params,
    ).rows
    return [str(r[0]) for r in rows]


def tag_values(store: ProjectionStore, tag: str, within: str | None = None) -> list[str]:
    """The values of tag ``tag`` over the present identities, sorted."""
    params: dict[str, Any] = {"tag": tag}
    rows = store.execute(
        "SELECT DISTINCT arrayJoin(tags[{tag:String}]) AS v "
        f"FROM millrace.identities FINAL WHERE {_present(params, within)} ORDER BY v",
        params,
    ).rows
    return [str(r[0]) for r in rows]
