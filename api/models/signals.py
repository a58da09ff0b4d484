"""Answers about signals: points, aggregates, latest values, device metrics, dead
letters."""

from __future__ import annotations

from typing import Generic, Literal

from pydantic import BaseModel, Field

from millrace.api.models.common import PageMeta, Reading, T, Time

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
