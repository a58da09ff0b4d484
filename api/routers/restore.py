"""Restore archived streams into the projections, as tasks (``pipeline.restore``).

``POST /restore/time`` and ``POST /restore/url`` create a ``restore`` task (202); the
task runner of the process role folds the files exactly once. ``GET /restore`` lists
the tasks, ``GET /restore/{task_id}`` shows one (status, progress, per-file errors),
``POST /restore/{task_id}/retry`` runs a failed task's failed files again.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, operator
from millrace.api.errors import ApiError, bad_request
from millrace.api.models.common import Data, Page, errors
from millrace.api.models.tasks import TaskCreated, TaskOut
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.api.task_views import task_json, task_or_404, task_page
from millrace.api.timeparams import Epoch, parse_time
from millrace.pipeline.restore import (
    KIND,
    RESTORABLE,
    RestoreError,
    RestoreForbiddenError,
    RestoreParams,
    admit_url,
    masked_url,
)
from millrace.pipeline.tasks import STATUSES, create_task, retry_task
from millrace.pipeline.topics import TASKS
from millrace.projections.tasks import TaskQueries

router = APIRouter(tags=["restore"], route_class=StrictRoute)

Time = str | int | float
Status = Literal["pending", "running", "completed", "failed"]
assert set(STATUSES) == {"pending", "running", "completed", "failed"}


class RestoreByTime(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_time: Time = Field(
        description="first log append time restored (ISO-8601 or epoch; the time the record "
        "reached the log, not the readings' source time)"
    )
    end_time: Time = Field(description="records appended to the log before this time")
    epoch: Epoch | None = Field(None, description="unit of numeric times (default s)")
    identities: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=10_000, description="only these identities"
    )
    topics: list[str] = Field(
        default_factory=list,
        max_length=len(RESTORABLE),
        description=f"only these topics (default all): {', '.join(RESTORABLE)}",
    )


class RestoreByUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    urls: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        min_length=1,
        max_length=10_000,
        description="archive files: paths on the archive store, or file://, http(s):// or "
        "s3:// URLs under restore.allowed_url_prefixes; credentials of an http(s) URL only "
        "as the ${ENV} references its prefix declares (or left out: the prefix's are used)",
    )


def _queries(ctx: AppContext) -> TaskQueries:
    return TaskQueries(ctx.store, KIND)


async def _start(ctx: AppContext, params: RestoreParams, principal: Principal) -> JsonResponse:
    try:
        params.check()
    except RestoreError as exc:
        field, _, message = str(exc).partition(": ")
        raise bad_request(field, message or str(exc)) from None
    task_id = await create_task(ctx.publisher, KIND, params.to_json(), actor=principal.key_id)
    await ctx.wait_applied(TASKS)
    return JsonResponse(
        {"data": {"task_id": task_id, "kind": KIND, "status": "pending"}}, status_code=202
    )


@router.post(
    "/restore/time",
    status_code=202,
    summary="Restore archived records by time",
    response_model=Data[TaskCreated],
    responses=errors(400, 403, 409, s409="no archive is configured"),
)
async def restore_by_time(
    req: RestoreByTime,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """Starts a ``restore`` task over the archive store's files whose records fall in
    ``[start_time, end_time)`` (optionally only ``identities`` and ``topics``).
    Restored events are folded into the projections exactly once: what they already
    hold is not doubled. 400 naming the field when ``start_time >= end_time``; 409
    when no archive is configured."""
    start = parse_time("start_time", str(req.start_time), req.epoch)
    end = parse_time("end_time", str(req.end_time), req.epoch)
    if start is not None and end is not None and start >= end:
        raise bad_request("start_time", "must be before end_time")
    if ctx.archive is None:
        raise ApiError(409, "conflict", "no archive is configured (archive.url)")
    params = RestoreParams(start, end, tuple(req.identities), tuple(req.topics))
    return await _start(ctx, params, principal)


@router.post(
    "/restore/url",
    status_code=202,
    summary="Restore archive files by URL",
    response_model=Data[TaskCreated],
    responses=errors(
        400, 403, 409, s400="a literal password in a URL", s403="a URL outside the allowed prefixes"
    ),
)
async def restore_by_url(
    req: RestoreByUrl,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """Starts a ``restore`` task over the files named. A URL outside the archive store
    and outside ``restore.allowed_url_prefixes``, or with credentials its prefix does
    not declare, answers 403; a literal password in a URL 400 naming ``urls[i]``
    (credentials are ``${ENV}`` references, resolved by the task runner from its
    environment, so no secret is in the task's event). Nothing is started.
    Files of this deployment's archive are folded into the projections; any other file
    (another site's archive, another tool's) is appended to the log, each record once,
    and folded by the live fold (so a replay keeps it): the task completes when its
    records are on the log."""
    archive_url = ctx.archive.url if ctx.archive is not None else None
    for i, url in enumerate(req.urls):
        try:
            admit_url(url, ctx.settings.restore_url_prefixes, archive_url, f"urls[{i}]")
        except RestoreForbiddenError as exc:
            raise ApiError(
                403,
                "forbidden",
                str(exc),
                details=[{"field": f"urls[{i}]", "url": masked_url(url)}],
            ) from None
        except RestoreError as exc:
            raise bad_request(f"urls[{i}]", str(exc).partition(": ")[2]) from None
        if "://" not in url and ctx.archive is None:
            raise ApiError(409, "conflict", f"urls[{i}]: no archive is configured")
    return await _start(ctx, RestoreParams(urls=tuple(req.urls)), principal)


@router.get(
    "/restore",
    summary="Restore tasks, newest first",
    response_model=Page[TaskOut],
    responses=errors(400, 403),
)
async def list_restores(
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    epoch: Epoch | None = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(operator),
) -> JsonResponse:
    return await task_page(_queries(ctx), status, limit, page, epoch)


@router.get(
    "/restore/{task_id}",
    summary="A restore task: status, progress, file errors",
    response_model=Data[TaskOut],
    responses=errors(403, 404),
)
async def get_restore(
    task_id: str,
    epoch: Epoch | None = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(operator),
) -> JsonResponse:
    """Status (pending, running, completed, failed), progress (files, events,
    readings, skipped duplicates, bytes), the files done and the files that failed
    with the reason. 404 for an unknown task."""
    return JsonResponse({"data": task_json(await task_or_404(_queries(ctx), task_id), epoch)})


@router.post(
    "/restore/{task_id}/retry",
    status_code=202,
    summary="Retry a failed restore",
    response_model=Data[TaskCreated],
    responses=errors(403, 404, 409, s409="the task has not failed"),
)
async def retry_restore(
    task_id: str,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """Runs the task's failed files again (the completed ones stay done). 404 for an
    unknown task, 409 unless it failed."""
    row = await task_or_404(_queries(ctx), task_id)
    if row["status"] != "failed":
        raise ApiError(409, "conflict", f"task {task_id} is {row['status']}, not failed")
    await retry_task(ctx.publisher, task_id, KIND, actor=principal.key_id)
    await ctx.wait_applied(TASKS)
    return JsonResponse(
        {"data": {"task_id": task_id, "kind": KIND, "status": "pending"}}, status_code=202
    )
