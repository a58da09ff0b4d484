"""Reading the ``tasks`` projection (one row per task, ``pipeline.tasks.state``)."""

from __future__ import annotations

from typing import Any

from millrace.pipeline.tasks.state import normalise
from millrace.projections.store.base import ProjectionStore

_COLUMNS = (
    "task_id, version, kind, status, actor, params, created_us, started_us, updated_us, "
    "finished_us, attempts, error, counts, progress, files_done, files_failed"
)


class TaskQueries:
    """Tasks of one kind, as their fold left them (rows as ``state.normalise`` gives)."""

    def __init__(self, store: ProjectionStore, kind: str) -> None:
        self.store = store
        self.kind = kind

    def get(self, task_id: str) -> dict[str, Any] | None:
        res = self.store.query_arrow(
            f"SELECT {_COLUMNS} FROM millrace.tasks FINAL "
            "WHERE kind = {k:String} AND task_id = {t:String}",
            params={"k": self.kind, "t": task_id},
        )
        rows = res.to_pylist()
        return normalise(rows[0]) if rows else None

    def list(self, status: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Newest first; and how many there are in all."""
        where = "kind = {k:String}" + ("" if status is None else " AND status = {s:String}")
        params: dict[str, Any] = {"k": self.kind, "s": status or "", "n": limit, "o": offset}
        res = self.store.query_arrow(
            f"SELECT {_COLUMNS} FROM millrace.tasks FINAL WHERE {where} "
            "ORDER BY created_us DESC, task_id LIMIT {n:UInt32} OFFSET {o:UInt64}",
            params=params,
        )
        total = self.store.execute(
            f"SELECT count() FROM millrace.tasks FINAL WHERE {where}", params=params
        ).rows[0][0]
        return [normalise(r) for r in res.to_pylist()], int(total)
