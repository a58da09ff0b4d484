"""Resource definitions: format, unit, settable, allowed values, timeout, retention.

Stored as events of the registry key ``"*"`` on the identity topic; the projection
``millrace.resource_defs`` follows. Telemetry that breaks a definition is refused at
the HTTP edge (400 naming the resource) and dead-lettered when a connector brings it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from starlette.responses import Response

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, admin, context, viewer
from millrace.api.errors import ApiError
from millrace.api.models import errors
from millrace.api.registry import definition_event, emit
from millrace.api.responses import JsonResponse
from millrace.api.routers.identities import actor
from millrace.api.routing import StrictRoute
from millrace.pipeline.identities.resources import ResourceDefinition

router = APIRouter(tags=["resources"], route_class=StrictRoute)

NamePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")]


def _out(name: str, d: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        **d["definition"].model_dump(),
        "updated_us": d["updated_us"],
        "updated_by": d["updated_by"],
    }


async def _defs(ctx: AppContext) -> dict[str, dict[str, Any]]:
    return dict(await asyncio.to_thread(ctx.queries.definitions))


@router.get("/resources", summary="List resource definitions", response_model=models.ResourceList)
async def list_resources(
    ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    defs = await _defs(ctx)
    return JsonResponse({"items": [_out(n, defs[n]) for n in sorted(defs)]})


@router.get(
    "/resources/{name}", summary="Get a resource definition", response_model=models.ResourceOut
)
async def get_resource(
    name: NamePath, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    defs = await _defs(ctx)
    if name not in defs:
        raise ApiError(404, "not_found", f"resource {name!r} is not defined")
    return JsonResponse(_out(name, defs[name]))


async def _put(
    ctx: AppContext, name: str, definition: ResourceDefinition, principal: Principal, create: bool
) -> JsonResponse:
    async with ctx.lock(f"resource:{name}"):
        exists = name in await _defs(ctx)
        if create and exists:
            raise ApiError(409, "conflict", f"resource {name!r} is already defined")
        await emit(ctx, [definition_event(ctx, name, definition, actor(principal))])
    defs = await _defs(ctx)
    body = _out(name, defs[name]) if name in defs else {"name": name, **definition.model_dump()}
    return JsonResponse(body, status_code=201 if not exists else 200)


@router.post(
    "/resources/{name}",
    status_code=201,
    summary="Define a resource",
    response_model=models.ResourceOut,
    responses=errors(409, s409="the resource is defined"),
)
async def create_resource(
    name: NamePath,
    definition: Annotated[ResourceDefinition, Body()],
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(admin),
) -> JsonResponse:
    return await _put(ctx, name, definition, principal, create=True)


@router.put(
    "/resources/{name}",
    summary="Define or replace a resource definition",
    response_model=models.ResourceOut,
    responses={201: {"model": models.ResourceOut, "description": "Defined (it was not)"}},
)
async def replace_resource(
    name: NamePath,
    definition: Annotated[ResourceDefinition, Body()],
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(admin),
) -> JsonResponse:
    return await _put(ctx, name, definition, principal, create=False)


@router.delete(
    "/resources/{name}",
    status_code=204,
    summary="Remove a resource definition",
    responses=errors(404),
)
async def delete_resource(
    name: NamePath, ctx: AppContext = Depends(context), principal: Principal = Depends(admin)
) -> Response:
    async with ctx.lock(f"resource:{name}"):
        if name not in await _defs(ctx):
            raise ApiError(404, "not_found", f"resource {name!r} is not defined")
        await emit(ctx, [definition_event(ctx, name, None, actor(principal))])
    return Response(status_code=204)
