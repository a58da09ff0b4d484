"""The audit trail: who did what through the API, before and after."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, operator
from millrace.api.errors import ApiError, bad_request
from millrace.api.models import errors
from millrace.api.pagination import page_meta
from millrace.api.responses import JsonResponse
from millrace.api.routers.alarms import alarm_filter, alarm_json
from millrace.api.routers.identities import run_query
from millrace.api.routers.signals import EndTime, EpochQ, Page, StartTime, _time_range
from millrace.api.routing import StrictRoute
from millrace.api.timeparams import Epoch, format_time
from millrace.api.users.scope import within
from millrace.projections.activities import ActivityFilter, list_activities
from millrace.projections.alarms import AlarmFilter
from millrace.projections.audits import AuditFilter, get_audit, list_audits

router = APIRouter(tags=["audit"], route_class=StrictRoute)

ListParam = Annotated[str | None, Query(description="one value or a comma-separated list")]
AuditLimit = Annotated[int, Query(ge=1, le=1000, description="rows per page")]
SORTS: dict[str, Literal["asc", "desc"]] = {"creation_time": "asc", "-creation_time": "desc"}


def csv(raw: str | None, field: str, most: int = 100) -> list[str]:
    """A comma-separated query parameter as a list (empty when absent)."""
    values = [v.strip() for v in (raw or "").split(",") if v.strip()]
    if len(values) > most:
        raise bad_request(field, f"at most {most} values")
    return values


def audit_filter(
    actor: ListParam = None,
    action: ListParam = None,
    target_type: ListParam = None,
    target_id: ListParam = None,
    status: ListParam = None,
    failed: Annotated[
        bool | None, Query(description="true: only refused writes; false: only successful")
    ] = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    epoch: EpochQ = None,
) -> AuditFilter:
    return AuditFilter(
        actors=csv(actor, "actor"),
        actions=csv(action, "action"),
        target_types=csv(target_type, "target_type"),
        target_ids=csv(target_id, "target_id"),
        statuses=csv(status, "status"),
        failed=failed,
        time=_time_range(start_time, end_time, epoch),
    )


def audit_json(row: dict[str, Any], epoch: Epoch | None) -> dict[str, Any]:
    out = dict(row)
    out["creation_time"] = format_time(out.pop("ts_us"), epoch)
    return out


@router.get(
    "/audits", summary="Audit records of API writes", response_model=models.Page[models.AuditOut]
)
async def list_audit_records(
    f: AuditFilter = Depends(audit_filter),
    sort: Annotated[str, Query(description="creation_time or -creation_time")] = "-creation_time",
    epoch: EpochQ = None,
    limit: AuditLimit = 100,
    page: Page = 1,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """Every write through the API (identities, state, resources, alarm rules, alarm
    actions, keys) with who made it, the object before and after (credentials
    masked) and the outcome (`ok` or the error code of a refused write). A scoped
    caller sees the records about the identities in its scope only: writes to them
    and actions on their alarms."""
    if sort not in SORTS:
        raise bad_request("sort", f"choose from {', '.join(SORTS)}")
    f = replace(f, within=within(principal))
    rows, total = await asyncio.to_thread(
        list_audits, ctx.store, f, SORTS[sort], limit, (page - 1) * limit
    )
    data = [audit_json(r, epoch) for r in rows]
    return JsonResponse(
        {"data": data, "meta": {"pagination": page_meta(page, limit, len(data), total)}}
    )


@router.get(
    "/audits/{audit_id}",
    summary="One audit record",
    response_model=models.Data[models.AuditOut],
    responses=errors(404),
)
async def get_audit_record(
    audit_id: str,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    row = await asyncio.to_thread(get_audit, ctx.store, audit_id, within(principal))
    if row is None:
        raise ApiError(404, "not_found", f"audit_id: no audit record {audit_id!r}")
    return JsonResponse({"data": audit_json(row, epoch)})


# -- activities: alarms and audit records together ----------------------------------------


@router.get(
    "/activities",
    summary="Alarms and audit records together",
    response_model=models.Page[models.ActivityOut],
)
async def list_activities_route(
    alarms: AlarmFilter = Depends(alarm_filter),
    activity_type: ListParam = None,
    actor: ListParam = None,
    action: ListParam = None,
    target_type: ListParam = None,
    sort: Annotated[
        str, Query(description="creation_time, priority; - for descending")
    ] = "-creation_time",
    epoch: EpochQ = None,
    limit: AuditLimit = 100,
    page: Page = 1,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """The alarm list's filters plus `activity_type` (alarm, audit) and the audit
    filters `actor`, `action`, `target_type`. Alarm-only filters (signal, type,
    priority_range, state, include_*) select alarms only, audit-only filters audit
    records only; `identity` matches alarms of the identity and audit records whose
    target it is. A scoped caller sees what `/alarms` and `/audits` show it."""
    f = ActivityFilter(
        alarms=replace(alarms, within=within(principal)),
        actors=csv(actor, "actor"),
        actions=csv(action, "action"),
        target_types=csv(target_type, "target_type"),
        activity_types=csv(activity_type, "activity_type"),
    )
    rows, total = await run_query(list_activities, ctx.store, f, sort, limit, (page - 1) * limit)
    data = []
    for r in rows:
        item = {
            "activity_type": r["activity_type"],
            "id": r["id"],
            "creation_time": format_time(r["ts_us"], epoch),
            "priority": r["priority"],
        }
        if r.get("alarm") is not None:
            item["alarm"] = alarm_json(r["alarm"], epoch)
        if r.get("audit") is not None:
            item["audit"] = audit_json(r["audit"], epoch)
        data.append(item)
    return JsonResponse(
        {"data": data, "meta": {"pagination": page_meta(page, limit, len(data), total)}}
    )
