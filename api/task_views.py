"""A task as the API answers it (restore and replay tasks alike)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from millrace.api.errors import ApiError
from millrace.api.pagination import page_meta
from millrace.api.responses import JsonResponse
from millrace.api.timeparams import Epoch, format_time
from millrace.pipeline.restore import masked_url
from millrace.pipeline.tasks.state import file_counts
from millrace.projections.tasks import TaskQueries


def _time(us: int, epoch: Epoch | None) -> int | float | str | None:
    return format_time(us, epoch) if us else None


def _masked(value: Any) -> Any:
    """``value`` with URL passwords as ``***``, at any depth (a restore's URLs)."""
    if isinstance(value, str):
        return masked_url(value)
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    return value


def task_json(row: dict[str, Any], epoch: Epoch | None = None) -> dict[str, Any]:
    """Status, parameters, progress (the task's totals: files, events, readings, bytes,
    ...), the completed files with their counts and the failed ones with the reason.
    URL passwords are shown as ``***`` (the task's events keep what the runner needs)."""
    try:
        params = json.loads(row["params"] or "{}")
    except ValueError:
        params = {}
    failed = sorted(row["files_failed"].items())
    return {
        "task_id": row["task_id"],
        "kind": row["kind"],
        "status": row["status"],
        "actor": row["actor"],
        "params": _masked(params),
        "attempts": int(row["attempts"]),
        "error": masked_url(row["error"]) if row["error"] else None,
        "progress": dict(row["counts"]),
        "files": [
            {"file": masked_url(name), **file_counts(row, name)}
            for name in sorted(row["files_done"])
        ],
        "errors": [{"file": masked_url(n), "reason": masked_url(r)} for n, r in failed],
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
