"""Answers about alarms, their rules and annotations, audits and activities."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from millrace.api.models.common import PageMeta, Time
from millrace.pipeline.alarms.rules import AlarmRule

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
