"""The connectors: state, info and metrics, and start/stop/restart.

In ``millrace run`` they run in the API's process; in the distributed deployment in
``millrace connect``: the list is what they reported (the status topic), and a control
request is carried by its audit event, which every connect process follows
(``connectors.control``)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request

from millrace.api import models
from millrace.api.audit import audit_note
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, operator, viewer
from millrace.api.errors import ApiError
from millrace.api.models import errors
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute

router = APIRouter(tags=["connectors"], route_class=StrictRoute)


@router.get(
    "/connectors",
    summary="Connectors and their metrics",
    response_model=models.ConnectorList,
)
async def list_connectors(
    ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    """Each connection of the commissioning file: desired and current state, the
    last info (e.g. "Host not reachable"), and metrics (readings/s, errors,
    reconnects, buffered events, ...)."""
    return JsonResponse({"data": await asyncio.to_thread(ctx.connectors)})


@router.get(
    "/connectors/{name}",
    summary="One connector",
    response_model=models.ConnectorOut,
    responses=errors(404),
)
async def get_connector(
    name: str, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    return JsonResponse({"data": await _known(ctx, name)})


async def _known(ctx: AppContext, name: str) -> dict[str, Any]:
    for c in await asyncio.to_thread(ctx.connectors):
        if c["name"] == name:
            return c
    raise ApiError(
        404,
        "not_found",
        f"name: no connector {name!r}",
        details=[{"field": "name", "message": "unknown connector"}],
    )


@router.post(
    "/connectors/{name}/{action}",
    summary="Start, stop or restart a connector",
    response_model=models.ConnectorOut,
    responses={
        202: {
            "model": models.ConnectorOut,
            "description": "distributed: handed to the connect processes through the log",
        },
        **errors(403, 404),
    },
)
async def control_connector(
    name: str,
    action: Literal["start", "stop", "restart"],
    request: Request,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(operator),
) -> JsonResponse:
    """``stop`` ends its polling and connection (desired state stopped), ``start``
    starts it again, ``restart`` both; audited. Where the connectors run in this
    process (``millrace run``) the state after is answered (200). In the distributed
    deployment the audit event carries the request to the ``millrace connect`` that runs
    the connector: 202, with the last reported state and the desired state asked for;
    ``GET /connectors/{name}`` shows the connector's own report once it has acted.
    404 for a connector that neither runs here nor ever reported."""
    before = await _known(ctx, name)
    desired = "stopped" if action == "stop" else "running"
    if ctx.connector_control is None:
        after, status = {**before, "desired_state": desired, "requested": action}, 202
    else:
        found = await ctx.connector_control(name, action)
        if found is None:  # removed meanwhile
            raise ApiError(404, "not_found", f"name: no connector {name!r}")
        after, status = found, 200
    audit_note(
        request,
        action=action,
        target_type="connector",
        target_id=name,
        before={"desired_state": before["desired_state"]},
        after={"desired_state": after["desired_state"]},
    )
    return JsonResponse({"data": after}, status_code=status)
