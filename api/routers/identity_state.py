"""Desired (set) and reported state of an identity (``/identities/{identity}/state``).

Included in the ``identities`` router after the tag routes, so paths, order and the
OpenAPI document are those of the one router it was cut from.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends
from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, operator, viewer
from millrace.api.errors import ApiError, bad_request
from millrace.api.registry import (
    definitions,
    emit,
    event,
    require_identity,
    to_json,
)
from millrace.api.responses import JsonResponse
from millrace.api.routers.identity_common import IdentityPath, actor
from millrace.api.routing import StrictRoute
from millrace.pipeline.identities import requests
from millrace.pipeline.topics import COMMANDS, TELEMETRY

router = APIRouter(route_class=StrictRoute)

Value = StrictBool | StrictInt | StrictFloat | StrictStr


@router.get(
    "/identities/{identity}/state",
    summary="Desired (set) and reported state",
    response_model=dict[str, models.IdentityResourceState],
)
async def get_state(
    identity: IdentityPath, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    return JsonResponse((await require_identity(ctx, identity))["state"])


@router.post(
    "/identities/{identity}/state",
    summary="Set desired values of settable resources",
    status_code=202,
    response_model=models.StateSet,
)
async def set_state(
    identity: IdentityPath,
    body: Annotated[dict[str, Value], Body(description="resource -> desired value")],
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """With sync on, each value becomes a Command for the identity's connector and stays
    pending until the device reports it; with sync off, set and reported change
    together."""
    defs = await definitions(ctx) if body else {}
    bad = requests.state_set_problem(defs, body)
    if bad is not None:
        raise bad_request(bad[0], bad[1])
    who = actor(principal)
    async with ctx.lock(identity):
        row = await require_identity(ctx, identity)
        refused = requests.locked_refusal(row)
        if refused is not None:
            raise ApiError(403, "identity_locked", refused)
        set_event = event(
            ctx, identity, "STATE_SET", who, state={k: to_json(v) for k, v in body.items()}
        )
        await emit(ctx, [set_event])
        now = ctx.clock()
        plan = requests.plan_state_set(
            identity,
            body,
            defs,
            now,
            who,
            ctx.registry.command_timeout_s,
            set_event["event_id"],
        )
        commands = plan.commands
        if commands:
            await ctx.publisher.publish(COMMANDS, [(identity, c) for c in commands])
        if plan.reported is not None:
            await emit(ctx, [plan.reported], TELEMETRY)
        if plan.acknowledged is not None:
            await emit(ctx, [plan.acknowledged])
    state = (await require_identity(ctx, identity))["state"]
    return JsonResponse(
        {"state": state, "commands": [c["command_id"] for c in commands]}, status_code=202
    )
