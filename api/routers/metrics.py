"""Device metrics: connections, disconnections, provisionings and publishes per window."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, viewer
from millrace.api.errors import bad_request
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.api.timeparams import Epoch, format_time, parse_time

router = APIRouter(tags=["metrics"], route_class=StrictRoute)

Metric = Literal[
    "connection",
    "disconnection",
    "connection_error",
    "provisioning",
    "publish_count",
    "publish_size",
    "publish_resource_count",
]


@router.get(
    "/metrics/devices",
    summary="Device metrics aggregated per 1m, 5m or 1h window",
    response_model=models.DeviceMetrics,
)
async def device_metrics(
    metric_name: Annotated[Metric, Query(description="which metric")],
    aggregate_window: Annotated[Literal["1m", "5m", "1h"], Query()] = "1m",
    aggregate_fn: Annotated[Literal["count", "max", "min", "sum", "avg"], Query()] = "sum",
    start_time: Annotated[str | None, Query(description="inclusive; default end - 1 day")] = None,
    end_time: Annotated[str | None, Query(description="exclusive; default now")] = None,
    epoch: Annotated[Epoch | None, Query(description="unit of epoch times in and out")] = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    """Each point is one window with data: ``count`` of samples (e.g. publishes),
    ``sum``/``min``/``max``/``avg`` of their values (bytes for publish_size, readings
    for publish_resource_count, 1 per event otherwise)."""
    end = parse_time("end_time", end_time, epoch) or ctx.clock()
    start = parse_time("start_time", start_time, epoch)
    if start is None:
        start = end - 86_400_000_000
    if end <= start:
        raise bad_request("end_time", "must be after start_time")
    if end - start > 400 * 86_400_000_000:
        raise bad_request("start_time", "at most 400 days per query")
    rows = await asyncio.to_thread(
        ctx.queries.metrics, metric_name, aggregate_window, aggregate_fn, start, end
    )
    return JsonResponse(
        {
            "metric_name": metric_name,
            "aggregate_window": aggregate_window,
            "aggregate_fn": aggregate_fn,
            "points": [
                {"time": format_time(r["time_us"], epoch), "value": r["value"]} for r in rows
            ],
        }
    )
