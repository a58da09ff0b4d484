"""A task as the API answers it (restore and replay tasks alike)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from millrace.api.errors import ApiError
from millrace.api.pagination import page_meta
from millrace.api.responses import JsonResponse
from millrace.api.timeparams import Epoch, format_time
from millrace.pipeline.tasks.state import file_counts
from millrace.projections.tasks import TaskQueries


def _time(us: int, epoch: Epoch | None) -> int | float | str | None:
    return format_time(us, epoch) if us else None


def task_json(row: dict[str, Any], epoch: Epoch | None = None) -> dict[str, Any]:
    """Status, parameters, progress (the task's totals: files, events, readings, bytes,
    ...), the completed files with their counts and the failed ones with the reason."""
    try:
        params = json.loads(row["params"] or "{}")
    except ValueError:
        params = {}
    return {
        "task_id": row["task_id"],
        "kind": row["kind"],
        "status": row["status"],
        "actor": row["actor"],
        "params": params,
        "attempts": int(row["attempts"]),
        "error": row["error"] or None,
        "progress": dict(row["counts"]),
        "files": [{"file": name, **file_counts(row, name)} for name in sorted(row["files_done"])],
        "errors": [
            {"file": name, "reason": reason} for name, reason in sorted(row["files_failed"].items())
        ],
        "created": _time(int(row["created_us"]), epoch),
        "started": _time(int(row["started_us"]), epoch),
        "updated": _time(int(row["updated_us"]), epoch),
        "finished": _time(int(row["finished_us"]), epoch),
    }


async def task_page(
    queries: TaskQueries, status: str | None, limit: int, page: int, epoch: Epoch | None
) -> JsonResponse:
    """A page of a kind's tasks, newest first, with ``meta.pagination``."""
    rows, total = await asyncio.to_thread(queries.list, status, limit, (page - 1) * limit)
    return JsonResponse(
        {
            "data": [task_json(r, epoch) for r in rows],
            "meta": {"pagination": page_meta(page, limit, len(rows), total)},
        }
    )


async def task_or_404(queries: TaskQueries, task_id: str) -> dict[str, Any]:
    """The task row, or 404 naming ``task_id`` and the kind."""
    row = await asyncio.to_thread(queries.get, task_id)
    if row is None:
        raise ApiError(
            404,
            "not_found",
            f"task_id: no {queries.kind} task {task_id!r}",
            [{"field": "task_id", "message": "not found"}],
        )
    return row
