"""Replay while running: rebuild projections from the log as a task (``projections.replay``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from millrace.api.auth import Principal
from millrace.api.context import AppContext, admin, context, viewer
from millrace.api.errors import bad_request
from millrace.api.models.common import Data, Page, errors
from millrace.api.models.tasks import TaskCreated, TaskOut
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.api.task_views import task_json, task_or_404, task_page
from millrace.api.timeparams import Epoch, parse_time
from millrace.pipeline.tasks import create_task
from millrace.pipeline.topics import TASKS
from millrace.projections.replay import REPLAYABLE, UnknownProjectionError, plan
from millrace.projections.tasks import TaskQueries

router = APIRouter(tags=["replay"], route_class=StrictRoute)

KIND = "replay"
Status = Literal["pending", "running", "completed", "failed"]


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    projections: list[str] = Field(
        default_factory=list,
        description=f"projections to rebuild (empty: all): {', '.join(REPLAYABLE)}",
        max_length=len(REPLAYABLE),
    )
    start_time: str | int | float | None = Field(
        None, description="fold the log from here on (ISO-8601 or epoch); absent: all of it"
    )
    epoch: Epoch | None = Field(None, description="unit of a numeric start_time (default s)")


def _queries(ctx: AppContext) -> TaskQueries:
    return TaskQueries(ctx.store, KIND)


class ReplayCreated(TaskCreated):
    projections: list[str] = Field(description="the projections the replay swaps in")


@router.post(
    "/replay",
    status_code=202,
    summary="Rebuild projections from the log, live",
    response_model=Data[ReplayCreated],
    responses=errors(400, 403),
)
async def start_replay(
    req: ReplayRequest,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(admin),
) -> JsonResponse:
    """Starts a ``replay`` task: the named projections (all when none are named) are
    folded again from the log into shadow tables while ingest and queries go on, then
    swapped in atomically. Answers 202 with the task; follow it with
    ``GET /api/v1/replay/{task_id}``. In the distributed deployment the task runner of
    ``millrace process`` runs it, holding every worker through the log for the swap."""
    try:
        swapped, _ = plan(req.projections)
    except UnknownProjectionError as exc:
        raise bad_request("projections", str(exc)) from None
    raw = None if req.start_time is None else str(req.start_time)
    start_us = parse_time("start_time", raw, req.epoch)
    params: dict[str, Any] = {"projections": list(req.projections)}
    if start_us is not None:
        params["start_time_us"] = start_us
    task_id = await create_task(ctx.publisher, KIND, params, actor=principal.key_id)
    await ctx.wait_applied(TASKS)
    return JsonResponse(
        {"data": {"task_id": task_id, "kind": KIND, "status": "pending", "projections": swapped}},
        status_code=202,
    )


@router.get(
    "/replay",
    summary="Replay tasks, newest first",
    response_model=Page[TaskOut],
    responses=errors(400, 403),
)
async def list_replays(
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    epoch: Epoch | None = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    return await task_page(_queries(ctx), status, limit, page, epoch)


@router.get(
    "/replay/{task_id}",
    summary="A replay task: status and progress",
    response_model=Data[TaskOut],
    responses=errors(403, 404),
)
async def get_replay(
    task_id: str,
    epoch: Epoch | None = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    """Status pending|running|completed|failed; progress in records (folded and to
    fold) and readings rebuilt. 404 for an unknown task."""
    return JsonResponse({"data": task_json(await task_or_404(_queries(ctx), task_id), epoch)})
