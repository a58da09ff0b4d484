"""Response shapes of the user, login and role routes (for the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel


class UserOut(BaseModel):
    username: str
    display_name: str
    email: str
    roles: list[str]
    enabled: bool
    created_us: int
    last_login_us: int | None
    password_changed_us: int


class TokenPair(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class SigningKeyOut(BaseModel):
    kid: str
    created_us: int
    #: None: the current key (it signs new tokens)
    retired_us: int | None


class RotationOut(BaseModel):
    kid: str
    dropped: list[str]
    keys: list[SigningKeyOut]


class PermissionOut(BaseModel):
    name: str
    description: str
    builtin_role: str


class RoleOut(BaseModel):
    name: str
    permissions: list[str]
    description: str
    builtin: bool
    scope: dict[str, list[str]] | None
