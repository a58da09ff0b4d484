"""Sign in: login, refresh, logout (``api.users``), and the rotation of the keys that
sign access tokens.

The sign-in routes take their credential in the body, so the authentication middleware
lets them through; every outcome is an audit event (login, login_failed, lockout,
logout, refresh_reused) without the password or any token (``api.audit`` masks such
fields).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from millrace.api import models
from millrace.api.audit import audit_note
from millrace.api.auth import USER_PREFIX, Principal
from millrace.api.context import AppContext, admin, context
from millrace.api.errors import ApiError
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.api.users.access import AccessControl
from millrace.api.users.models import RotationOut, TokenPair
from millrace.api.users.sessions import RefreshRefusedError

router = APIRouter(tags=["login"], route_class=StrictRoute)

#: one answer for a wrong password and an unknown or disabled user
BAD_LOGIN = "invalid username or password"


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=200)


def _access(ctx: AppContext) -> AccessControl:
    assert ctx.access is not None
    return ctx.access


def _tokens(access: AccessControl, username: str, sid: str, refresh: str) -> dict[str, Any]:
    token, _ = access.signing.issue(username, sid)
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": int(access.signing.access_ttl_s),
        "refresh_token": refresh,
    }


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def source_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


@router.post(
    "/login", summary="Sign in", response_model=TokenPair, responses=models.errors(401, 429)
)
async def login(
    req: LoginRequest, request: Request, ctx: AppContext = Depends(context)
) -> JsonResponse:
    """Username and password → a short-lived access token (JWT, ``Authorization: Bearer``)
    and a refresh token (``POST /refresh``)."""
    access = _access(ctx)
    address = source_address(request)
    if access.sessions.locked(req.username, address):
        audit_note(request, action="login_locked", target_type="user", target_id=req.username)
        raise ApiError(
            429,
            "locked_out",
            "too many failed logins: try again later",
            headers={"Retry-After": str(int(access.sessions.lockout.lock_s))},
        )
    user = access.users.get(req.username, fresh=True)
    if user is not None and user.enabled:
        ok = await asyncio.to_thread(access.hasher.verify, user.password_hash, req.password)
    else:
        ok = await asyncio.to_thread(access.hasher.verify_unknown, req.password)
    if not ok or user is None:
        locked = access.sessions.failed(req.username, address)
        audit_note(request, action="login_failed", target_type="user", target_id=req.username)
        for key in locked:
            audit_note(request, action="lockout", target_type="login", target_id=key)
        await asyncio.sleep(access.sessions.lockout.failure_delay_s)
        raise _unauthorized(BAD_LOGIN)
    access.sessions.succeeded(user.username)
    access.users.logged_in(user.username)
    sid, refresh = access.sessions.start(user.username)
    audit_note(
        request,
        action="login",
        target_type="user",
        target_id=user.username,
        after={"session": sid},
        actor=(USER_PREFIX + user.username, ",".join(user.roles) or "none"),
    )
    return JsonResponse(_tokens(access, user.username, sid, refresh))


@router.post(
    "/refresh",
    summary="New tokens for a refresh token",
    response_model=TokenPair,
    responses=models.errors(401),
)
async def refresh(
    req: RefreshRequest, request: Request, ctx: AppContext = Depends(context)
) -> JsonResponse:
    """The refresh token is used up; the answer carries the next one. A refresh token
    presented a second time ends its whole session (it was copied)."""
    access = _access(ctx)
    try:
        username, sid, token = access.sessions.rotate(req.refresh_token)
    except RefreshRefusedError as exc:
        if exc.reused and exc.username is not None:
            audit_note(request, action="refresh_reused", target_type="user", target_id=exc.username)
            if ctx.stream is not None:
                ctx.stream.close_owner(f"user:{exc.username}", "the session was revoked")
        raise _unauthorized("invalid refresh token") from None
    user = access.users.get(username, fresh=True)
    if user is None or not user.enabled:
        access.sessions.end_sid(sid)
        raise _unauthorized("invalid refresh token")
    audit_note(
        request,
        action="refresh",
        target_type="user",
        target_id=username,
        actor=(USER_PREFIX + username, ",".join(user.roles) or "none"),
    )
    return JsonResponse(_tokens(access, username, sid, token))


@router.post("/logout", status_code=204, summary="Sign out", responses=models.errors(401))
async def logout(
    req: RefreshRequest, request: Request, ctx: AppContext = Depends(context)
) -> Response:
    """Ends the session of the refresh token: its access tokens stop working too."""
    access = _access(ctx)
    username = access.sessions.end(req.refresh_token)
    if username is None:
        raise _unauthorized("invalid refresh token")
    user = access.users.get(username)
    roles = ",".join(user.roles) if user is not None else ""
    audit_note(
        request,
        action="logout",
        target_type="user",
        target_id=username,
        actor=(USER_PREFIX + username, roles or "none"),
    )
    return Response(status_code=204)


@router.post(
    "/auth/keys/rotate",
    summary="Rotate the access-token signing key",
    response_model=models.Data[RotationOut],
)
async def rotate_signing_key(
    request: Request, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    """A new signing key becomes current: access tokens issued from now on carry its
    ``kid``. Tokens signed by the previous keys stay valid until they expire; keys
    retired longer ago than the access-token lifetime are dropped (``dropped``). No
    secret is ever shown. Every ``millrace api`` process of the data directory signs
    with the new key from its next token on."""
    signing = _access(ctx).signing
    done = await asyncio.to_thread(signing.rotate)
    audit_note(
        request,
        action="rotate",
        target_type="signing_key",
        target_id=done.kid,
        after={"kid": done.kid, "dropped": done.dropped},
    )
    keys = await asyncio.to_thread(signing.listing)
    return JsonResponse({"data": {"kid": done.kid, "dropped": done.dropped, "keys": keys}})
