"""Dead letters: what the pipeline could not decode or apply, and why."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, viewer
from millrace.api.pagination import page_meta
from millrace.api.responses import JsonResponse
from millrace.api.routers.signals import (
    EndTime,
    EpochQ,
    Limit,
    Page,
    StartTime,
    _time_range,
)
from millrace.api.routing import StrictRoute
from millrace.api.timeparams import format_time
from millrace.api.users.scope import within
from millrace.projections import queries

router = APIRouter(tags=["deadletters"], route_class=StrictRoute)


@router.get(
    "/deadletters",
    summary="Events the pipeline could not decode or apply",
    response_model=models.CountedPage[models.DeadLetterOut],
)
async def list_dead_letters(
    topic: Annotated[str | None, Query(description="source topic, e.g. telemetry")] = None,
    stage: Annotated[str | None, Query(description="decode, apply or a connector's stage")] = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    epoch: EpochQ = None,
    limit: Limit = 100,
    page: Page = 1,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    """Newest first, with the source position, the reason and up to 4 KiB of the
    payload; ``total`` counts every match. A scoped caller sees only the dead letters
    that name an identity in its scope (of the topics keyed by identity: telemetry,
    identity, commands); the others are hidden."""
    tr = _time_range(start_time, end_time, epoch)
    rows, total = await asyncio.to_thread(
        queries.dead_letters,
        ctx.store,
        topic,
        stage,
        tr,
        limit,
        (page - 1) * limit,
        within(principal),
    )
    data = [{"timestamp": format_time(r.pop("ts_us"), epoch), **r} for r in rows]
    return JsonResponse(
        {
            "data": data,
            "total": total,
            "meta": {"pagination": page_meta(page, limit, len(data), total)},
        }
    )
