"""The connectors running in this process: state, info and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, viewer
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
