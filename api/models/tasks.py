"""Tasks (restore, replay) as the API answers them (``api.task_views.task_json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from millrace.api.models.common import Time


class TaskFileOut(BaseModel):
    """A completed file and its counts (events, readings, skipped, bytes, ...)."""

    model_config = {"extra": "allow"}

    file: str


class TaskFileError(BaseModel):
    file: str
    reason: str


class TaskOut(BaseModel):
    task_id: str
    kind: str
    status: str = Field(description="pending | running | completed | failed")
    actor: str = Field(description="who created the task")
    params: dict[str, Any]
    attempts: int = Field(description="runs started (a retry or a resume after a restart)")
    error: str | None = Field(description="why the task failed, naming the failed files")
    progress: dict[str, int] = Field(
        description="totals of completed files plus the one in flight: files, events, "
        "readings, skipped (duplicates not applied again), bytes"
    )
    files: list[TaskFileOut]
    errors: list[TaskFileError] = Field(description="the failed files and why")
    created: Time | None
    started: Time | None
    updated: Time | None
    finished: Time | None


class TaskCreated(BaseModel):
    task_id: str
    kind: str
    status: str
