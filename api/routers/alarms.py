"""Alarms and alarm rules: list, acknowledge, discard, annotate; define rules.

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

Rules are stored as RULE_DEFINED / RULE_REMOVED events (key ``rule:<id>``). An invalid
rule answers 400 listing every violation with its field (``low`` when low >= high).
Rule JSON is the definition plus the read-only ``last_update_time`` and
``updated_by``, which a PUT may send back (they are ignored).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from millrace.api import models
from millrace.api.audit import audit_note
from millrace.api.auth import Principal
from millrace.api.context import AppContext, admin, context, operator, viewer
from millrace.api.errors import ApiError, bad_request
from millrace.api.models import errors
from millrace.api.responses import JsonResponse
from millrace.api.routers.identities import actor, run_query
from millrace.api.routers.signals import EndTime, EpochQ, StartTime, _time_range
from millrace.api.routing import StrictRoute
from millrace.api.timeparams import Epoch, format_time
from millrace.pipeline.alarms.rules import (
    RULE_ID_RE,
    RULE_KEY_PREFIX,
    AlarmRule,
    rule_event,
    rule_problems,
)
from millrace.pipeline.alarms.steps import (
    ACKNOWLEDGE,
    ANNOTATE,
    DISCARD,
    STATUS_AFTER,
    landed,
    refusal,
    step_event,
)
from millrace.pipeline.topics import ALARMS
from millrace.projections.alarms import AlarmFilter, AlarmQueries

router = APIRouter(tags=["alarms"], route_class=StrictRoute)

ALARM_ID_PATTERN = r"^[^/]{1,256}$"
AlarmIdPath = Annotated[str, Path(pattern=ALARM_ID_PATTERN, description="alarm id")]
RuleIdPath = Annotated[str, Path(pattern=RULE_ID_RE.pattern, description="rule id")]
Note = Annotated[str | None, Field(max_length=4096)]
MAX_BATCH = 1000
#: rule JSON fields the API adds; ignored when sent back
READ_ONLY_RULE_FIELDS = ("last_update_time", "updated_by")


#: the rule body is parsed by hand (400 listing every violation); document it as a rule
def _rule_body_schema() -> dict[str, Any]:
    """AlarmRule's schema, with what each kind needs (its model validator) spelled out."""
    schema = AlarmRule.model_json_schema()
    for name in READ_ONLY_RULE_FIELDS:
        schema["properties"][name] = {"description": "read-only: accepted and ignored"}
    signal = {"type": "string", "minLength": 1, "maxLength": 128}

    def kind(name: str, *needs: str, **extra: Any) -> dict[str, Any]:
        props: dict[str, Any] = {"kind": {"const": name}}
        required = list(needs)
        if name != "resource_deviation":
            props["signal"] = signal
            required.append("signal")
        for field in needs:
            props.setdefault(field, {"not": {"type": "null"}})
        return {"properties": props, "required": required, **extra}

    schema["oneOf"] = [
        kind("limit", anyOf=[{"required": ["high"]}, {"required": ["low"]}]),
        kind("rate_of_change", "max_rate"),
        kind("stale", "timeout_s"),
        kind("equals", "value"),
        kind("deviation"),
        kind("resource_deviation"),
    ]
    return schema


RULE_BODY = {
    "requestBody": {
        "content": {"application/json": {"schema": _rule_body_schema()}},
        "required": True,
    }
}

_ACTION = {ACKNOWLEDGE: "acknowledge", DISCARD: "discard", ANNOTATE: "annotate"}


class Sort(StrEnum):
    creation_time = "creation_time"
    creation_time_desc = "-creation_time"
    priority = "priority"
    priority_desc = "-priority"


class AlarmState(StrEnum):
    active = "active"
    cleared = "cleared"


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


def queries(ctx: AppContext) -> AlarmQueries:
    return AlarmQueries(ctx.store)


# -- JSON ---------------------------------------------------------------------------------


