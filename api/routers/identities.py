"""The device registry: identities, their lifecycle, tags and desired/reported state.

Writes append IdentityEvents (and Commands) to the log and answer once the
projections hold them (see ``api.registry``). Credentials are hashed with argon2 and
never returned; a generated token is shown once, in the answer that created it.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
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
    definitions,
    emit,
    event,
    require_identity,
    to_json,
)
from millrace.api.responses import JsonResponse
from millrace.api.routers.ingest import IDENTITY_PATTERN
from millrace.api.routing import StrictRoute
from millrace.api.timeparams import Epoch, parse_time
from millrace.pipeline.identities import requests
from millrace.pipeline.identities.formats import generate
from millrace.pipeline.identities.state import CONTROL
from millrace.pipeline.topics import COMMANDS, TELEMETRY
from millrace.projections.registry import TAG_OPS, IdentityFilter, Order, QueryError, TagCriterion

router = APIRouter(tags=["identities"], route_class=StrictRoute)

IdentityPath = Annotated[str, Path(pattern=IDENTITY_PATTERN)]
Value = StrictBool | StrictInt | StrictFloat | StrictStr
STATUSES = ("whitelisted", "provisioned", "reprovision", "expired", "locked", "online", "offline")
_TAG_CRITERION = re.compile(r"^(.+?):(gte|gt|lte|lt|eq|ne):(.*)$", re.S)


def actor(p: Principal) -> str:
    return f"key:{p.key_id}:{p.name}"


def public(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row.pop("credential_hash", None)
    return row


# -- filters ------------------------------------------------------------------------------


class FilterIn(BaseModel):
    """The list filters, as a JSON body (bulk operations)."""

    model_config = ConfigDict(extra="forbid")
    status: list[str] = Field(default_factory=list)
    identity: str | None = Field(None, description="regular expression (RE2)")
    ipaddress: str | None = None
    tag: str | None = None
    tag_value: str | None = None
    tags: list[str] = Field(default_factory=list, description="criteria name:op:value")
    before: str | None = None
    after: str | None = None
    identities: list[str] | None = Field(None, max_length=10_000)


def build_filter(f: FilterIn, epoch: Epoch | None = None, prefix: str = "") -> IdentityFilter:
    for i, s in enumerate(f.status):
        if s not in STATUSES:
            raise bad_request(f"{prefix}status[{i}]", f"{s!r} is not one of {', '.join(STATUSES)}")
    criteria = []
    for i, raw in enumerate(f.tags):
        m = _TAG_CRITERION.match(raw)
        if m is None:
            raise bad_request(
                f"{prefix}tags[{i}]", f"expected name:op:value with op one of {', '.join(TAG_OPS)}"
            )
        criteria.append(TagCriterion(m.group(1), m.group(2), m.group(3)))
    return IdentityFilter(
        status=list(f.status),
        identity=f.identity or None,
        ipaddress=f.ipaddress or None,
        tag=f.tag or None,
        tag_value=f.tag_value,
        tags=criteria,
        before_us=parse_time(f"{prefix}before", f.before, epoch),
        after_us=parse_time(f"{prefix}after", f.after, epoch),
        identities=f.identities,
    )


def _split(values: list[str]) -> list[str]:
    return [v for raw in values for v in raw.split(",") if v]


def query_filter(
    status: Annotated[
        list[str], Query(description="any of: " + ", ".join(STATUSES) + " (repeat or comma)")
    ] = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    identity: Annotated[str | None, Query(description="regular expression (RE2)")] = None,
    ipaddress: Annotated[str | None, Query(description="last IP address")] = None,
    tag: Annotated[str | None, Query(description="has this tag")] = None,
    tag_value: Annotated[str | None, Query(description="with this value")] = None,
    tags: Annotated[
        list[str], Query(description="criteria name:op:value, op gt|gte|lt|lte|eq|ne; all hold")
    ] = [],  # noqa: B006
    before: Annotated[str | None, Query(description="lastseen before (ISO-8601/epoch)")] = None,
    after: Annotated[str | None, Query(description="lastseen after")] = None,
    epoch: Annotated[Epoch | None, Query(description="unit of epoch numbers")] = None,
) -> IdentityFilter:
    f = FilterIn(
        status=_split(status),
        identity=identity,
        ipaddress=ipaddress,
        tag=tag,
        tag_value=tag_value,
        tags=tags,
        before=before,
        after=after,
    )
    return build_filter(f, epoch)


def parse_order(raw: str) -> Order:
    key, _, direction = raw.rpartition(".") if raw.endswith((".asc", ".desc")) else (raw, "", "")
    if direction not in ("", "asc", "desc"):
        raise bad_request("order", "direction must be asc or desc")
    if key not in ("identity", "lastseen", "lastip") and not (
        key.startswith("state.") and len(key) > 6
    ):
        raise bad_request("order", "order by identity, lastseen, lastip or state.<resource>")
    return Order(key, direction == "desc")


async def run_query(fn: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args)
    except QueryError as exc:
        raise bad_request(exc.field, exc.message) from None


# -- registry -----------------------------------------------------------------------------


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
    _: Principal = Depends(viewer),
) -> JsonResponse:
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
    _: Principal = Depends(viewer),
) -> JsonResponse:
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


async def _bulk_names(ctx: AppContext, q: FilterIn, everything: bool) -> list[str]:
    if q == FilterIn() and not everything:
        raise bad_request("query", "empty query: set all=true to act on every identity")
    return list(await run_query(ctx.queries.names, build_filter(q, prefix="query."), ctx.clock()))


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
    names = await _bulk_names(ctx, body.query, body.all)
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
    names = await _bulk_names(ctx, body.query, body.all)
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


# -- tags ---------------------------------------------------------------------------------


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: dict[str, list[str]] = Field(description="tag -> values to add")
    replace: bool = Field(False, description="replace the values of the tags given")


@router.post(
    "/identities/{identity}/tags",
    summary="Add tags (or replace their values)",
    response_model=models.TagsOut,
)
async def add_tags(
    identity: IdentityPath,
    body: TagsIn,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    check_tags(body.tags)
    if not body.tags:
        raise bad_request("tags", "give at least one tag")
    attrs = {"replace": "true"} if body.replace else {}
    async with ctx.lock(identity):
        await require_identity(ctx, identity)
        await emit(
            ctx,
            [event(ctx, identity, "TAGS_SET", actor(principal), tags=body.tags, attributes=attrs)],
        )
    return JsonResponse({"tags": (await require_identity(ctx, identity))["tags"]})


@router.get(
    "/identities/{identity}/tags", summary="Tags of an identity", response_model=models.TagsOut
)
async def identity_tags(
    identity: IdentityPath, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    return JsonResponse({"tags": (await require_identity(ctx, identity))["tags"]})


@router.get(
    "/identities/{identity}/tags/{tag}",
    summary="Values of one tag of an identity",
    response_model=models.TagValues,
)
async def identity_tag_values(
    identity: IdentityPath,
    tag: str,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(viewer),
) -> JsonResponse:
    tags = (await require_identity(ctx, identity))["tags"]
    if tag not in tags:
        raise ApiError(404, "not_found", f"identity {identity!r} has no tag {tag!r}")
    return JsonResponse({"tag": tag, "values": tags[tag]})


@router.delete(
    "/identities/{identity}/tags/{tag}",
    summary="Remove a tag or some values",
    response_model=models.TagsOut,
)
async def remove_tag(
    identity: IdentityPath,
    tag: str,
    values: Annotated[list[str], Query(description="values to remove; none: the tag")] = [],  # noqa: B006
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    check_tags({tag: values})
    async with ctx.lock(identity):
        tags = (await require_identity(ctx, identity))["tags"]
        if tag not in tags:
            raise ApiError(404, "not_found", f"identity {identity!r} has no tag {tag!r}")
        await emit(
            ctx, [event(ctx, identity, "TAGS_REMOVED", actor(principal), tags={tag: values})]
        )
    return JsonResponse({"tags": (await require_identity(ctx, identity))["tags"]})


@router.get("/tags", summary="All tag names in use", response_model=models.TagNames)
async def tag_names(
    ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    return JsonResponse({"tags": await asyncio.to_thread(ctx.queries.tag_names)})


@router.get(
    "/tags/{tag}",
    summary="All values of one tag, across identities",
    response_model=models.TagValues,
)
async def tag_values(
    tag: str, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    return JsonResponse(
        {"tag": tag, "values": await asyncio.to_thread(ctx.queries.tag_values, tag)}
    )


# -- state --------------------------------------------------------------------------------


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
        commands, unsynced = plan.commands, plan.unsynced
        if commands:
            await ctx.publisher.publish(COMMANDS, [(identity, c) for c in commands])
        if unsynced:
            batch = {
                "identity": identity,
                "source": "state",
                "received_us": now,
                "samples": [{"ts_us": now, "values": unsynced, "quality": 0}],
                "ip": None,
            }
            await emit(ctx, [batch], TELEMETRY)
            ack = event(
                ctx,
                identity,
                "STATE_ACKNOWLEDGED",
                who,
                state={k: to_json(v) for k, v in unsynced.items()},
            )
            await emit(ctx, [ack])
    state = (await require_identity(ctx, identity))["state"]
    return JsonResponse(
        {"state": state, "commands": [c["command_id"] for c in commands]}, status_code=202
    )
