"""Resource states, deviations and runner heartbeats.

Every resource — connector connections and endpoints, runners, identities' desired
state — has a desired and a current state; it is *deviated* while they differ. The
status projection (``pipeline.processors.status``) and the identity registry are read
through ``projections.resource_states``; filters, paging and counts run in ClickHouse.

Registered before ``api.routers.resources`` (``/resources/{name}``), which would
otherwise take ``states`` for a resource name.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, viewer
from millrace.api.errors import bad_request
from millrace.api.responses import JsonResponse
from millrace.api.routers.identities import run_query
from millrace.api.routing import StrictRoute
from millrace.api.timeparams import Epoch, format_time
from millrace.api.users.scope import within
from millrace.projections.resource_states import (
    MAX_PAGE_ROWS,
    Page,
    ResourceFilter,
    ResourceStateQueries,
)

router = APIRouter(tags=["resource states"], route_class=StrictRoute)

#: the most ids one filter may list
MAX_IDS = 1000

PageQ = Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")]
ItemsQ = Annotated[
    int, Query(ge=1, le=MAX_PAGE_ROWS, description=f"rows per page (1..{MAX_PAGE_ROWS})")
]
IdsQ = Annotated[list[str], Query(description="repeat the parameter or separate with commas")]
DeviatedQ = Annotated[
    bool | None, Query(description="true: deviated only (desired != current); false: none")
]
EpochQ = Annotated[
    Epoch | None, Query(description="times out as epoch s, ms or us; absent = ISO-8601")
]


def _ids(field: str, raw: list[str]) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(v.strip() for item in raw for v in item.split(",") if v.strip()))
    if len(ids) > MAX_IDS:
        raise bad_request(field, f"at most {MAX_IDS} ids, got {len(ids)}")
    return ids


def _filter(
    service_ids: list[str],
    resource_ids: list[str],
    deviated: bool | None,
    principal: Principal,
) -> ResourceFilter:
    return ResourceFilter(
        service_ids=_ids("service_ids", service_ids),
        resource_ids=_ids("resource_ids", resource_ids),
        deviated=deviated,
        within=within(principal),
    )


def pagination(page: Page, rows: int, total: int) -> dict[str, Any]:
    """``meta.pagination`` of a page of ``rows`` out of ``total``."""
    per = page.items_per_page
    return {
        "total_pages": (total + per - 1) // per,
        "total_rows": total,
        "page_number": page.number,
        "rows_in_page": rows,
        "next_page": page.number + 1 if page.number * per < total else None,
    }


def _listing(data: list[dict[str, Any]], page: Page, total: int) -> JsonResponse:
    return JsonResponse({"data": data, "meta": {"pagination": pagination(page, len(data), total)}})


def _state_out(r: dict[str, Any], epoch: Epoch | None) -> dict[str, Any]:
    since = r["deviated_since_us"]
    return {
        "resource_id": r["resource_id"],
        "service_id": r["service_id"],
        "resource_type": r["resource_type"],
        "desired_state": r["desired_state"],
        "current_state": r["current_state"],
        "deviated": r["deviated"],
        "info": r["info"],
        "runner": r["runner"],
        "timestamp": format_time(r["ts_us"], epoch),
        "since": format_time(r["since_us"], epoch),
        "deviated_since": format_time(since, epoch) if since is not None else None,
        "metrics": r["metrics"],
    }


@router.get(
    "/resources/states",
    summary="Desired and current state of every resource",
    response_model=models.NumberedPage[models.ResourceStateOut],
)
async def resource_states(
    service_ids: IdsQ = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    resource_ids: Annotated[
        list[str], Query(description="win over service_ids when both are given")
    ] = [],  # noqa: B006
    deviated: DeviatedQ = None,
    page: PageQ = 1,
    items_per_page: ItemsQ = 100,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    """Connector connections and endpoints, runners, and identities' desired state
    (``identity:<identity>/<resource>``, service ``identities``), ordered by service
    and resource id. ``deviated`` is true while desired and current state differ. A
    scoped caller sees the desired state of the identities in its scope only (the
    connector resources are no one identity's)."""
    q = ResourceStateQueries(ctx.store)
    p = Page(page, items_per_page)
    f = _filter(service_ids, resource_ids, deviated, principal)
    rows, total = await run_query(q.states, f, p)
    return _listing([_state_out(r, epoch) for r in rows], p, total)


@router.get(
    "/resources/states/deviations",
    summary="Resources whose state deviates",
    response_model=models.NumberedPage[models.ResourceStateOut],
)
async def deviations(
    service_ids: IdsQ = [],  # noqa: B006
    resource_ids: Annotated[
        list[str], Query(description="win over service_ids when both are given")
    ] = [],  # noqa: B006
    page: PageQ = 1,
    items_per_page: ItemsQ = 100,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    """The resource states whose current state differs from the desired one, with
    ``deviated_since`` (a scoped caller: as ``/resources/states`` shows it)."""
    q = ResourceStateQueries(ctx.store)
    p = Page(page, items_per_page)
    f = _filter(service_ids, resource_ids, None, principal)
    rows, total = await run_query(q.deviations, f, p)
    return _listing([_state_out(r, epoch) for r in rows], p, total)


@router.get(
    "/resources/states/deviations/count",
    summary="How many resources deviate, per service",
    response_model=models.NumberedPage[models.DeviationCount],
)
async def deviation_count(
    service_ids: IdsQ = [],  # noqa: B006
    page: PageQ = 1,
    items_per_page: ItemsQ = 100,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    """``{"service_id", "count"}`` per service with at least one deviated resource (a
    scoped caller: of the resources ``/resources/states`` shows it)."""
    q = ResourceStateQueries(ctx.store)
    p = Page(page, items_per_page)
    ids = _ids("service_ids", service_ids)
    rows, total = await run_query(q.deviation_counts, ids, p, within(principal))
    return _listing(rows, p, total)


@router.get(
    "/resource-runners",
    summary="Runners and their heartbeats",
    response_model=models.NumberedPage[models.RunnerOut],
)
async def resource_runners(
    page: PageQ = 1,
    items_per_page: ItemsQ = 100,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    """Every runner named by a status event: its ``last`` sign of life, the heartbeat
    ``interval_s`` (of its explicit heartbeats, else the connectors' default), the
    ``misses`` (whole intervals elapsed since ``last`` beyond the first) and whether it
    is ``healthy`` (fewer than 3 misses)."""
    q = ResourceStateQueries(ctx.store)
    p = Page(page, items_per_page)
    rows, total = await run_query(q.runners, ctx.clock(), p)
    data = []
    for r in rows:
        last, first = r.pop("last_us"), r.pop("first_us")
        data.append(
            {
                "runner": r.pop("runner"),
                "last": format_time(last, epoch),
                "first": format_time(first, epoch),
                **r,
            }
        )
    return _listing(data, p, total)
