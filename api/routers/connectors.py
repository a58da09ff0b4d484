"""The connectors running in this process: state, info and metrics."""

from __future__ import annotations

from typing import Literal

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
    return JsonResponse({"data": ctx.connectors()})


@router.get(
    "/connectors/{name}",
    summary="One connector",
    response_model=models.ConnectorOut,
    responses=errors(404),
)
async def get_connector(
    name: str, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    for c in ctx.connectors():
        if c["name"] == name:
            return JsonResponse({"data": c})
    raise ApiError(404, "not_found", f"name: no connector {name!r}")


@router.post(
    "/connectors/{name}/{action}",
    summary="Start, stop or restart a connector",
    response_model=models.ConnectorOut,
    responses=errors(403, 404, 409),
)
async def control_connector(
    name: str,
    action: Literal["start", "stop", "restart"],
    request: Request,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(operator),
) -> JsonResponse:
    """``stop`` ends its polling and connection (desired state stopped), ``start``
    starts it again, ``restart`` both; audited. The state after is answered. 404 for
    a connector this process does not run; 409 where connectors run in other
    processes (the distributed deployment's ``millrace connect``)."""
    if ctx.connector_control is None:
        raise ApiError(409, "conflict", "name: connectors do not run in this process")
    before = next((c for c in ctx.connectors() if c["name"] == name), None)
    after = await ctx.connector_control(name, action)
    if after is None:
        raise ApiError(
            404,
            "not_found",
            f"name: no connector {name!r}",
            details=[{"field": "name", "message": "unknown connector"}],
        )
    audit_note(
        request,
        action=action,
        target_type="connector",
        target_id=name,
        before={"desired_state": before["desired_state"]} if before else None,
        after={"desired_state": after["desired_state"]},
    )
    return JsonResponse({"data": after})