def _time(us: int | None, epoch: Epoch | None) -> int | float | str | None:
    return None if us is None else format_time(us, epoch)


def alarm_json(a: dict[str, Any], epoch: Epoch | None = None) -> dict[str, Any]:
    """An alarm of ``projections.alarms`` as the API shows it."""
    return {
        "alarm_id": a["alarm_id"],
        "rule_id": a["rule_id"],
        "type": a["type"],
        "identity": a["identity"],
        "signal": a["signal"],
        "priority": a["priority"],
        "message": a["message"],
        "trigger_value": a["trigger_value"],
        "state": a["state"],
        "creation_time": _time(a["raised_us"], epoch),
        "clear_time": _time(a["cleared_us"], epoch),
        "clear_value": a["clear_value"],
        "requires_ack": a["requires_ack"],
        "open": a["open"],
        "management": {
            "status": a["mgmt_status"],
            "acknowledged_by": a["ack_user"],
            "acknowledged_time": _time(a["ack_us"], epoch),
            "acknowledge_note": a["ack_note"],
            "discarded_by": a["discard_user"],
            "discarded_time": _time(a["discard_us"], epoch),
            "discard_note": a["discard_note"],
        },
        "annotation_count": a["annotation_count"],
        "last_update_time": _time(a["updated_us"], epoch),
    }


def annotation_json(n: dict[str, Any], epoch: Epoch | None = None) -> dict[str, Any]:
    return {
        "alarm_id": n["alarm_id"],
        "seq": n["seq"],
        "time": _time(n["ts_us"], epoch),
        "user": n["user"],
        "text": n["text"],
    }


def rule_json(r: dict[str, Any], epoch: Epoch | None = None) -> dict[str, Any]:
    return {
        **r["definition"],
        "last_update_time": _time(r["updated_us"], epoch),
        "updated_by": r["updated_by"],
    }


def _pagination(page: int | None, limit: int, rows: int, total: int, more: bool) -> dict[str, Any]:
    return {
        "page": page,
        "limit": limit,
        "rows_in_page": rows,
        "next_page": page + 1 if page is not None and more else None,
        "total_rows": total,
        "total_pages": (total + limit - 1) // limit,
    }


# -- filters ------------------------------------------------------------------------------


def _split(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v.strip() for raw in values for v in raw.split(",") if v.strip()))


