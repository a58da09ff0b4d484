"""A task as the API answers it (restore and replay tasks alike)."""

from __future__ import annotations

import json
from typing import Any

from millrace.api.timeparams import Epoch, format_time
from millrace.pipeline.tasks.state import file_counts


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
