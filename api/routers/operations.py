"""The operations API: system info, hourly/daily system metrics, pause/resume of the
runtime, recent logs (list and live stream) and the running configuration.

Health probes and ``/metrics`` (no ``/api/v1`` prefix) are in ``api.routers.health``;
what these routes read comes from ``AppContext.ops`` (``api.operations``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import StreamingResponse

from millrace.api import models
from millrace.api.audit import audit_note
from millrace.api.auth import Principal
from millrace.api.context import AppContext, admin, context, operator, viewer
from millrace.api.errors import ApiError, bad_request
from millrace.api.logring import LEVELS, LogQuery, public
from millrace.api.models import operations as m
from millrace.api.operations import Operations
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.api.stream_connection import sse
from millrace.api.timeparams import parse_time

router = APIRouter(tags=["operations"], route_class=StrictRoute)


def ops_of(ctx: AppContext) -> Operations:
    if ctx.ops is None:
        raise ApiError(503, "unavailable", "operations are not configured in this process")
    return ctx.ops


@router.get(
    "/system/info",
    summary="Version, deployment, uptime, store and disk",
    response_model=models.Data[m.SystemInfo],
)
async def system_info(
    ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    """Version and build, deployment (embedded or distributed), uptime, Python, the
    chDB/ClickHouse server version, the data directory and its log's disk usage."""
    ops = ops_of(ctx)
    await ops.refresh()
    return JsonResponse({"data": await asyncio.to_thread(ops.info, ctx.store)})


_BUCKET = {"hourly": "toStartOfHour(bucket)", "daily": "toStartOfDay(bucket)"}


