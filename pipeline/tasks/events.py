"""Appending TaskEvents: creating a task, retrying it, and the runner's own steps.
Every change to a task is one event on the ``tasks`` topic (key: task id), built by
:func:`millrace.pipeline.events.task_event` (re-exported here)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.events import task_event as task_event
from millrace.pipeline.topics import TASKS


def new_task_id() -> str:
    return uuid.uuid4().hex


async def create_task(
    publisher: EventPublisher,
    kind: str,
    params: Mapping[str, Any],
    *,
    actor: str = "",
    task_id: str | None = None,
) -> str:
    """Append a ``created`` event; the runner picks the task up. Returns its id."""
    task_id = task_id or new_task_id()
    event = task_event(task_id, kind, "created", actor=actor, params=params)
    await publisher.publish(TASKS, [(task_id, event)])
    return task_id


async def retry_task(
    publisher: EventPublisher, task_id: str, kind: str, *, actor: str = ""
) -> None:
    """Append a ``retried`` event: a failed task goes back to pending, its failed files
    are forgotten (the handler redoes them) and its completed files kept."""
    await publisher.publish(TASKS, [(task_id, task_event(task_id, kind, "retried", actor=actor))])
