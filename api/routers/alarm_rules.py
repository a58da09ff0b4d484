"""Alarm rules: list, create, get, replace, remove (``/alarm-rules``).

Rules are stored as RULE_DEFINED / RULE_REMOVED events (key ``rule:<id>``). An invalid
rule answers 400 listing every violation with its field (``low`` when low >= high).
Rule JSON is the definition plus the read-only ``last_update_time`` and
``updated_by``, which a PUT may send back (they are ignored).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from starlette.responses import Response

from millrace.api import models
from millrace.api.audit import audit_note
from millrace.api.auth import Principal
from millrace.api.context import AppContext, admin, context, viewer
from millrace.api.errors import ApiError, bad_request
from millrace.api.models import errors
from millrace.api.pagination import page_meta
from millrace.api.responses import JsonResponse
from millrace.api.routers.alarm_common import append, queries, rule_json
from millrace.api.routers.identities import actor, run_query
from millrace.api.routers.signals import EpochQ
from millrace.api.routing import StrictRoute
from millrace.pipeline.alarms.rules import (
    RULE_ID_RE,
    RULE_KEY_PREFIX,
    AlarmRule,
    rule_event,
    rule_problems,
)

router = APIRouter(route_class=StrictRoute)

RuleIdPath = Annotated[str, Path(pattern=RULE_ID_RE.pattern, description="rule id")]
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


async def _define(
    request: Request, ctx: AppContext, rule: AlarmRule, principal: Principal, *, replace: bool
) -> dict[str, Any]:
    """Create (409 when the id is taken) or replace (404 when there is no such rule)
    ``rule``, audited; the stored rule after it."""
    async with ctx.lock(RULE_KEY_PREFIX + rule.id):
        if replace:
            before: dict[str, Any] | None = await _require_rule(ctx, rule.id)
        elif await run_query(queries(ctx).rule, rule.id) is not None:
            raise ApiError(409, "conflict", f"alarm rule {rule.id!r} already exists")
        else:
            before = None
        stored = await _write_rule(ctx, rule.id, rule, principal)
    assert stored is not None
    _audit(request, "update" if replace else "create", rule.id, before, stored)
    return stored


def _audit(
    request: Request,
    action: str,
    rule_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    audit_note(
        request,
        action=action,
        target_type="alarm_rule",
        target_id=rule_id,
        before=None if before is None else rule_json(before),
        after=None if after is None else rule_json(after),
    )


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
            "meta": {"pagination": page_meta(page, limit, len(rows), total, page * limit < total)},
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
    stored = await _define(request, ctx, parse_rule_body(body), principal, replace=False)
    return JsonResponse(rule_json(stored, epoch), status_code=201)


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
    stored = await _define(request, ctx, parse_rule_body(body, rule_id), principal, replace=True)
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
    _audit(request, "delete", rule_id, before, None)
    return Response(status_code=204)