def _priority_range(raw: str | None) -> tuple[int, int] | None:
    if raw is None or raw == "":
        return None
    parts = raw.split(",")
    try:
        lo, hi = (int(p.strip()) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or hi is None:
        raise bad_request("priority_range", f"expected lo,hi (integers 0..255), got {raw!r}")
    if not 0 <= lo <= hi <= 255:
        raise bad_request("priority_range", f"need 0 <= lo <= hi <= 255, got {lo},{hi}")
    return lo, hi


def alarm_filter(
    identity: Annotated[
        list[str], Query(description="device identity, exact (repeat or comma separated)")
    ] = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    signal: Annotated[list[str], Query(description="signal name (repeat or comma)")] = [],  # noqa: B006
    type: Annotated[list[str], Query(description="alarm type name (repeat or comma)")] = [],  # noqa: B006
    priority_range: Annotated[
        str | None, Query(description="lo,hi: priorities from lo to hi inclusive (0..255)")
    ] = None,
    state: Annotated[AlarmState | None, Query(description="active or cleared")] = None,
    include_acknowledged: Annotated[
        bool | None,
        Query(description="true: only acknowledged alarms; false: none of them; absent: all"),
    ] = None,
    include_discarded: Annotated[
        bool | None,
        Query(description="true: only discarded alarms; false: none of them; absent: all"),
    ] = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    epoch: EpochQ = None,
) -> AlarmFilter:
    """The list filters of alarms (raised time between start_time and end_time)."""
    tr = _time_range(start_time, end_time, epoch)
    return AlarmFilter(
        identities=_split(identity),
        signals=_split(signal),
        types=_split(type),
        priority_range=_priority_range(priority_range),
        state=state.value if state is not None else None,
        acknowledged=include_acknowledged,
        discarded=include_discarded,
        start_us=tr.start_us,
        end_us=tr.end_us,
    )


# -- writes -------------------------------------------------------------------------------


def not_found(alarm_id: str) -> ApiError:
    return ApiError(404, "not_found", f"alarm {alarm_id!r} not found")


def _lock_key(alarm_id: str) -> str:
    return f"alarm:{alarm_id}"


async def append(ctx: AppContext, events: list[tuple[str, dict[str, Any]]]) -> bool:
    """Append ``(key, event)`` pairs to the alarms topic and wait until the projections
    hold them; False when that could not be confirmed in time."""
    if not events:
        return True
    await ctx.publisher.publish(ALARMS, events)
    return await ctx.wait_applied(ALARMS)


async def require_alarm(ctx: AppContext, alarm_id: str) -> dict[str, Any]:
    alarm = await run_query(queries(ctx).get, alarm_id)
    if alarm is None:
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
        before = await require_alarm(ctx, alarm_id)
        problem = refusal(before, kind)
        if problem is not None:
            raise ApiError(409, "conflict", problem)
        ts = ctx.clock()
        applied = await append(ctx, [(alarm_id, step_event(before, kind, ts, user, note))])
        after = await require_alarm(ctx, alarm_id)
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
        before = await run_query(queries(ctx).get_many, unique)
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
    _: Principal = Depends(viewer),
) -> JsonResponse:
    """Alarms matching every filter given, sorted (ties on the alarm id). Page by
    ``page`` or — stable while new alarms arrive — by the ``continuation_token`` of
    the previous answer (``page`` is then ignored); a null token means the end."""
    token = continuation_token or None
    res = await run_query(queries(ctx).list, f, sort.value, limit, page, token)
    return JsonResponse(
        {
            "data": [alarm_json(a, epoch) for a in res.rows],
            "meta": {
                "pagination": _pagination(
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
    _: Principal = Depends(viewer),
) -> JsonResponse:
    return JsonResponse(alarm_json(await require_alarm(ctx, alarm_id), epoch))


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
    _: Principal = Depends(viewer),
) -> JsonResponse:
    await require_alarm(ctx, alarm_id)
    rows, total = await run_query(queries(ctx).annotations, alarm_id, limit, (page - 1) * limit)
    return JsonResponse(
        {
            "data": [annotation_json(n, epoch) for n in rows],
            "meta": {
                "pagination": _pagination(page, limit, len(rows), total, page * limit < total)
            },
        }
    )


# -- rule routes --------------------------------------------------------------------------


def parse_rule_body(body: dict[str, Any], rule_id: str | None = None) -> AlarmRule:
    """The rule in a request body, or 400 listing every violation with its field."""
    data = {k: v for k, v in body.items() if k not in READ_ONLY_RULE_FIELDS}
    if rule_id is not None:
        if "id" in data and data["id"] != rule_id:
            raise bad_request("id", f"{data['id']!r} is not the rule id of the path {rule_id!r}")
        data["id"] = rule_id
    problems = rule_problems(data)
    if problems:
        field, message = problems[0]
        raise ApiError(
            400,
            "invalid_rule",
            f"{field}: {message}",
            [{"field": f, "message": m} for f, m in problems],
        )
    return AlarmRule.model_validate(data)


async def _require_rule(ctx: AppContext, rule_id: str) -> dict[str, Any]:
    rule = await run_query(queries(ctx).rule, rule_id)
    if rule is None:
        raise ApiError(404, "not_found", f"alarm rule {rule_id!r} not found")
    return dict(rule)


async def _write_rule(
    ctx: AppContext, rule_id: str, rule: AlarmRule | None, principal: Principal
) -> dict[str, Any] | None:
    """Append the definition (or removal) and return the stored rule after it."""
    ts = ctx.clock()
    event = rule_event(rule, rule_id, ts, actor(principal))
    await append(ctx, [(RULE_KEY_PREFIX + rule_id, event)])
    stored = await run_query(queries(ctx).rule, rule_id)
    if rule is not None and stored is None:  # not applied yet (wait timed out)
        stored = {
            "rule_id": rule_id,
            "definition": rule.model_dump(mode="json"),
            "updated_us": ts,
            "updated_by": actor(principal),
        }
    return stored


@router.get(
    "/alarm-rules", summary="List alarm rules", response_model=models.Page[models.AlarmRuleOut]
)
async def list_rules(
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    rows, total = await run_query(queries(ctx).rules, limit, (page - 1) * limit)
    return JsonResponse(
        {
            "data": [rule_json(r, epoch) for r in rows],
            "meta": {
                "pagination": _pagination(page, limit, len(rows), total, page * limit < total)
            },
        }
    )


@router.post(
    "/alarm-rules",
    status_code=201,
    summary="Create an alarm rule",
    response_model=models.AlarmRuleOut,
    responses=errors(409, s409="the rule id is taken"),
    openapi_extra=RULE_BODY,
)
async def create_rule(
    request: Request,
    body: Annotated[dict[str, Any], Body(description="an alarm rule (pipeline.alarms.rules)")],
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(admin),
) -> JsonResponse:
    """Define a new rule; 409 when the id is taken, 400 naming every bad field."""
    rule = parse_rule_body(body)
    async with ctx.lock(RULE_KEY_PREFIX + rule.id):
        if await run_query(queries(ctx).rule, rule.id) is not None:
            raise ApiError(409, "conflict", f"alarm rule {rule.id!r} already exists")
        stored = await _write_rule(ctx, rule.id, rule, principal)
    assert stored is not None
    out = rule_json(stored, epoch)
    audit_note(
        request,
        action="create",
        target_type="alarm_rule",
        target_id=rule.id,
        before=None,
        after=rule_json(stored),
    )
    return JsonResponse(out, status_code=201)


@router.get(
    "/alarm-rules/{rule_id}",
    summary="Get an alarm rule",
    response_model=models.AlarmRuleOut,
    responses=errors(404),
)
async def get_rule(
    rule_id: RuleIdPath,
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    return JsonResponse(rule_json(await _require_rule(ctx, rule_id), epoch))


@router.put(
    "/alarm-rules/{rule_id}",
    summary="Replace an alarm rule",
    response_model=models.AlarmRuleOut,
    responses=errors(404),
    openapi_extra=RULE_BODY,
)
async def replace_rule(
    request: Request,
    rule_id: RuleIdPath,
    body: Annotated[dict[str, Any], Body(description="the whole rule; id may be omitted")],
    epoch: EpochQ = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(admin),
) -> JsonResponse:
    """Replace the definition of an existing rule (404 when there is none: create
    with POST)."""
    rule = parse_rule_body(body, rule_id)
    async with ctx.lock(RULE_KEY_PREFIX + rule_id):
        before = await _require_rule(ctx, rule_id)
        stored = await _write_rule(ctx, rule_id, rule, principal)
    assert stored is not None
    audit_note(
        request,
        action="update",
        target_type="alarm_rule",
        target_id=rule_id,
        before=rule_json(before),
        after=rule_json(stored),
    )
    return JsonResponse(rule_json(stored, epoch))


@router.delete(
    "/alarm-rules/{rule_id}", status_code=204, summary="Remove an alarm rule", responses=errors(404)
)
async def delete_rule(
    request: Request,
    rule_id: RuleIdPath,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(admin),
) -> Response:
    """Remove the rule; the alarms it raised keep their history."""
    async with ctx.lock(RULE_KEY_PREFIX + rule_id):
        before = await _require_rule(ctx, rule_id)
        await _write_rule(ctx, rule_id, None, principal)
    audit_note(
        request,
        action="delete",
        target_type="alarm_rule",
        target_id=rule_id,
        before=rule_json(before),
        after=None,
    )
    return Response(status_code=204)
