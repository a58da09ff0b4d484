"""Permissions and custom roles (``api.permissions``, ``api.users.store``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response

from millrace.api import models
from millrace.api.audit import audit_note
from millrace.api.auth import Principal
from millrace.api.context import AppContext, admin, context, viewer
from millrace.api.errors import ApiError
from millrace.api.permissions import BUILTIN_ROLES, CATALOG, unknown_permissions
from millrace.api.responses import JsonResponse
from millrace.api.routers.identity_common import tag_criterion
from millrace.api.routing import StrictRoute
from millrace.api.users.errors import api_error
from millrace.api.users.models import PermissionOut, RoleOut
from millrace.api.users.store import AccessError

router = APIRouter(tags=["roles"], route_class=StrictRoute)

ROLE_NAME = r"^[a-z][a-z0-9_-]{0,63}$"


class RoleScope(BaseModel):
    """Confines a role to identities whose name matches one of ``identities`` (shell
    patterns: ``line1-*``, ``press-?``) and whose tags meet every criterion of ``tags``
    (``name:op:value`` as the identity list's ``tags`` filter: ``zone:eq:east``); give
    either or both."""

    model_config = ConfigDict(extra="forbid")
    identities: list[str] = Field(default_factory=list, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _something(self) -> RoleScope:
        if not self.identities and not self.tags:
            raise ValueError("give identities (name patterns), tags (criteria) or both")
        return self


class RoleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    permissions: list[str] = Field(max_length=200)
    description: str = Field("", max_length=500)
    #: absent: the role applies to every identity
    scope: RoleScope | None = None


class RoleCreate(RoleBody):
    name: str = Field(pattern=ROLE_NAME)


@router.get(
    "/permissions", summary="Every permission", response_model=models.Data[list[PermissionOut]]
)
async def permissions(_: Principal = Depends(viewer)) -> JsonResponse:
    """Each permission, what it allows, and the lowest built-in role that has it."""
    return JsonResponse(
        {
            "data": [
                {"name": name, "description": text, "builtin_role": lowest}
                for name, (lowest, text) in sorted(CATALOG.items())
            ]
        }
    )


def _roles(ctx: AppContext) -> list[dict[str, object]]:
    assert ctx.access is not None
    custom = ctx.access.users.custom_roles()
    out: list[dict[str, object]] = [
        {
            "name": n,
            "permissions": sorted(p),
            "description": "built-in",
            "builtin": True,
            "scope": None,
        }
        for n, p in BUILTIN_ROLES.items()
    ]
    out += [
        {
            "name": n,
            "permissions": r["permissions"],
            "description": r["description"],
            "builtin": False,
            "scope": r.get("scope"),
        }
        for n, r in sorted(custom.items())
    ]
    return out


def _one(ctx: AppContext, name: str) -> dict[str, object]:
    found = next((r for r in _roles(ctx) if r["name"] == name), None)
    if found is None:
        raise ApiError(
            404, "not_found", f"name: no role {name!r}", [{"field": "name", "message": "not found"}]
        )
    return found


def _check(permissions: list[str]) -> None:
    unknown = unknown_permissions(permissions)
    if unknown:
        message = f"body.permissions: unknown permission(s) {', '.join(unknown)}"
        raise ApiError(
            400,
            "invalid_parameter",
            message,
            [{"field": "body.permissions", "message": message, "unknown": unknown}],
        )


@router.get("/roles", summary="List roles", response_model=models.Data[list[RoleOut]])
async def list_roles(
    ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    return JsonResponse({"data": _roles(ctx)})


@router.get("/roles/{name}", summary="Get a role", response_model=models.Data[RoleOut])
async def get_role(
    name: str, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    return JsonResponse({"data": _one(ctx, name)})


async def _put(ctx: AppContext, name: str, body: RoleBody, *, create: bool) -> JsonResponse:
    assert ctx.access is not None
    _check(body.permissions)
    if create and any(r["name"] == name for r in _roles(ctx)):
        raise ApiError(
            409,
            "conflict",
            f"body.name: a role {name!r} exists",
            [{"field": "body.name", "message": "exists"}],
        )
    if body.scope is not None:
        for i, raw in enumerate(body.scope.tags):
            tag_criterion(raw, f"body.scope.tags[{i}]")
    try:
        # only what was given: a pattern-only scope reads as it always did
        scope = body.scope.model_dump(exclude_defaults=True) if body.scope is not None else None
        before = ctx.access.users.put_role(name, body.permissions, body.description, scope)
    except AccessError as exc:
        raise api_error(exc) from None
    after = _one(ctx, name)
    audit_note(
        action="create" if before is None else "update",
        target_type="role",
        target_id=name,
        before=before,
        after=after,
    )
    return JsonResponse({"data": after}, status_code=201 if before is None else 200)


@router.post(
    "/roles",
    status_code=201,
    summary="Create a custom role",
    response_model=models.Data[RoleOut],
    responses=models.errors(409),
)
async def create_role(
    req: RoleCreate, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    """Unknown permission names → 400 naming them."""
    return await _put(ctx, req.name, req, create=True)


@router.put(
    "/roles/{name}",
    summary="Replace a custom role",
    response_model=models.Data[RoleOut],
    responses=models.errors(409),
)
async def put_role(
    name: str, req: RoleBody, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> JsonResponse:
    """Takes effect at the next request of every user and key holding the role."""
    _one(ctx, name)
    return await _put(ctx, name, req, create=False)


@router.delete(
    "/roles/{name}", status_code=204, summary="Delete a custom role", responses=models.errors(409)
)
async def delete_role(
    name: str, ctx: AppContext = Depends(context), _: Principal = Depends(admin)
) -> Response:
    """A role a user or key holds cannot be deleted (409)."""
    assert ctx.access is not None
    keys = ctx.access.keys
    try:
        before = ctx.access.users.delete_role(
            name, used_by_keys=lambda n: any(k.role == n for k in keys.list())
        )
    except AccessError as exc:
        raise api_error(exc) from None
    audit_note(action="delete", target_type="role", target_id=name, before=before)
    return Response(status_code=204)
