"""Identity tags: add, list, remove (``/identities/{identity}/tags``), and the tag
names and values in use across identities (``/tags``).

Included in the ``identities`` router after the registry routes, so paths, order and the
OpenAPI document are those of the one router it was cut from.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, operator, viewer
from millrace.api.errors import ApiError, bad_request
from millrace.api.registry import (
    check_tags,
    emit,
    event,
    require_identity,
)
from millrace.api.responses import JsonResponse
from millrace.api.routers.identity_common import IdentityPath, actor
from millrace.api.routing import StrictRoute
from millrace.api.users.scope import within

router = APIRouter(route_class=StrictRoute)


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
    if not body.tags:
        raise bad_request("tags", "give at least one tag")
    attrs = {"replace": "true"} if body.replace else {}
    return await _change(ctx, principal, identity, "TAGS_SET", body.tags, attributes=attrs)


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
    values = _values((await require_identity(ctx, identity))["tags"], identity, tag)
    return JsonResponse({"tag": tag, "values": values})


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
    return await _change(ctx, principal, identity, "TAGS_REMOVED", {tag: values}, having=tag)


def _values(tags: dict[str, list[str]], identity: str, tag: str) -> list[str]:
    """The values of ``tag`` among an identity's ``tags``; 404 when it has no such tag."""
    if tag not in tags:
        raise ApiError(404, "not_found", f"identity {identity!r} has no tag {tag!r}")
    return tags[tag]


async def _change(
    ctx: AppContext,
    principal: Principal,
    identity: str,
    kind: str,
    tags: dict[str, list[str]],
    *,
    attributes: dict[str, str] | None = None,
    having: str | None = None,
) -> JsonResponse:
    """Appends the identity's ``kind`` event (TAGS_SET, TAGS_REMOVED) under its lock,
    once it exists (and has tag ``having``); answers its tags after."""
    check_tags(tags)
    async with ctx.lock(identity):
        current = (await require_identity(ctx, identity))["tags"]
        if having is not None:
            _values(current, identity, having)
        await emit(
            ctx,
            [event(ctx, identity, kind, actor(principal), tags=tags, attributes=attributes)],
        )
    return JsonResponse({"tags": (await require_identity(ctx, identity))["tags"]})


@router.get("/tags", summary="All tag names in use", response_model=models.TagNames)
async def tag_names(
    ctx: AppContext = Depends(context), principal: Principal = Depends(viewer)
) -> JsonResponse:
    """The tag names of the identities (a scoped caller: of those in its scope)."""
    return JsonResponse({"tags": await asyncio.to_thread(ctx.queries.tag_names, within(principal))})


@router.get(
    "/tags/{tag}",
    summary="All values of one tag, across identities",
    response_model=models.TagValues,
)
async def tag_values(
    tag: str, ctx: AppContext = Depends(context), principal: Principal = Depends(viewer)
) -> JsonResponse:
    """The values of ``tag`` over the identities (a scoped caller: those in its scope)."""
    values = await asyncio.to_thread(ctx.queries.tag_values, tag, within(principal))
    return JsonResponse({"tag": tag, "values": values})
