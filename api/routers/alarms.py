"""Alarms: list, acknowledge, discard, annotate (the rules: ``alarm_rules``).

Alarms are raised and cleared by the engine (``pipeline.alarms``); what users do to
them — acknowledge, discard, annotate — is an AlarmEvent appended to the ``alarms``
topic like every other step, and the answer comes once the projection holds it
(``ctx.wait_applied``), so the next read sees it. Checks against the current alarm
(does it exist? is it discarded?) run under a per-alarm lock of this process; across
processes the fold decides by log order and refuses the later of two conflicting steps
(a dead letter), which this API reports as 409 when it reads the alarm back.

Management status: every alarm starts ``pending`` (also when its rule does not require
an acknowledgement: ``requires_ack`` only keeps a cleared alarm ``open``), becomes
``acknowledged`` once, and ``discarded`` is final. Acknowledging an acknowledged or a
discarded alarm, and discarding a discarded one, answer 409; annotations are accepted
in any status.

Batch acknowledge/discard act on each id on its own: the answer lists one result per
id given, in order (``status`` 200, 404 or 409, with ``error``), and is 200 when every
item succeeded, 207 (Multi-Status) when any failed. An id given twice is acted on once;
the repeat reports 409 like a second request would.

The rule routes are ``alarm_rules`` (included in this router, listed after the alarm
routes); what both share (queries, append, JSON shapes, the list filter) is
``alarm_common``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import replace
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from millrace.api import models
from millrace.api.audit import audit_note
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, operator, viewer
from millrace.api.errors import ApiError
from millrace.api.models import errors
from millrace.api.pagination import page_meta
from millrace.api.responses import JsonResponse
from millrace.api.routers import alarm_rules
from millrace.api.routers.alarm_common import (
    alarm_filter,
    alarm_json,
    annotation_json,
    append,
    queries,
)
from millrace.api.routers.identities import actor, run_query
from millrace.api.routers.signals import EpochQ
from millrace.api.routing import StrictRoute
from millrace.api.users.scope import allows, within
from millrace.pipeline.alarms.steps import (
    ACKNOWLEDGE,
    ANNOTATE,
    DISCARD,
    STATUS_AFTER,
    landed,
    refusal,
    step_event,
)
from millrace.projections.alarms import AlarmFilter

router = APIRouter(tags=["alarms"], route_class=StrictRoute)

ALARM_ID_PATTERN = r"^[^/]{1,256}$"
AlarmIdPath = Annotated[str, Path(pattern=ALARM_ID_PATTERN, description="alarm id")]
Note = Annotated[str | None, Field(max_length=4096)]
MAX_BATCH = 1000


_ACTION = {ACKNOWLEDGE: "acknowledge", DISCARD: "discard", ANNOTATE: "annotate"}


class Sort(StrEnum):
    creation_time = "creation_time"
    creation_time_desc = "-creation_time"
    priority = "priority"
    priority_desc = "-priority"


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Note = None


class AnnotationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., min_length=1, max_length=4096)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[str, Field(min_length=1, max_length=256, pattern=ALARM_ID_PATTERN)]] = (
        Field(..., min_length=1, max_length=MAX_BATCH)
    )
    note: Note = None


# -- writes -------------------------------------------------------------------------------


def not_found(alarm_id: str) -> ApiError:
    return ApiError(404, "not_found", f"alarm {alarm_id!r} not found")


def _lock_key(alarm_id: str) -> str:
    return f"alarm:{alarm_id}"


async def require_alarm(ctx: AppContext, alarm_id: str, principal: Principal) -> dict[str, Any]:
    """The alarm; 404 when there is none, or when it is of an identity outside the
    caller's scope (as if it did not exist)."""
    alarm = await run_query(queries(ctx).get, alarm_id)
    if alarm is None or not allows(principal, alarm["identity"]):
        raise not_found(alarm_id)
    return dict(alarm)


