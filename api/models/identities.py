"""Answers about identities, their tags and states, provisioning and ingest, resources
and their states."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from millrace.api.models.common import Reading, Time
from millrace.pipeline.identities.resources import ResourceDefinition

# -- identities -----------------------------------------------------------------------------


class IdentityResourceState(BaseModel):
    """Desired (set) and reported value of one resource of an identity."""

    set: Any = Field(description="the desired value, null when none is set")
    set_ts_us: int | None
    set_by: str | None
    reported: Reading
    reported_ts_us: int | None
    pending: bool = Field(description="set and neither acknowledged nor timed out")
    acknowledged_us: int | None
    timed_out_us: int | None
    stale: bool


class IdentityOut(BaseModel):
    """An identity of the registry (credentials are never shown)."""

    identity: str
    status: str = Field(description="whitelisted, provisioned, reprovision, expired, locked")
    online: bool
    lastseen_us: int | None
    lastip: str | None
    connected_us: int | None
    disconnected_us: int | None
    created_us: int | None
    updated_us: int | None
    provisioned_us: int | None
    provision_until_us: int | None
    credential_expires_us: int | None
    auth_type: str | None
    inactivity_timeout_s: int
    attributes: dict[str, str]
    tags: dict[str, list[str]]
    state: dict[str, IdentityResourceState]


class IdentityCreated(IdentityOut):
    token: str | None = Field(None, description="the generated device token, shown once")


class ListMeta(BaseModel):
    limit: int
    offset: int
    may_load_more: bool


class IdentityList(BaseModel):
    items: list[IdentityOut]
    meta: ListMeta


class Count(BaseModel):
    count: int


class BulkUpdated(BaseModel):
    matched: int
    updated: int


class BulkDeleted(BaseModel):
    deleted: int


class TagsOut(BaseModel):
    tags: dict[str, list[str]]


class TagNames(BaseModel):
    tags: list[str]


class TagValues(BaseModel):
    tag: str
    values: list[str]


class StateSet(BaseModel):
    state: dict[str, IdentityResourceState]
    commands: list[str] = Field(description="ids of the Commands sent to the connector")


class Ingested(BaseModel):
    status: Literal["accepted"]
    identity: str
    samples: int
    readings: int


class Provisioned(BaseModel):
    identity: str
    auth_type: Literal["token", "password", "certificate"]
    token: str | None = Field(None, description="the generated token, shown once")
    credential_expires_us: int | None = None


# -- resources and their states -----------------------------------------------------------


class ResourceOut(ResourceDefinition):
    """A resource definition with its name and last change."""

    name: str
    updated_us: int | None = Field(None, description="absent until the projection holds it")
    updated_by: str | None = None


class ResourceList(BaseModel):
    items: list[ResourceOut]


class ResourceStateOut(BaseModel):
    resource_id: str
    service_id: str
    resource_type: str
    desired_state: str
    current_state: str
    deviated: bool
    info: str
    runner: str | None
    timestamp: Time
    since: Time
    deviated_since: Time | None
    metrics: dict[str, float]


class DeviationCount(BaseModel):
    service_id: str
    count: int


class RunnerOut(BaseModel):
    runner: str
    last: Time
    first: Time
    interval_s: float
    explicit_heartbeat: bool
    state: str | None
    service_ids: list[str]
    misses: int
    healthy: bool
