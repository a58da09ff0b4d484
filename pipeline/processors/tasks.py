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

from millrace.pipeline.processors.base import Event
from millrace.pipeline.processors.keyed import KeyedFoldProcessor, fold_rows
from millrace.pipeline.tables import TASKS_SCHEMA
from millrace.pipeline.tasks.state import State, apply
from millrace.pipeline.topics import TASKS


def task_rows(states: Sequence[State]) -> pa.Table:
    return fold_rows(TASKS_SCHEMA, states)


class TaskProcessor(KeyedFoldProcessor):
    """The task fold, one row per task."""

    topics = (TASKS,)
    state_table = "tasks"
    state_key = "task_id"
    schema = TASKS_SCHEMA
    error_type = "TaskRejected"

    def fold(self, prev: Mapping[str, Any] | None, value: Mapping[str, Any], version: int) -> State:
        return apply(prev, value, version)

    def rejected_payload(self, event: Event) -> bytes:
        return repr(dict(event.value)).encode()[:65536]
