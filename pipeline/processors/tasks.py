"""Tasks processor: the tasks topic -> ``millrace.tasks`` (one row per task).

The row is the fold of the task's events (``pipeline.tasks.state``), kept in the table
itself (a stateful processor: the runtime hands it the rows of the batch's tasks).
Rows carry ``version`` = log offset + 1 of the last event they include, so a redone
batch skips every event already folded in and writes the same rows again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from millrace.pipeline.processors.base import Event, Outputs, StatefulProcessor, dead_letter
from millrace.pipeline.tables import TASKS_SCHEMA
from millrace.pipeline.tasks.state import State, apply
from millrace.pipeline.topics import TASKS

_MAPS = {f.name for f in TASKS_SCHEMA if isinstance(f.type, pa.MapType)}


def task_rows(states: Sequence[State]) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [] for f in TASKS_SCHEMA}
    for s in states:
        for name, values in cols.items():
            v = s[name]
            values.append(list(v.items()) if name in _MAPS else v)
    return pa.Table.from_pydict(cols, schema=TASKS_SCHEMA)


class TaskProcessor(StatefulProcessor):
    """The task fold, one row per task."""

    topics = (TASKS,)
    state_table = "tasks"
    state_key = "task_id"

    def state_keys(self, events: Sequence[Event]) -> list[str]:
        keys = {e.value.get("task_id") for e in events}
        return sorted(k for k in keys if isinstance(k, str) and k)

    def process_with_state(
        self, events: Sequence[Event], state: Mapping[str, Mapping[str, Any]]
    ) -> Outputs:
        out = Outputs()
        current: dict[str, Mapping[str, Any]] = dict(state)
        changed: dict[str, State] = {}
        for ev in events:
            task_id = ev.value.get("task_id")
            try:
                if not isinstance(task_id, str) or not task_id:
                    raise ValueError("task_id: must be a non-empty string")
                prev = current.get(task_id)
                if prev is not None and ev.offset < int(prev["version"]):
                    continue  # already in the row (a redone batch)
                new = apply(prev, ev.value, ev.offset + 1)
            except (ValueError, KeyError, TypeError) as exc:
                out.deadletters.append(
                    dead_letter(
                        ev,
                        reason=str(exc),
                        error_type="TaskRejected",
                        stage="apply",
                        ts_us=ev.timestamp_us,
                        payload=repr(dict(ev.value)).encode()[:65536],
                    )
                )
                continue
            current[task_id] = changed[task_id] = new
        if changed:
            out.tables["tasks"] = task_rows(list(changed.values()))
        return out
