"""Users (admin) and one's own password (``api.users``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from millrace.api import models
from millrace.api.audit import audit_note
from millrace.api.auth import Principal
from millrace.api.context import AppContext, admin, context, viewer
from millrace.api.errors import ApiError
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.api.users.access import USER_PREFIX, AccessControl
from millrace.api.users.errors import api_error
from millrace.api.users.models import UserOut
from millrace.api.users.policy import PasswordRejectedError
from millrace.api.users.store import AccessError

router = APIRouter(tags=["users"], route_class=StrictRoute)

USERNAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=USERNAME)
    password: str = Field(min_length=1, max_length=1024)
    display_name: str = Field("", max_length=200)
    email: str = Field("", max_length=320)
    roles: list[str] = Field(min_length=1, max_length=20)
    enabled: bool = True


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    roles: list[str] | None = Field(None, min_length=1, max_length=20)
    enabled: bool | None = None
    #: an admin sets a new password (the user's sessions end)
    password: str | None = Field(None, min_length=1, max_length=1024)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


def _access(ctx: AppContext) -> AccessControl:
    assert ctx.access is not None
    return ctx.access


async def _hash(access: AccessControl, password: str, username: str) -> str:
    try:
        access.policy.check(password, username)
    except PasswordRejectedError as exc:
        raise api_error(exc) from None
    return await asyncio.to_thread(access.hasher.hash, password)


def _ended(ctx: AppContext, username: str) -> None:
    """The user's sessions and live streams end (disabled, deleted, new password)."""
    _access(ctx).sessions.end_user(username)
    if ctx.stream is not None:
        ctx.stream.close_owner(USER_PREFIX + username, "the user's sessions were ended")


@router.get("/users", summary="List users", response_model=models.Data[list[UserOut]])
async def list_users(
    ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    return JsonResponse({"data": [u.public() for u in _access(ctx).users.list_users()]})


@router.post(
    "/users",
    status_code=201,
    summary="Create a user",
    response_model=models.Data[UserOut],
    responses=models.errors(409),
)
async def create_user(
    req: UserCreate, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    """The password must pass the policy (400 names the rule it breaks)."""
    access = _access(ctx)
    digest = await _hash(access, req.password, req.username)
    try:
        user = access.users.create(
            req.username,
            digest,
            roles=req.roles,
            display_name=req.display_name,
            email=req.email,
            enabled=req.enabled,
        )
    except AccessError as exc:
        raise api_error(exc) from None
    assert user is not None
    audit_note(action="create", target_type="user", target_id=user.username, after=user.public())
    return JsonResponse({"data": user.public()}, status_code=201)


def _user_or_404(ctx: AppContext, username: str) -> dict[str, Any]:
    user = _access(ctx).users.get(username, fresh=True)
    if user is None:
        message = f"username: no user {username!r}"
        raise ApiError(404, "not_found", message, [{"field": "username", "message": "not found"}])
    return user.public()


@router.get("/users/{username}", summary="Get a user", response_model=models.Data[UserOut])
async def get_user(
    username: str, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    return JsonResponse({"data": _user_or_404(ctx, username)})


@router.patch(
    "/users/{username}",
    summary="Change a user",
    response_model=models.Data[UserOut],
    responses=models.errors(409),
)
async def update_user(
    username: str,
    req: UserUpdate,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(admin),
) -> JsonResponse:
    """Roles take effect at the user's next request; disabling ends their sessions;
    the last enabled admin cannot be disabled or demoted (409)."""
    _user_or_404(ctx, username)
    changes = req.model_dump(exclude_none=True, exclude={"password"})
    if req.password is not None:
        changes["password_hash"] = await _hash(_access(ctx), req.password, username)
    try:
        before, after = _access(ctx).users.update(username, **changes)
    except AccessError as exc:
        raise api_error(exc) from None
    if not after.enabled or req.password is not None:
        _ended(ctx, username)
    audit_note(
        action="update",
        target_type="user",
        target_id=username,
        before=before.public(),
        after={**after.public(), **({"password": "changed"} if req.password else {})},
    )
    return JsonResponse({"data": after.public()})


@router.delete(
    "/users/{username}", status_code=204, summary="Delete a user", responses=models.errors(409)
)
async def delete_user(
    username: str, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> Response:
    """The last enabled admin cannot be deleted (409)."""
    _user_or_404(ctx, username)
    try:
        user = _access(ctx).users.delete(username)
    except AccessError as exc:
        raise api_error(exc) from None
    _ended(ctx, username)
    audit_note(action="delete", target_type="user", target_id=username, before=user.public())
    return Response(status_code=204)


@router.put("/me/password", status_code=204, summary="Change my password")
async def change_password(
    req: PasswordChange, ctx: AppContext = Depends(context), me: Principal = Depends(viewer)
) -> Response:
    """For signed-in users (not API keys); the current password is required, and every
    session of the user ends (sign in again)."""
    if not me.key_id.startswith(USER_PREFIX):
        raise ApiError(400, "not_a_user", "an API key has no password: sign in as a user")
    access = _access(ctx)
    user = access.users.get(me.name, fresh=True)
    ok = user is not None and await asyncio.to_thread(
        access.hasher.verify, user.password_hash, req.current_password
    )
    if not ok:
        message = "body.current_password: wrong password"
        raise ApiError(
            401, "unauthorized", message, [{"field": "body.current_password", "message": message}]
        )
    digest = await _hash(access, req.new_password, me.name)
    access.users.update(me.name, password_hash=digest)
    _ended(ctx, me.name)
    audit_note(action="change_password", target_type="user", target_id=me.name)
    return Response(status_code=204)