@router.get(
    "/system/metrics",
    summary="Connected datapoints and messages per hour or day",
    response_model=m.SystemMetrics,
)
async def system_metrics(
    interval: Annotated[Literal["hourly", "daily"], Query()] = "hourly",
    start_time: Annotated[str | None, Query(description="inclusive; default end - 1 day")] = None,
    end_time: Annotated[str | None, Query(description="exclusive; default now")] = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    """Per hour (or day): ``datapoints`` = distinct (identity, signal) pairs that
    reported, ``messages`` = good-quality readings received (from the 1 h aggregates)."""
    end = parse_time("end_time", end_time, None) or ctx.clock()
    start = parse_time("start_time", start_time, None)
    if start is None:
        start = end - (86_400_000_000 if interval == "hourly" else 30 * 86_400_000_000)
    if end <= start:
        raise bad_request("end_time", "must be after start_time")
    if end - start > 400 * 86_400_000_000:
        raise bad_request("start_time", "at most 400 days per query")
    sql = f"""
        SELECT toUnixTimestamp({_BUCKET[interval]}) AS t,
               uniqExact(identity, signal) AS datapoints, sum(count) AS messages
        FROM millrace.agg_1h
        WHERE bucket >= fromUnixTimestamp64Micro({{start:Int64}}, 'UTC')
          AND bucket < fromUnixTimestamp64Micro({{end:Int64}}, 'UTC')
        GROUP BY t ORDER BY t"""
    result = await asyncio.to_thread(ctx.store.execute, sql, {"start": start, "end": end})
    points = [
        {"time_us": int(t) * 1_000_000, "datapoints": int(d), "messages": int(m)}
        for t, d, m in result.rows
    ]
    return JsonResponse({"interval": interval, "points": points})


@router.post(
    "/pipeline/pause",
    summary="Stop folding the log into projections",
    response_model=models.Data[m.PipelineState],
    responses=models.errors(409),
)
async def pause(
    ctx: AppContext = Depends(context), _: Principal = Depends(operator)
) -> JsonResponse:
    """The runtime finishes the batch in flight and folds nothing more; the log keeps
    accepting (ingest, connectors), so ``/status`` lag grows until ``resume``."""
    return await _switch(ctx, paused=True)


@router.post(
    "/pipeline/resume",
    summary="Fold the log again",
    response_model=models.Data[m.PipelineState],
    responses=models.errors(409),
)
async def resume(
    ctx: AppContext = Depends(context), _: Principal = Depends(operator)
) -> JsonResponse:
    """Folding restarts at the committed positions: what arrived meanwhile drains."""
    return await _switch(ctx, paused=False)


async def _switch(ctx: AppContext, *, paused: bool) -> JsonResponse:
    ops = ops_of(ctx)
    if ops.pause is None or ops.resume is None:
        raise _not_here()
    await ops.refresh()
    before = ops.paused()
    if paused:
        await ops.pause()
    else:
        ops.resume()
    audit_note(
        action="pause" if paused else "resume",
        target_type="pipeline",
        target_id="runtime",
        before={"paused": before},
        after={"paused": paused},
    )
    return JsonResponse({"data": {"paused": paused, "lag_records": ops.lag()}})


def _not_here() -> ApiError:
    return ApiError(
        409,
        "conflict",
        "this process runs no runtime (distributed deployment): stop or scale the "
        "'millrace process' workers instead",
    )


def _log_query(
    level: str | None, logger: str | None, since: str | None, text: str | None
) -> LogQuery:
    levelno = 0
    if level is not None:
        if level.upper() not in LEVELS:
            raise bad_request("level", f"one of {', '.join(LEVELS)}")
        levelno = LEVELS[level.upper()]
    return LogQuery(levelno, logger or None, parse_time("since", since, None), text or None)


LevelQ = Annotated[str | None, Query(description="minimum level: DEBUG, INFO, WARNING, ERROR")]
LoggerQ = Annotated[str | None, Query(max_length=200, description="logger name or its parent")]
SinceQ = Annotated[str | None, Query(description="records at or after this time")]
TextQ = Annotated[str | None, Query(max_length=200, description="substring, case-insensitive")]


@router.get(
    "/logs",
    summary="Recent log records",
    response_model=models.Data[list[m.LogRecordOut]],
)
async def logs(
    level: LevelQ = None,
    logger: LoggerQ = None,
    since: SinceQ = None,
    text: TextQ = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(admin),
) -> JsonResponse:
    """The newest ``limit`` matching records of this process (oldest first), secrets
    redacted when they were logged."""
    query = _log_query(level, logger, since, text)
    return JsonResponse({"data": ops_of(ctx).logs.records(query, limit)})


@router.get(
    "/logs/stream",
    summary="Log records as Server-Sent Events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "log events"}},
)
async def logs_stream(
    request: Request,
    level: LevelQ = None,
    logger: LoggerQ = None,
    since: SinceQ = None,
    text: TextQ = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(admin),
) -> StreamingResponse:
    """Matching records from the ring (``since`` given) and then as they are logged:
    one ``log`` event each; a ``ping`` comment every 15 s."""
    query = _log_query(level, logger, since, text)
    ring = ops_of(ctx).logs

    async def events() -> AsyncGenerator[bytes, None]:
        with ring.listen() as queue:
            last = 0
            if query.since_us is not None:
                for rec in ring.records(query, 5000):
                    last = rec["seq"]
                    yield sse("log", rec, str(rec["seq"]))
            while not await request.is_disconnected():
                try:
                    rec = await asyncio.wait_for(queue.get(), 15.0)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                if rec["seq"] > last and query.matches(rec):
                    yield sse("log", public(rec), str(rec["seq"]))

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/config",
    summary="The running configuration, secrets masked",
    response_model=models.Data[m.RunningConfig],
)
async def running_config(
    ctx: AppContext = Depends(context), _: Principal = Depends(operator)
) -> JsonResponse:
    """The configuration this process runs with (file, environment and defaults), every
    field named like a secret and every URL password as ``***``; ``runtime`` lists the
    settings ``PATCH /config`` changes and their current values."""
    ops = ops_of(ctx)
    runtime = {name: s.get() for name, s in ops.settings.items()}
    return JsonResponse({"data": {"config": ops.config(), "runtime": runtime}})


@router.patch(
    "/config",
    summary="Change runtime settings",
    response_model=models.Data[dict[str, Any]],
)
async def patch_config(
    body: dict[str, Any], ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    """Body: ``{"<setting>": value, ...}`` among the names ``GET /config`` lists under
    ``runtime``. All are checked before any changes; each change is audited with its
    old and new value. That audit event is the change every process of the deployment
    applies (``pipeline.runtime.config_follow``): the identity watch of ``millrace
    process``, each process's log level; a restarted process applies the last ones.
    This process applies them at once (the answer shows them)."""
    ops = ops_of(ctx)
    if not body:
        raise bad_request("body", "name at least one setting")
    parsed: dict[str, Any] = {}
    for name, value in body.items():
        setting = ops.settings.get(name)
        if setting is None:
            raise bad_request(
                f"body.{name}", f"not a runtime setting; one of {', '.join(ops.settings)}"
            )
        try:
            parsed[name] = setting.parse(value)
        except (TypeError, ValueError) as exc:
            raise bad_request(f"body.{name}", str(exc)) from exc
    for name, value in parsed.items():
        setting = ops.settings[name]
        before = setting.get()
        # the newest change here: it wins over what the log brought before it
        setting.change(value, max(ctx.clock(), setting.changed_us))
        audit_note(
            action="update",
            target_type="setting",
            target_id=name,
            before={name: before},
            after={name: setting.get()},
        )
    return JsonResponse({"data": {name: s.get() for name, s in ops.settings.items()}})