async def _step(
    request: Request,
    ctx: AppContext,
    alarm_id: str,
    kind: str,
    principal: Principal,
    note: str | None,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Apply one step to one alarm: (alarm before, alarm after, the step's time);
    404/409 as due."""
    user = actor(principal)
    async with ctx.lock(_lock_key(alarm_id)):
        before = await require_alarm(ctx, alarm_id, principal)
        problem = refusal(before, kind)
        if problem is not None:
            raise ApiError(409, "conflict", problem)
        ts = ctx.clock()
        applied = await append(ctx, [(alarm_id, step_event(before, kind, ts, user, note))])
        after = await require_alarm(ctx, alarm_id, principal)
    if kind in STATUS_AFTER and applied and not landed(after, kind, ts, user):
        raise ApiError(409, "conflict", f"alarm {alarm_id!r} was changed by another request")
    audit_note(
        request,
        action=_ACTION[kind],
        target_type="alarm",
        target_id=alarm_id,
        before=alarm_json(before),
        after=alarm_json(after),
    )
    return before, after, ts


async def _batch(
    request: Request, ctx: AppContext, body: BatchIn, kind: str, principal: Principal
) -> JsonResponse:
    user = actor(principal)
    unique = sorted(set(body.ids))
    results: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        for alarm_id in unique:  # sorted: two batches never wait for each other in a cycle
            await stack.enter_async_context(ctx.lock(_lock_key(alarm_id)))
        found = await run_query(queries(ctx).get_many, unique)
        # an alarm outside the caller's scope is "not found", like one that never was
        before = {k: a for k, a in found.items() if allows(principal, a["identity"])}
        current = dict(before)
        ts = ctx.clock()
        events: list[tuple[str, dict[str, Any]]] = []
        for alarm_id in body.ids:
            alarm = current.get(alarm_id)
            if alarm is None:
                results.append({"id": alarm_id, "status": 404, "error": "alarm not found"})
                continue
            problem = refusal(alarm, kind)
            if problem is not None:
                results.append({"id": alarm_id, "status": 409, "error": problem})
                continue
            events.append((alarm_id, step_event(alarm, kind, ts, user, body.note)))
            current[alarm_id] = {**alarm, "mgmt_status": STATUS_AFTER[kind]}
            results.append({"id": alarm_id, "status": 200, "error": None})
        applied = await append(ctx, events)
        done = [r["id"] for r in results if r["status"] == 200]
        after = await run_query(queries(ctx).get_many, done) if done else {}
    for r in results:
        if r["status"] != 200:
            # a refused item is an audited attempt too, with its outcome
            audit_note(
                request,
                action=_ACTION[kind],
                target_type="alarm",
                target_id=r["id"],
                before=alarm_json(before[r["id"]]) if r["id"] in before else None,
                status="not_found" if r["status"] == 404 else "conflict",
            )
            continue
        alarm_id = r["id"]
        now = after.get(alarm_id)
        if applied and not landed(now, kind, ts, user):
            r.update(status=409, error=f"alarm {alarm_id!r} was changed by another request")
            continue
        audit_note(
            request,
            action=_ACTION[kind],
            target_type="alarm",
            target_id=alarm_id,
            before=alarm_json(before[alarm_id]),
            after=alarm_json(now) if now is not None else None,
        )
    ok = sum(1 for r in results if r["status"] == 200)
    return JsonResponse(
        {"data": results, "meta": {"succeeded": ok, "failed": len(results) - ok}},
        status_code=200 if ok == len(results) else 207,
    )


# -- alarm routes -------------------------------------------------------------------------


@router.get("/alarms", summary="List alarms", response_model=models.AlarmPage)
async def list_alarms(
    f: AlarmFilter = Depends(alarm_filter),
    sort: Annotated[Sort, Query(description="creation_time, priority; - for descending")] = (
        Sort.creation_time_desc
    ),
    limit: Annotated[int, Query(ge=1, le=1000, description="rows per page")] = 100,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    continuation_token: Annotated[
        str | None,
        Query(max_length=2048, description="continue after the page that returned it"),
    ] = None,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    """Alarms matching every filter given, sorted (ties on the alarm id). Page by
    ``page`` or — stable while new alarms arrive — by the ``continuation_token`` of
    the previous answer (``page`` is then ignored); a null token means the end. A
    scoped caller sees the alarms of the identities in its scope only."""
    f = replace(f, within=within(principal))
    token = continuation_token or None
    res = await run_query(queries(ctx).list, f, sort.value, limit, page, token)
    return JsonResponse(
        {
            "data": [alarm_json(a, epoch) for a in res.rows],
            "meta": {
                "pagination": page_meta(
                    None if token else page, limit, len(res.rows), res.total, res.more
                ),
                "continuation_token": res.token,
            },
        }
    )


@router.post(
    "/alarms/batch/acknowledge",
    summary="Acknowledge several alarms",
    response_model=models.BatchResult,
    responses={207: {"model": models.BatchResult, "description": "Some items failed"}},
)
async def batch_acknowledge(
    request: Request,
    body: BatchIn,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """One result per id (200, 404 unknown, 409 not pending); 207 when any failed."""
    return await _batch(request, ctx, body, ACKNOWLEDGE, principal)


@router.post(
    "/alarms/batch/discard",
    summary="Discard several alarms",
    response_model=models.BatchResult,
    responses={207: {"model": models.BatchResult, "description": "Some items failed"}},
)
async def batch_discard(
    request: Request,
    body: BatchIn,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """One result per id (200, 404 unknown, 409 already discarded); 207 when any failed."""
    return await _batch(request, ctx, body, DISCARD, principal)


@router.get(
    "/alarms/{alarm_id}",
    summary="Get an alarm",
    response_model=models.AlarmOut,
    responses=errors(404),
)
async def get_alarm(
    alarm_id: AlarmIdPath,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    return JsonResponse(alarm_json(await require_alarm(ctx, alarm_id, principal), epoch))


@router.post(
    "/alarms/{alarm_id}/acknowledge",
    summary="Acknowledge an alarm",
    response_model=models.AlarmOut,
    responses=errors(404, 409, s409="not pending"),
)
async def acknowledge_alarm(
    request: Request,
    alarm_id: AlarmIdPath,
    body: Annotated[NoteIn | None, Body()] = None,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """Pending -> acknowledged, with who, when and the optional note; 409 when the
    alarm is already acknowledged or discarded."""
    note = body.note if body is not None else None
    _, after, _ = await _step(request, ctx, alarm_id, ACKNOWLEDGE, principal, note)
    return JsonResponse(alarm_json(after, epoch))


@router.post(
    "/alarms/{alarm_id}/discard",
    summary="Discard an alarm",
    response_model=models.AlarmOut,
    responses=errors(404, 409, s409="already discarded"),
)
async def discard_alarm(
    request: Request,
    alarm_id: AlarmIdPath,
    body: Annotated[NoteIn | None, Body()] = None,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """Any status -> discarded (final); 409 when it already is."""
    note = body.note if body is not None else None
    _, after, _ = await _step(request, ctx, alarm_id, DISCARD, principal, note)
    return JsonResponse(alarm_json(after, epoch))


@router.post(
    "/alarms/{alarm_id}/annotations",
    status_code=201,
    summary="Annotate an alarm",
    response_model=models.AnnotationOut,
    responses=errors(404),
)
async def annotate_alarm(
    request: Request,
    alarm_id: AlarmIdPath,
    body: AnnotationIn,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """Append a note (who, when, text); ``seq`` is its place among the alarm's notes."""
    _, after, ts = await _step(request, ctx, alarm_id, ANNOTATE, principal, body.text)
    out = {
        "alarm_id": alarm_id,
        "seq": after["annotation_count"],
        "ts_us": ts,
        "user": actor(principal),
        "text": body.text,
    }
    return JsonResponse(annotation_json(out, epoch), status_code=201)


@router.get(
    "/alarms/{alarm_id}/annotations",
    summary="Annotations of an alarm, in order",
    response_model=models.Page[models.AnnotationOut],
    responses=errors(404),
)
async def list_annotations(
    alarm_id: AlarmIdPath,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    await require_alarm(ctx, alarm_id, principal)
    rows, total = await run_query(queries(ctx).annotations, alarm_id, limit, (page - 1) * limit)
    return JsonResponse(
        {
            "data": [annotation_json(n, epoch) for n in rows],
            "meta": {"pagination": page_meta(page, limit, len(rows), total, page * limit < total)},
        }
    )


# the rule routes, after the alarm routes as they always were listed
router.include_router(alarm_rules.router)
