"""Replay while running: rebuild projections from the log as a task (``projections.replay``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from millrace.api.auth import Principal
from millrace.api.context import AppContext, admin, context, viewer
from millrace.api.errors import ApiError, bad_request
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.api.timeparams import Epoch, format_time, parse_time
from millrace.pipeline.tasks import create_task
from millrace.pipeline.topics import TASKS
from millrace.projections.replay import DISTRIBUTED, REPLAYABLE, UnknownProjectionError, plan
from millrace.projections.store.base import ProjectionStore

router = APIRouter(tags=["replay"], route_class=StrictRoute)

KIND = "replay"


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


_COLUMNS = (
    "task_id, kind, status, actor, params, created_us, started_us, updated_us, "
    "finished_us, attempts, error, counts, progress"
)


def _tasks(store: ProjectionStore, task_id: str | None, limit: int) -> list[dict[str, Any]]:
    where = "kind = {k:String}" + ("" if task_id is None else " AND task_id = {t:String}")
    res = store.query_arrow(
        f"SELECT {_COLUMNS} FROM millrace.tasks FINAL WHERE {where} "
        "ORDER BY created_us DESC, task_id LIMIT {n:UInt32}",
        params={"k": KIND, "t": task_id or "", "n": limit},
    )
    return list(res.to_pylist())


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    """A task row as the API answers it (times ISO-8601, params and counts as objects)."""
    try:
        params = json.loads(row["params"] or "{}")
    except ValueError:
        params = {}
    out: dict[str, Any] = {
        "task_id": row["task_id"],
        "kind": row["kind"],
        "status": row["status"],
        "actor": row["actor"],
        "params": params,
        "attempts": row["attempts"],
        "error": row["error"],
        "counts": dict(row["counts"] or []),
        "progress": dict(row["progress"] or []),
    }
    for name in ("created", "started", "updated", "finished"):
        us = int(row[f"{name}_us"] or 0)
        out[name] = format_time(us, None) if us else None
    return out


@router.post("/replay", status_code=202, summary="Rebuild projections from the log, live")
async def start_replay(
    req: ReplayRequest,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(admin),
) -> JsonResponse:
    """Starts a ``replay`` task: the named projections (all when none are named) are
    folded again from the log into shadow tables while ingest and queries go on, then
    swapped in atomically. Answers 202 with the task; follow it with
    ``GET /api/v1/replay/{task_id}``. 409 in the distributed deployment."""
    try:
        swapped, _ = plan(req.projections)
    except UnknownProjectionError as exc:
        raise bad_request("projections", str(exc)) from None
    raw = None if req.start_time is None else str(req.start_time)
    start_us = parse_time("start_time", raw, req.epoch)
    if ctx.status().get("mode") == "distributed":
        raise ApiError(409, "conflict", DISTRIBUTED)
    params: dict[str, Any] = {"projections": list(req.projections)}
    if start_us is not None:
        params["start_time_us"] = start_us
    task_id = await create_task(ctx.publisher, KIND, params, actor=principal.key_id)
    await ctx.wait_applied(TASKS)
    return JsonResponse(
        {"data": {"task_id": task_id, "kind": KIND, "status": "pending", "projections": swapped}},
        status_code=202,
    )


@router.get("/replay", summary="Replay tasks, newest first")
async def list_replays(
    ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    rows = await asyncio.to_thread(_tasks, ctx.store, None, 100)
    return JsonResponse({"data": [_shape(r) for r in rows]})


@router.get("/replay/{task_id}", summary="A replay task: status and progress")
async def get_replay(
    task_id: str, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    """Status pending|running|completed|failed; progress in records (folded and to
    fold) and readings."""
    rows = await asyncio.to_thread(_tasks, ctx.store, task_id, 1)
    if not rows:
        raise ApiError(
            404,
            "not_found",
            f"task_id: no replay task {task_id!r}",
            [{"field": "task_id", "message": "not found"}],
        )
    return JsonResponse({"data": _shape(rows[0])})
