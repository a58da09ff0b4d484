"""The device registry: identities, their lifecycle, tags and desired/reported state.

Writes append IdentityEvents (and Commands) to the log and answer once the
projections hold them (see ``api.registry``). Credentials are hashed with argon2 and
never returned; a generated token is shown once, in the answer that created it.

The registry routes are here; the tag routes are ``identity_tags`` and the state routes
``identity_state`` (included at the end of this router, in that order, so paths, order and
the OpenAPI document are unchanged); what they share (filters, order, ``actor``,
``public``, ``run_query``) is ``identity_common``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, operator, viewer
from millrace.api.device_auth import CredentialError, check_password, new_token
from millrace.api.errors import ApiError, bad_request
from millrace.api.models import errors
from millrace.api.registry import (
    check_attributes,
    check_identity,
    check_tags,
    emit,
    event,
    require_identity,
)
from millrace.api.responses import JsonResponse
from millrace.api.routers import identity_state, identity_tags
from millrace.api.routers.identity_common import (
    FilterIn,
    IdentityPath,
    actor,
    build_filter,
    parse_order,
    public,
    query_filter,
    run_query,
)
from millrace.api.routing import StrictRoute
from millrace.api.users.scope import scoped
from millrace.pipeline.identities import requests
from millrace.pipeline.identities.formats import generate
from millrace.pipeline.identities.state import CONTROL
from millrace.projections.registry import IdentityFilter

__all__ = ["AuthIn", "actor", "credential_attrs", "public", "router", "run_query"]

router = APIRouter(tags=["identities"], route_class=StrictRoute)


class AuthIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["token", "password", "certificate"] = "token"
    password: str | None = Field(None, description="auth type password: at least 20 bytes")


class IdentityCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identity: str | None = Field(None, description="absent: generated in the configured format")
    attributes: dict[str, str] = Field(default_factory=dict, description="name, model, ...")
    tags: dict[str, list[str]] = Field(default_factory=dict)
    auth: AuthIn | None = Field(None, description="give a credential now: provisioned at once")
    provision_window_s: int | None = Field(
        None, ge=1, le=10 * 365 * 86_400, description="must provision within (else expired)"
    )
    inactivity_timeout_s: int | None = Field(None, ge=1, le=30 * 86_400)


class IdentityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attributes: dict[str, str] = Field(default_factory=dict, description="merged")
    unset: list[str] = Field(default_factory=list, description="attributes to remove")
    status: Literal["whitelisted", "reprovision"] | None = Field(
        None, description="reset: whitelisted (provision again) or reprovision"
    )
    provision_window_s: int | None = Field(None, ge=1, le=10 * 365 * 86_400)
    inactivity_timeout_s: int | None = Field(None, ge=1, le=30 * 86_400)


def credential_attrs(
    ctx: AppContext, auth: AuthIn, field: str
) -> tuple[dict[str, str], str | None]:
    """Attributes of a new credential (hashed) and the token to show once, if any;
    ``field`` names the body's auth object in errors (``auth.password``)."""
    field = f"{field}." if field else ""
    if auth.type not in ctx.registry.provisioning.auth_types:
        raise bad_request(f"{field}type", f"auth type {auth.type!r} is not enabled")
    token = None
    if auth.type == "token":
        if auth.password is not None:
            raise bad_request(f"{field}password", "a token is generated; send no password")
        secret = token = new_token()
    elif auth.type == "password":
        if auth.password is None:
            raise bad_request(f"{field}password", "required for auth type password")
        try:
            check_password(auth.password)
        except CredentialError as exc:
            raise bad_request(f"{field}password", exc.message) from None
        secret = auth.password
    else:
        secret = ""  # certificate: the verified CN is the credential
    attrs = requests.credential_attrs(
        auth.type,
        ctx.hasher.hash(secret) if secret else "",
        ctx.clock(),
        ctx.registry.provisioning.credential_ttl_s,
    )
    return attrs, token


