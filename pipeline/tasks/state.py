"""A task's state: the pure fold of its TaskEvents (schemas/tasks.avsc).

``apply(state, event, version)`` is the only place that says what an event does to a
task; the tasks processor (projection ``millrace.tasks``) and the task runner (which
folds the ``tasks`` topic itself, to resume after a restart) both use it, so the API
and the runner never disagree about a task.

Status::

    created -> pending --started--> running --completed--> completed
                                          \\--failed-----> failed --retried--> pending

Every event is idempotent against the state it lands on (an append retried after a
crash may land twice): ``progress`` carries absolute counts of the work in flight,
``file_completed`` sets that file's counts, ``file_failed`` its reason; a task's
``counts`` are the completed files' counts plus those in flight. A state keeps
the log position of its last event (``version`` = offset + 1): the fold skips events at
or below it, which is what makes a redone batch change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"
STATUSES = (PENDING, RUNNING, COMPLETED, FAILED)

#: event types, in the order a task usually sees them
TYPES = (
    "created",
    "started",
    "progress",
    "file_completed",
    "file_failed",
    "completed",
    "failed",
    "retried",
)

State = dict[str, Any]


def _plain_map(value: Any) -> dict[str, Any]:
    """A map column as a dict (Arrow hands maps back as lists of pairs)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    return dict(value)


def new_state(task_id: str) -> State:
    return {
        "task_id": task_id,
        "version": 0,
        "kind": "",
        "status": PENDING,
        "actor": "",
        "params": "{}",
        "created_us": 0,
        "started_us": 0,
        "updated_us": 0,
        "finished_us": 0,
        "attempts": 0,
        "error": "",
        "counts": {},
        "progress": {},
        "files_done": {},
        "files_failed": {},
    }


def normalise(row: Mapping[str, Any]) -> State:
    """A state row as read back from the projection or a previous fold."""
    state = new_state(str(row["task_id"]))
    state.update({k: v for k, v in row.items() if k in state})
    for name in ("counts", "progress", "files_done", "files_failed"):
        state[name] = _plain_map(row.get(name))
    state["counts"] = {k: int(v) for k, v in state["counts"].items()}
    state["progress"] = {k: int(v) for k, v in state["progress"].items()}
    return state


def file_counts(state: Mapping[str, Any], name: str) -> dict[str, int]:
    """The counts a completed file recorded (stored as JSON text per file)."""
    text = state["files_done"].get(name)
    if not text:
        return {}
    return {k: int(v) for k, v in json.loads(text).items()}


def totals(state: Mapping[str, Any]) -> dict[str, int]:
    """Counts of the completed files plus the work in flight."""
    out: dict[str, int] = {}
    for name in state["files_done"]:
        for k, v in file_counts(state, name).items():
            out[k] = out.get(k, 0) + v
    for k, v in state["progress"].items():
        out[k] = out.get(k, 0) + int(v)
    return out


def apply(prev: Mapping[str, Any] | None, event: Mapping[str, Any], version: int) -> State:
    """The task after ``event`` (a TaskEvent), stored with ``version``.

    Returns ``prev`` unchanged (a copy) when ``version`` is not past it: the event is
    already folded in. An unknown event type only moves the version.
    """
    task_id = str(event["task_id"])
    state = normalise(prev) if prev is not None else new_state(task_id)
    if prev is not None and version <= int(state["version"]):
        return state
    state["version"] = version
    kind = str(event.get("type") or "")
    ts = int(event.get("ts_us") or 0)
    counts = {str(k): int(v) for k, v in (event.get("counts") or {}).items()}
    file = event.get("file")
    error = event.get("error") or ""
    state["updated_us"] = max(int(state["updated_us"]), ts)
    if not state["kind"]:
        state["kind"] = str(event.get("kind") or "")
    if kind == "created":
        if not state["created_us"]:
            state["created_us"] = ts
            state["actor"] = str(event.get("actor") or "")
            state["params"] = event.get("params") or "{}"
    elif kind == "started":
        if state["status"] in (PENDING, RUNNING):
            if state["status"] == PENDING:
                state["attempts"] = int(state["attempts"]) + 1
            state["status"] = RUNNING
            state["started_us"] = ts
            state["progress"] = {}
    elif kind == "progress":
        if state["status"] == RUNNING:
            state["progress"] = counts
    elif kind == "file_completed" and file:
        state["files_done"][str(file)] = json.dumps(counts, sort_keys=True)
        state["files_failed"].pop(str(file), None)
        state["progress"] = {}
    elif kind == "file_failed" and file:
        state["files_failed"][str(file)] = str(error)
        state["files_done"].pop(str(file), None)
        state["progress"] = {}
    elif kind in ("completed", "failed"):
        if state["status"] in (PENDING, RUNNING):
            state["status"] = COMPLETED if kind == "completed" else FAILED
            state["finished_us"] = ts
            state["error"] = str(error)
            if counts:  # the final counts of the work done outside files
                state["progress"] = counts
    elif kind == "retried" and state["status"] == FAILED:
        state["status"] = PENDING
        state["files_failed"] = {}
        state["error"] = ""
        state["finished_us"] = 0
    state["counts"] = totals(state)
    return state


def params_of(state: Mapping[str, Any]) -> dict[str, Any]:
    """The task's parameters (JSON text in the state)."""
    try:
        value = json.loads(state.get("params") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
