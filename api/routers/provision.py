"""Device provisioning: a device obtains (or presents) its identity and credential.

Open to devices without an API key, guarded by the provisioning switch, the IP
allow-list and the identity's status: an operator whitelists an identity (or the
configuration lets devices present or generate one); the device provisions it once
with a token (generated, shown once) or a password of at least 20 bytes, or with its
TLS client certificate's CN (passed by a trusted front end). Credentials are stored
as argon2id hashes only. A provisioned identity provisions again only after its
credential expired or an operator asked for reprovisioning.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from millrace.api import models
from millrace.api.context import AppContext, context
from millrace.api.device_auth import ip_allowed
from millrace.api.errors import ApiError, bad_request
from millrace.api.limits import body_schema, read_json
from millrace.api.registry import check_identity, emit, event
from millrace.api.responses import JsonResponse
from millrace.api.routers.identities import AuthIn, credential_attrs
from millrace.api.routing import StrictRoute
from millrace.pipeline.identities.formats import generate

router = APIRouter(tags=["provisioning"], route_class=StrictRoute)


class ProvisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identity: str | None = Field(None, description="absent: a new one (generate_identity)")
    auth_type: Literal["token", "password", "certificate"] = "token"
    password: str | None = Field(None, description="auth type password: at least 20 bytes")


#: the request body; read after the switch and the allow-list let the caller in
PROVISION_BODY: TypeAdapter[ProvisionIn] = TypeAdapter(ProvisionIn)


@router.post(
    "/provision",
    status_code=201,
    summary="Provision a device (no API key; device-facing)",
    openapi_extra=body_schema(PROVISION_BODY, "the identity and credential to provision"),
    response_model=models.Provisioned,
    responses={
        403: {"description": "provisioning off, address not allowed, locked, expired"},
        **models.errors(401, 409, s401="no verified client certificate (certificate auth)"),
    },
)
async def provision(request: Request, ctx: AppContext = Depends(context)) -> JsonResponse:
    """Refused from the headers alone (switch, allow-list) before the body is read; the
    body is small (``api.limits``: 413 beyond ``provision_max_body_bytes``)."""
    p = ctx.registry.provisioning
    ip = request.client.host if request.client else None
    if not p.enabled:
        raise ApiError(403, "provisioning_disabled", "provisioning is switched off")
    if not ip_allowed(ip, ctx.allowlist):
        raise ApiError(403, "address_not_allowed", f"{ip} may not provision")
    body = await read_json(request, PROVISION_BODY)
    generated = body.identity is None
    if generated:
        if not p.generate_identity:
            raise bad_request("identity", "required (this deployment does not generate identities)")
        identity = generate(ctx.registry.format)
    else:
        identity = str(body.identity)
        check_identity(ctx, identity)
    if body.auth_type == "certificate":
        cn = (
            request.headers.get(p.cn_header)
            if ctx.trusted_proxies and ip_allowed(ip, ctx.trusted_proxies)
            else None
        )
        if cn != identity:
            raise ApiError(401, "unauthorized", "no verified client certificate for this identity")
    auth = AuthIn(type=body.auth_type, password=body.password)
    attrs, token = await asyncio.to_thread(credential_attrs, ctx, auth, "")
    async with ctx.lock(identity):
        row = await asyncio.to_thread(ctx.queries.get, identity, ctx.clock())
        events = []
        if row is None:
            if not (generated or p.presented_identity):
                raise ApiError(403, "not_whitelisted", f"identity {identity!r} is not whitelisted")
            events.append(event(ctx, identity, "CREATED", f"device:{ip}", ip=ip))
            kind = "PROVISIONED"
        else:
            status = row["status"]
            until = row.get("provision_until_us")
            if status == "locked":
                raise ApiError(403, "identity_locked", f"identity {identity!r} is locked")
            if status == "expired" or (status == "whitelisted" and until and until < ctx.clock()):
                raise ApiError(403, "provisioning_expired", "the provisioning window has passed")
            if status == "provisioned":
                raise ApiError(409, "already_provisioned", f"identity {identity!r} is provisioned")
            kind = "REPROVISIONED" if status == "reprovision" else "PROVISIONED"
        events.append(event(ctx, identity, kind, f"device:{ip}", ip=ip, attributes=attrs))
        await emit(ctx, events)
    out: dict[str, object] = {"identity": identity, "auth_type": body.auth_type}
    if token is not None:
        out["token"] = token
    if "credential_expires_us" in attrs:
        out["credential_expires_us"] = int(attrs["credential_expires_us"])
    return JsonResponse(out, status_code=201)
