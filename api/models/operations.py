"""Response models of the operations API (``api.routers.operations``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class DiskUsage(BaseModel):
    data_bytes: int
    log_bytes: int


class SystemInfo(BaseModel):
    version: str
    build: str
    deployment: str
    started_us: int
    uptime_s: float
    python: str
    platform: str
    store_version: str
    data_dir: str | None
    disk: DiskUsage | None
    paused: bool


class SystemPoint(BaseModel):
    time_us: int
    #: distinct (identity, signal) pairs that reported in the bucket
    datapoints: int
    #: good-quality readings received in the bucket
    messages: int


class SystemMetrics(BaseModel):
    interval: str
    points: list[SystemPoint]


class PipelineState(BaseModel):
    paused: bool
    lag_records: int


class LogRecordOut(BaseModel):
    seq: int
    time_us: int
    level: str
    logger: str
    message: str


class RunningConfig(BaseModel):
    #: the configuration, secrets masked
    config: dict[str, Any]
    #: runtime-changeable settings and their current values
    runtime: dict[str, Any]
