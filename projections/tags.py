"""Identity tags (``millrace.identities``' tags map): the names and values in use."""

from __future__ import annotations

from millrace.projections.store.base import ProjectionStore


def tag_names(store: ProjectionStore) -> list[str]:
    """The tag names of the present identities, sorted."""
    rows = store.execute(
        "SELECT DISTINCT arrayJoin(mapKeys(tags)) AS t "
        "FROM millrace.identities FINAL WHERE present = 1 ORDER BY t"
    ).rows
    return [str(r[0]) for r in rows]


def tag_values(store: ProjectionStore, tag: str) -> list[str]:
    """The values of tag ``tag`` over the present identities, sorted."""
    rows = store.execute(
        "SELECT DISTINCT arrayJoin(tags[{tag:String}]) AS v "
        "FROM millrace.identities FINAL WHERE present = 1 ORDER BY v",
        {"tag": tag},
    ).rows
    return [str(r[0]) for r in rows]
