"""What the API answers, as pydantic models for the OpenAPI document.

Routes build their answers as dicts and return a ``JsonResponse`` (orjson); FastAPI
does not validate or serialize what a route returns as a Response, so declaring these
models (``response_model=`` and ``responses=``) documents the answers and costs nothing
per request. They must stay true: ``tests/test_fuzz_openapi.py`` checks every answer of
a running engine against them.

Times: fields typed :data:`Time` are ISO-8601 strings (UTC) by default and epoch
numbers in the unit of the ``epoch=`` parameter (s, ms or us) when it is given.
Fields ending in ``_us`` are always integer epoch microseconds.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from pipeline.alarms.rules import AlarmRule
from pipeline.identities.resources import ResourceDefinition

T = TypeVar("T")

Time = Annotated[
    str | int | float,
    Field(description="ISO-8601 (UTC); an epoch number in the unit of `epoch=` when given"),
]
#: a reading: numbers as floats (null for NaN/inf), booleans and strings as they came
Reading = bool | float | str | None
#: an aggregate field: count is an integer, min/max/sum/avg numbers, first/last readings
AggregateValue = bool | int | float | str | None


# -- errors -------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str = Field(description="stable error code, e.g. invalid_parameter, not_found")
    message: str = Field(description="what went wrong, starting with the field when one did")
    details: list[dict[str, Any]] | dict[str, Any] = Field(
        description="one entry per problem, each naming its `field` and `message`"
    )


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorInfo


ERROR_DESCRIPTIONS = {
    400: "Invalid request: the error names the field",
    401: "Missing or invalid credential",
    403: "The caller's role (or the object's status) does not allow this",
    404: "No such object (or no route for this path)",
    409: "Conflicts with the current state",
    413: "Request body too large",
    429: "Too many requests or failed attempts; try again later",
    503: "Overloaded or not available in this deployment",
}


def errors(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: the error body for each status (``descriptions`` by
    ``s404="..."`` override the generic text)."""
    return {
        s: {"model": ErrorBody, "description": descriptions.get(f"s{s}", ERROR_DESCRIPTIONS[s])}
        for s in statuses
    }


# -- envelopes and paging -----------------------------------------------------------------


class Data(BaseModel, Generic[T]):
    """``{"data": ...}``."""

    data: T


class Pagination(BaseModel):
    """``meta.pagination`` of the page/limit lists."""

    page: int | None = Field(description="1-based; null when paging by continuation token")
    limit: int
    rows_in_page: int
    next_page: int | None = Field(description="null: this is the last page")
    total_rows: int | None = Field(None, description="absent where counting is not done")
    total_pages: int | None = None


class PageMeta(BaseModel):
    pagination: Pagination


class Page(BaseModel, Generic[T]):
    """A page of a list: ``data`` and ``meta.pagination``."""

    data: list[T]
    meta: PageMeta


class CountedPage(Page[T], Generic[T]):
    total: int = Field(description="rows matching, over every page")


class NumberedPagination(BaseModel):
    """``meta.pagination`` of the resource state lists (page/items_per_page)."""

    total_pages: int
    total_rows: int
    page_number: int
    rows_in_page: int
    next_page: int | None


class NumberedPageMeta(BaseModel):
    pagination: NumberedPagination


class NumberedPage(BaseModel, Generic[T]):
    data: list[T]
    meta: NumberedPageMeta


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


# -- signals --------------------------------------------------------------------------------


class Point(BaseModel):
    timestamp: Time
    value: Reading
    quality: int


class SignalPoints(BaseModel):
    identity: str
    signal: str
    points: list[Point]


class SignalsPoints(BaseModel):
    identity: str
    signals: dict[str, list[Point]]


class AggregatePoint(BaseModel):
    """One bucket; only the fields asked for (``fields=``) are present."""

    timestamp: Time = Field(description="bucket start")
    count: int | None = None
    min: float | None = None
    max: float | None = None
    sum: float | None = None
    avg: float | None = None
    first: Reading = None
    last: Reading = None


class SignalAggregates(BaseModel):
    identity: str
    signal: str
    bucket: Literal["1m", "5m", "1h"]
    points: list[AggregatePoint]


class SignalsAggregates(BaseModel):
    identity: str
    bucket: Literal["1m", "5m", "1h"]
    signals: dict[str, list[AggregatePoint]]


class SignalPage(BaseModel, Generic[T]):
    data: T
    meta: PageMeta


class LatestValue(BaseModel):
    identity: str
    signal: str
    timestamp: Time
    value: Reading
    quality: int
    received: Time


class MetricPoint(BaseModel):
    time: Time
    value: int | float


class DeviceMetrics(BaseModel):
    metric_name: str
    aggregate_window: Literal["1m", "5m", "1h"]
    aggregate_fn: Literal["count", "max", "min", "sum", "avg"]
    points: list[MetricPoint]


class DeadLetterOut(BaseModel):
    timestamp: Time
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    stage: str
    error_type: str
    reason: str
    key: str | None
    payload: str | None


# -- alarms, audit ----------------------------------------------------------------------------


class AlarmManagement(BaseModel):
    status: Literal["pending", "acknowledged", "discarded"]
    acknowledged_by: str | None
    acknowledged_time: Time | None
    acknowledge_note: str | None
    discarded_by: str | None
    discarded_time: Time | None
    discard_note: str | None


class AlarmOut(BaseModel):
    alarm_id: str
    rule_id: str
    type: str
    identity: str
    signal: str | None
    priority: int
    message: str
    trigger_value: Any
    state: Literal["active", "cleared"]
    creation_time: Time
    clear_time: Time | None
    clear_value: Any
    requires_ack: bool
    open: bool
    management: AlarmManagement
    annotation_count: int
    last_update_time: Time


class AlarmPageMeta(PageMeta):
    continuation_token: str | None = Field(description="for the next page; null at the end")


class AlarmPage(BaseModel):
    data: list[AlarmOut]
    meta: AlarmPageMeta


class AnnotationOut(BaseModel):
    alarm_id: str
    seq: int
    time: Time
    user: str | None
    text: str


class BatchItem(BaseModel):
    id: str
    status: Literal[200, 404, 409]
    error: str | None


class BatchMeta(BaseModel):
    succeeded: int
    failed: int


class BatchResult(BaseModel):
    """One result per id given, in order; 207 when any failed."""

    data: list[BatchItem]
    meta: BatchMeta


class AlarmRuleOut(AlarmRule):
    """A rule definition with its read-only fields."""

    last_update_time: Time | None
    updated_by: str | None


class AuditOut(BaseModel):
    id: str
    creation_time: Time
    actor: str
    actor_role: str
    action: str
    target_type: str
    target_id: str
    before: Any
    after: Any
    status: str = Field(description="ok, or the error code of a refused write")
    request_id: str | None
    source_ip: str | None


class ActivityOut(BaseModel):
    activity_type: Literal["alarm", "audit"]
    id: str
    creation_time: Time
    priority: int | None
    alarm: AlarmOut | None = None
    audit: AuditOut | None = None


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
    role: Literal["viewer", "operator", "admin"]


class KeyOut(BaseModel):
    id: str
    name: str
    role: Literal["viewer", "operator", "admin"]
    created_us: int


class KeyCreated(BaseModel):
    id: str
    name: str
    role: Literal["viewer", "operator", "admin"]
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
