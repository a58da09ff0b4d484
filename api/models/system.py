"""Answers about the engine, connectors, keys, analyst SQL, configuration and streams."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# -- system, SQL, config, stream -----------------------------------------------------------


class EngineStatus(BaseModel):
    data: dict[str, Any] = Field(description="runtime counters, consumer positions, connectors")


class ConnectorOut(BaseModel):
    data: dict[str, Any] = Field(description="name, desired and current state, info, metrics")


class ConnectorList(BaseModel):
    data: list[dict[str, Any]]


class TemplateList(BaseModel):
    data: list[str] = Field(description="protocols with a commissioning file template")


class Me(BaseModel):
    key_id: str
    name: str
    role: str = Field(description="a built-in or custom role; a user's roles joined by ','")
    username: str | None = Field(None, description="signed-in users only")
    roles: list[str] | None = Field(None, description="signed-in users only")
    permissions: list[str] | None = Field(None, description="signed-in users only")


class KeyOut(BaseModel):
    id: str
    name: str
    role: str
    created_us: int
    expires_us: int | None
    last_used_us: int | None
    rotated_us: int | None


class KeyCreated(KeyOut):
    key: str = Field(description="the key, shown once")


class SqlColumn(BaseModel):
    name: str
    type: str


class SqlMeta(BaseModel):
    rows: int
    rows_read: int
    elapsed_ms: float


class SqlResult(BaseModel):
    columns: list[SqlColumn]
    rows: list[list[Any]]
    meta: SqlMeta


class ViolationOut(BaseModel):
    level: Literal["error", "warning"]
    json_path: str
    description: str


class Validation(BaseModel):
    status: Literal["passed", "failed"]
    violations: list[ViolationOut]


class SubscriptionOut(BaseModel):
    id: str
    kind: str
    filters: dict[str, Any]
