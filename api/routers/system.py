"""Engine status and API key management."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from millrace.api import models
from millrace.api.audit import audit_note
from millrace.api.auth import ApiKey, Principal
from millrace.api.context import AppContext, admin, context, viewer
from millrace.api.errors import ApiError
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.pipeline.clock import now_us

router = APIRouter(tags=["system"], route_class=StrictRoute)


@router.get("/status", summary="Pipeline status", response_model=models.EngineStatus)
async def status(
    ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    """Runtime counters, consumer positions and connector statistics (in the
    distributed deployment: the workers', summed, and the processing group's lag)."""
    if ctx.ops is not None:
        await ctx.ops.refresh()
    return JsonResponse({"data": ctx.status()})


@router.get("/me", summary="Who am I", response_model=models.Data[models.Me])
async def me(principal: Principal = Depends(viewer)) -> JsonResponse:
    """The caller: an API key (id, name, role) or a signed-in user (also its username,
    roles and permissions)."""
    data: dict[str, object] = {
        "key_id": principal.key_id,
        "name": principal.name,
        "role": principal.role,
    }
    if principal.session is not None:
        data.update(
            username=principal.name,
            roles=principal.role.split(","),
            permissions=sorted(principal.granted),
        )
    return JsonResponse({"data": data})


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    #: a built-in role (viewer, operator, admin) or a custom one (``/roles``)
    role: str = Field(min_length=1, max_length=64)
    #: when the key stops working (ISO-8601 or epoch seconds); absent: never
    expires_at: datetime | None = None


@router.post(
    "/keys",
    status_code=201,
    summary="Create an API key",
    response_model=models.Data[models.KeyCreated],
)
async def create_key(
    req: KeyRequest, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    """The key is in this response only; millrace keeps a hash."""
    assert ctx.access is not None
    known = ctx.access.users.roles(fresh=True)
    if req.role not in known:
        message = f"body.role: unknown role {req.role!r}; one of {', '.join(sorted(known))}"
        raise ApiError(
            400, "invalid_parameter", message, [{"field": "body.role", "message": message}]
        )
    expires_us = None
    if req.expires_at is not None:
        at = req.expires_at if req.expires_at.tzinfo else req.expires_at.replace(tzinfo=UTC)
        expires_us = int(at.timestamp() * 1_000_000)
        if expires_us <= now_us():  # the keys' clock (``api.auth``), not the data's
            message = "body.expires_at: must be in the future"
            raise ApiError(
                400,
                "invalid_parameter",
                message,
                [{"field": "body.expires_at", "message": message}],
            )
    key, plaintext = ctx.keys.create(req.name, req.role, known_roles=known, expires_us=expires_us)
    audit_note(
        action="create",
        target_type="api_key",
        target_id=key.id,
        after=key_json(key),
    )
    return JsonResponse({"data": {**key_json(key), "key": plaintext}}, status_code=201)


def key_json(k: ApiKey) -> dict[str, object]:
    """What a key shows: never its secret nor its hash."""
    return {
        "id": k.id,
        "name": k.name,
        "role": k.role,
        "created_us": k.created_us,
        "expires_us": k.expires_us,
        "last_used_us": k.last_used_us,
        "rotated_us": k.rotated_us,
    }


@router.get("/keys", summary="List API keys", response_model=models.Data[list[models.KeyOut]])
async def list_keys(
    ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    return JsonResponse({"data": [key_json(k) for k in ctx.keys.list()]})


@router.post(
    "/keys/{key_id}/rotate",
    summary="Rotate an API key",
    response_model=models.Data[models.KeyCreated],
    responses=models.errors(404),
)
async def rotate_key(
    key_id: str, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    """A new secret for the key (same id, name, role and expiry), in this response only;
    the old secret is refused from now on, and streams opened with it end."""
    rotated = ctx.keys.rotate(key_id)
    if rotated is None:
        raise ApiError(
            404,
            "not_found",
            f"key_id: no key {key_id!r}",
            [{"field": "key_id", "message": "not found"}],
        )
    key, plaintext = rotated
    audit_note(action="rotate", target_type="api_key", target_id=key.id, after=key_json(key))
    if ctx.stream is not None:
        ctx.stream.close_owner(key_id, "the API key was rotated")
    return JsonResponse({"data": {**key_json(key), "key": plaintext}})


@router.delete(
    "/keys/{key_id}",
    status_code=204,
    summary="Revoke an API key",
    responses=models.errors(404),
)
async def delete_key(
    key_id: str, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> Response:
    before = next(
        ({"id": k.id, "name": k.name, "role": k.role} for k in ctx.keys.list() if k.id == key_id),
        None,
    )
    audit_note(action="delete", target_type="api_key", target_id=key_id, before=before)
    if not ctx.keys.delete(key_id):
        raise ApiError(
            404,
            "not_found",
            f"key_id: no key {key_id!r}",
            [{"field": "key_id", "message": "not found"}],
        )
    if ctx.stream is not None:  # at once here; other processes within about a second
        ctx.stream.close_owner(key_id)
    return Response(status_code=204)
