"""Services: commissioning files installed, updated, enabled, disabled and removed at
runtime. Every write is a ServiceEvent on the ``services`` topic; the connect role's
``services`` stage applies it to the connectors, the services projection answers the
reads (``projections.services``)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from millrace.api.audit import audit_note
from millrace.api.auth import Principal
from millrace.api.context import AppContext, admin, context, viewer
from millrace.api.errors import ApiError, bad_request
from millrace.api.models import errors
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.api.service_files import (
    ServiceFile,
    document_of,
    masked,
    read_service_file,
    validated,
)
from millrace.connectors.commissioning import Commissioning
from millrace.pipeline.events import identity_event, service_event
from millrace.pipeline.topics import IDENTITY, SERVICES
from millrace.projections.services import ServiceQueries

router = APIRouter(tags=["services"], route_class=StrictRoute)

_TEMPLATED = re.compile(r"[{}*+#?\[]")

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


class ServiceOut(BaseModel):
    data: dict[str, Any] = Field(
        description="id, description, enabled, status, counts; one service: its file "
        "(secrets masked) and resources with desired and current state"
    )


class ServiceList(BaseModel):
    data: list[dict[str, Any]]


def _summary(state: dict[str, Any], resources: list[dict[str, Any]]) -> dict[str, Any]:
    doc = document_of(state["text"])
    return {
        "id": state["service_id"],
        "description": state["description"],
        "enabled": bool(state["enabled"]),
        "status": state["status"],
        "revision": state["revision"],
        "runners": state["runners"],
        "parameters": {k: json.loads(v) for k, v in state["parameters"].items()},
        "connections": len(doc.get("connections") or {}),
        "endpoints": len(doc.get("endpoints") or []),
        "deviations": sum(1 for r in resources if r["deviated"]),
        "installed_us": state["installed_us"],
        "updated_us": state["updated_us"],
        "actor": state["actor"],
    }


async def _state(ctx: AppContext, service_id: str) -> dict[str, Any]:
    state = await asyncio.to_thread(ServiceQueries(ctx.store).service, service_id)
    if state is None:
        raise ApiError(
            404,
            "not_found",
            f"service_id: no service {service_id!r}",
            [{"field": "service_id", "message": "unknown service"}],
        )
    return state


async def _check_connections(ctx: AppContext, c: Commissioning) -> None:
    """409 when another service already has a connection of the same name (connectors
    are named by their connection across services)."""
    for other in await asyncio.to_thread(ServiceQueries(ctx.store).services):
        if other["service_id"] == c.service:
            continue
        taken = set(document_of(other["text"]).get("connections") or {}) & set(c.connections)
        if taken:
            name = sorted(taken)[0]
            raise ApiError(
                409,
                "conflict",
                f"$.connections.{name}: service {other['service_id']!r} has a connection "
                "of this name",
                [{"field": f"$.connections.{name}", "message": "name taken by another service"}],
            )


async def _append(
    ctx: AppContext, principal: Principal, sid: str, kind: str, file: ServiceFile | None = None
) -> None:
    extra: dict[str, Any] = {}
    if file is not None:
        doc = file.doc if isinstance(file.doc, dict) else {}
        extra = {
            "text": file.text,
            "parameters": file.parameters,
            "runners": file.runners,
            "description": str(doc.get("description") or ""),
        }
    event = service_event(sid, kind, actor=principal.key_id, **extra)
    await ctx.publisher.publish(SERVICES, [(sid, event)])
    await ctx.wait_applied(SERVICES)


async def _register_identities(ctx: AppContext, sid: str, c: Commissioning) -> None:
    """The identities the service's endpoints name, created in the registry (source:
    the service) when absent, so that their desired state can be set at once. A
    templated identity (``{1}``, wildcards) names no identity yet."""
    names = sorted({e.identity for e in c.endpoints if not _TEMPLATED.search(e.identity)})
    now = ctx.clock()
    missing = [n for n in names if await asyncio.to_thread(ctx.queries.get, n, now) is None]
    if not missing:
        return
    source = f"service:{sid}"
    events = [
        (n, identity_event(n, "CREATED", actor=source, attributes={"source": source}))
        for n in missing
    ]
    await ctx.publisher.publish(IDENTITY, events)
    await ctx.wait_applied(IDENTITY)
    ctx.ingest_gate.invalidate()  # registered now: they may post readings


async def _one(ctx: AppContext, sid: str) -> dict[str, Any]:
    state = await _state(ctx, sid)
    resources = await asyncio.to_thread(ServiceQueries(ctx.store).resources, sid)
    return {
        **_summary(state, resources),
        "file": masked(document_of(state["text"])),
        "resources": resources,
    }


@router.post(
    "/services",
    status_code=201,
    summary="Install a service (a commissioning file)",
    openapi_extra=_BODY,
    response_model=ServiceOut,
    responses=errors(400, 403, 409, 413),
)
async def install(
    request: Request, ctx: AppContext = Depends(context), principal: Principal = Depends(admin)
) -> JsonResponse:
    """The body is the file (YAML, or JSON: the document, or ``{"commissioning",
    "parameters", "runners"}``); parameter values also as ``?parameters={...}`` (JSON)
    and runners as ``?runner=NAME`` (repeatable; none: every runner). Validated as
    ``/config/validate`` does: 400 with every violation and its json_path; a missing
    required parameter or one of the wrong type is ``$.parameters.<name>``. 409 when
    the service id is installed already."""
    file = await read_service_file(request)
    c = validated(file)
    if await asyncio.to_thread(ServiceQueries(ctx.store).service, c.service) is not None:
        raise ApiError(
            409,
            "conflict",
            f"service: {c.service!r} is installed; PUT /services/{c.service} updates it",
            [{"field": "$.service", "message": "service id exists"}],
        )
    await _check_connections(ctx, c)
    await _append(ctx, principal, c.service, "installed", file)
    await _register_identities(ctx, c.service, c)
    audit_note(request, action="install", target_type="service", target_id=c.service)
    return JsonResponse({"data": await _one(ctx, c.service)}, status_code=201)


@router.get("/services", summary="Installed services", response_model=ServiceList)
async def list_services(
    ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    """Each service: id, description, enabled, status, counts of connections,
    endpoints and deviations."""
    q = ServiceQueries(ctx.store)
    states = await asyncio.to_thread(q.services)
    resources = await asyncio.to_thread(q.resources)
    out = [
        _summary(s, [r for r in resources if r["service_id"] == s["service_id"]]) for s in states
    ]
    return JsonResponse({"data": out})


@router.get(
    "/services/{service_id}",
    summary="One service: its file and resources",
    response_model=ServiceOut,
    responses=errors(403, 404),
)
async def get_service(
    service_id: str, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    """The summary, the file (secrets masked; ``${ENV}`` references shown) and its
    resources with desired and current state."""
    return JsonResponse({"data": await _one(ctx, service_id)})


@router.put(
    "/services/{service_id}",
    summary="Update a service",
    openapi_extra=_BODY,
    response_model=ServiceOut,
    responses=errors(400, 403, 404, 409, 413),
)
async def update(
    service_id: str,
    request: Request,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(admin),
) -> JsonResponse:
    """The new file, as for POST; its ``service`` must be ``service_id``. Only the
    connections whose configuration changed restart; the others keep polling."""
    file = await read_service_file(request)  # a body refused is 400 before a lookup
    before = await _state(ctx, service_id)
    c = validated(file)
    if c.service != service_id:
        raise bad_request("$.service", f"the file is service {c.service!r}, not {service_id!r}")
    await _check_connections(ctx, c)
    await _append(ctx, principal, service_id, "updated", file)
    await _register_identities(ctx, service_id, c)
    audit_note(
        request,
        action="update",
        target_type="service",
        target_id=service_id,
        before={"revision": before["revision"]},
        after={"revision": before["revision"] + 1},
    )
    return JsonResponse({"data": await _one(ctx, service_id)})


def _switch(kind: str) -> Callable[..., Awaitable[JsonResponse]]:
    """The handler of ``POST /services/{id}/enable`` (kind ``enabled``) or ``/disable``."""

    async def switch(
        service_id: str,
        request: Request,
        ctx: AppContext = Depends(context),
        principal: Principal = Depends(admin),
    ) -> JsonResponse:
        before = await _state(ctx, service_id)
        await _append(ctx, principal, service_id, kind)
        audit_note(
            request,
            action=kind[:-1],
            target_type="service",
            target_id=service_id,
            before={"status": before["status"]},
            after={"status": kind},
        )
        return JsonResponse({"data": await _one(ctx, service_id)})

    return switch


for _verb, _kind, _doc in (
    ("enable", "enabled", "Its connections start again."),
    (
        "disable",
        "disabled",
        "Its connections stop; their resources' desired state becomes ``disabled`` "
        "(not a deviation).",
    ),
):
    router.add_api_route(
        f"/services/{{service_id}}/{_verb}",
        _switch(_kind),
        methods=["POST"],
        name=_verb,
        summary=f"{_verb.capitalize()} a service",
        description=_doc,
        response_model=ServiceOut,
        responses=errors(403, 404),
    )


@router.delete(
    "/services/{service_id}",
    status_code=204,
    summary="Remove a service",
    responses=errors(403, 404),
)
async def remove(
    service_id: str,
    request: Request,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(admin),
) -> Response:
    """Its connections stop and it is no longer listed."""
    await _state(ctx, service_id)
    await _append(ctx, principal, service_id, "removed")
    audit_note(request, action="remove", target_type="service", target_id=service_id)
    return Response(status_code=204)
