"""The archive: the windows archived so far (from the manifests), and a flush that
archives everything appended so far (a task the archiver runs, ``pipeline.archive``)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, admin, context, operator
from millrace.api.errors import ApiError, bad_request
from millrace.api.models.common import errors
from millrace.api.responses import JsonResponse
from millrace.api.routers.signals import (
    EndTime,
    EpochQ,
    Limit,
    Page,
    StartTime,
    _pagination,
    _time_range,
)
from millrace.api.routing import StrictRoute
from millrace.api.timeparams import Epoch, format_time
from millrace.pipeline.archive.archiver import FLUSH_KIND
from millrace.pipeline.archive.errors import ArchiveStoreError
from millrace.pipeline.archive.format import Manifest
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.tasks import create_task
from millrace.pipeline.topics import ALL_TOPICS
from millrace.projections.store.base import ProjectionStore

router = APIRouter(tags=["archive"], route_class=StrictRoute)

NOT_CONFIGURED = "no archive is configured: set archive.url (or MILLRACE_ARCHIVE_URL)"


class ArchiveWindowOut(BaseModel):
    """One archived window: a data file and what its manifest says."""

    topic: str
    partition: int
    start: models.Time = Field(description="the window's start")
    end: models.Time = Field(description="the window's end (exclusive)")
    first_timestamp: models.Time = Field(description="log time of its earliest record")
    last_timestamp: models.Time = Field(description="log time of its latest record")
    first_offset: int
    last_offset: int
    records: int
    readings: int = Field(description="telemetry: values in all samples; else 0")
    bytes: int
    codec: str
    sha256: str
    path: str = Field(description="relative to the archive root")


class FlushOut(BaseModel):
    task_id: str
    kind: str
    status: str = Field(description="completed (200), or pending|running (202)")


def _store(ctx: AppContext) -> ArchiveStore:
    if ctx.archive is None:
        raise ApiError(409, "conflict", NOT_CONFIGURED)
    return ctx.archive


def _window(m: Manifest, epoch: Epoch | None) -> dict[str, Any]:
    return {
        "topic": m.topic,
        "partition": m.partition,
        "start": format_time(m.window_start_us, epoch),
        "end": format_time(m.window_end_us, epoch),
        "first_timestamp": format_time(m.min_timestamp_us, epoch),
        "last_timestamp": format_time(m.max_timestamp_us, epoch),
        "first_offset": m.first_offset,
        "last_offset": m.last_offset,
        "records": m.records,
        "readings": m.readings,
        "bytes": m.bytes,
        "codec": m.codec,
        "sha256": m.sha256,
        "path": m.path,
    }


@router.get(
    "/archive",
    summary="Archived windows, oldest first",
    response_model=models.CountedPage[ArchiveWindowOut],
    responses=errors(400, 403, 409, 503, s409="no archive is configured"),
)
async def list_archive(
    topic: Annotated[str | None, Query(description="one topic, e.g. telemetry")] = None,
    partition: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    epoch: EpochQ = None,
    limit: Limit = 100,
    page: Page = 1,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(operator),
) -> JsonResponse:
    """The archive's windows (one file each) whose records overlap
    ``[start_time, end_time)``: topic, partition, window, record time range, offsets,
    record and reading counts, size, checksum and path under the archive root. Read
    from the manifests only. 409 when no archive is configured; 503 when the store
    cannot be listed."""
    tr = _time_range(start_time, end_time, epoch)
    if topic is not None and topic not in ALL_TOPICS:
        raise bad_request("topic", f"unknown topic; one of {', '.join(ALL_TOPICS)}")
    store = _store(ctx)
    try:
        windows = await asyncio.to_thread(
            store.list_windows, topic, partition, tr.start_us, tr.end_us
        )
    except ArchiveStoreError as exc:
        raise ApiError(503, "unavailable", f"archive store: {exc}") from None
    rows = windows[(page - 1) * limit : page * limit]
    return JsonResponse(
        {
            "data": [_window(m, epoch) for m in rows],
            "total": len(windows),
            "meta": {"pagination": _pagination(page, limit, len(rows), len(windows))},
        }
    )


def _task_status(store: ProjectionStore, task_id: str) -> tuple[str, str]:
    res = store.query_arrow(
        "SELECT status, error FROM millrace.tasks FINAL WHERE task_id = {t:String}",
        params={"t": task_id},
    ).to_pylist()
    return (str(res[0]["status"]), str(res[0]["error"] or "")) if res else ("pending", "")


@router.post(
    "/archive/flush",
    summary="Archive everything appended so far",
    response_model=models.Data[FlushOut],
    responses={
        202: {"model": models.Data[FlushOut], "description": "still running"},
        **errors(403, 409, 503, s409="no archive is configured"),
    },
)
async def flush_archive(
    wait_s: Annotated[float, Query(gt=0, le=600, description="how long to wait")] = 60.0,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(admin),
) -> JsonResponse:
    """Closes the open windows early and archives every record appended so far (before
    maintenance, or in tests). It is a task of kind ``archive-flush`` that the archiver
    runs in whichever ``millrace process`` leads; the call answers 200 once the task
    completed, or 202 with the task still pending or running after ``wait_s`` (the
    archiver may be retrying an unreachable store: see ``GET /api/v1/status``)."""
    _store(ctx)
    task_id = await create_task(ctx.publisher, FLUSH_KIND, {}, actor=principal.key_id)
    deadline = time.monotonic() + wait_s
    status, error = "pending", ""
    while time.monotonic() < deadline:
        await ctx.wait_applied("tasks")
        status, error = await asyncio.to_thread(_task_status, ctx.store, task_id)
        if status in ("completed", "failed"):
            break
        await asyncio.sleep(0.05)
    if status == "failed":
        raise ApiError(500, "flush_failed", f"archive flush {task_id} failed: {error}")
    body = {"data": {"task_id": task_id, "kind": FLUSH_KIND, "status": status}}
    return JsonResponse(body, status_code=200 if status == "completed" else 202)