@router.post(
    "/identities",
    status_code=201,
    summary="Create an identity",
    response_model=models.IdentityCreated,
    responses=errors(409, s409="the identity exists"),
)
async def create_identity(
    body: Annotated[IdentityCreate, Body()],
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """Create (whitelist) an identity; with ``auth`` it is provisioned at once and a
    generated token is in the answer, once. Without ``identity`` one is generated."""
    identity = body.identity if body.identity is not None else generate(ctx.registry.format)
    check_identity(ctx, identity)
    check_attributes(body.attributes, CONTROL)
    check_tags(body.tags)
    window = body.provision_window_s or ctx.registry.provisioning.window_s
    token, cred = None, None
    if body.auth is not None:
        cred, token = await asyncio.to_thread(credential_attrs, ctx, body.auth, "auth")
    attrs = requests.creation_attrs(
        body.attributes, ctx.clock(), window, body.inactivity_timeout_s, cred
    )
    async with ctx.lock(identity):
        if await asyncio.to_thread(ctx.queries.get, identity, ctx.clock()) is not None:
            raise ApiError(409, "conflict", f"identity {identity!r} already exists")
        await emit(
            ctx,
            [event(ctx, identity, "CREATED", actor(principal), attributes=attrs, tags=body.tags)],
        )
    row = await require_identity(ctx, identity)
    out = public(row)
    if token is not None:
        out["token"] = token
    return JsonResponse(out, status_code=201)


@router.get("/identities", summary="List identities", response_model=models.IdentityList)
async def list_identities(
    f: IdentityFilter = Depends(query_filter),
    order: Annotated[
        str, Query(description="identity|lastseen|lastip|state.<resource>, .asc or .desc")
    ] = "identity",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    f = scoped(f, principal)
    rows, more = await run_query(
        ctx.queries.list, f, parse_order(order), limit, offset, ctx.clock()
    )
    return JsonResponse(
        {
            "items": [public(r) for r in rows],
            "meta": {"limit": limit, "offset": offset, "may_load_more": more},
        }
    )


@router.get(
    "/identities/count",
    summary="Count identities matching the list filters",
    response_model=models.Count,
)
async def count_identities(
    f: IdentityFilter = Depends(query_filter),
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    f = scoped(f, principal)
    return JsonResponse({"count": await run_query(ctx.queries.count, f, ctx.clock())})


class BulkUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: FilterIn = Field(description="which identities (the list filters)")
    all: bool = Field(False, description="required to act on every identity (empty query)")
    update: IdentityUpdate


class BulkDelete(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: FilterIn
    all: bool = False


async def _bulk_names(
    ctx: AppContext, q: FilterIn, everything: bool, principal: Principal
) -> list[str]:
    """The identities a bulk operation acts on (a scoped caller: those in its scope)."""
    if q == FilterIn() and not everything:
        raise bad_request("query", "empty query: set all=true to act on every identity")
    f = scoped(build_filter(q, prefix="query."), principal)
    return list(await run_query(ctx.queries.names, f, ctx.clock()))


def _update_attrs(ctx: AppContext, u: IdentityUpdate) -> dict[str, str]:
    check_attributes(u.attributes, CONTROL)
    return requests.update_attrs(
        u.attributes,
        u.unset,
        u.status,
        ctx.clock(),
        u.provision_window_s,
        u.inactivity_timeout_s,
    )


@router.post(
    "/identities/bulk/update",
    summary="Update every identity a query matches",
    response_model=models.BulkUpdated,
)
async def bulk_update(
    body: BulkUpdate, ctx: AppContext = Depends(context), principal: Principal = Depends(operator)
) -> JsonResponse:
    attrs = _update_attrs(ctx, body.update)
    names = await _bulk_names(ctx, body.query, body.all, principal)
    events = [event(ctx, n, "UPDATED", actor(principal), attributes=attrs) for n in names]
    await emit(ctx, events)
    return JsonResponse({"matched": len(names), "updated": len(names)})


@router.post(
    "/identities/bulk/delete",
    summary="Delete every identity a query matches",
    response_model=models.BulkDeleted,
)
async def bulk_delete(
    body: BulkDelete, ctx: AppContext = Depends(context), principal: Principal = Depends(operator)
) -> JsonResponse:
    names = await _bulk_names(ctx, body.query, body.all, principal)
    await emit(ctx, [event(ctx, n, "DELETED", actor(principal)) for n in names])
    return JsonResponse({"deleted": len(names)})


@router.get("/identities/{identity}", summary="Get an identity", response_model=models.IdentityOut)
async def get_identity(
    identity: IdentityPath, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    return JsonResponse(public(await require_identity(ctx, identity)))


@router.patch(
    "/identities/{identity}", summary="Update an identity", response_model=models.IdentityOut
)
async def update_identity(
    identity: IdentityPath,
    body: IdentityUpdate,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    attrs = _update_attrs(ctx, body)
    async with ctx.lock(identity):
        await require_identity(ctx, identity)
        await emit(ctx, [event(ctx, identity, "UPDATED", actor(principal), attributes=attrs)])
    return JsonResponse(public(await require_identity(ctx, identity)))


@router.delete(
    "/identities/{identity}", status_code=204, summary="Delete an identity", responses=errors(404)
)
async def delete_identity(
    identity: IdentityPath,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> Response:
    async with ctx.lock(identity):
        await require_identity(ctx, identity)
        await emit(ctx, [event(ctx, identity, "DELETED", actor(principal))])
    return Response(status_code=204)


async def _transition(
    ctx: AppContext, identity: str, kind: str, principal: Principal, **attrs: str
) -> JsonResponse:
    async with ctx.lock(identity):
        await require_identity(ctx, identity)
        await emit(ctx, [event(ctx, identity, kind, actor(principal), attributes=attrs)])
    return JsonResponse(public(await require_identity(ctx, identity)))


@router.post(
    "/identities/{identity}/lock",
    summary="Lock: refused at connect and ingest",
    response_model=models.IdentityOut,
)
async def lock_identity(
    identity: IdentityPath,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    return await _transition(ctx, identity, "LOCKED", principal)


@router.post(
    "/identities/{identity}/unlock",
    summary="Unlock: back to the status before",
    response_model=models.IdentityOut,
)
async def unlock_identity(
    identity: IdentityPath,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    return await _transition(ctx, identity, "UNLOCKED", principal)


router.include_router(identity_tags.router)
router.include_router(identity_state.router)
