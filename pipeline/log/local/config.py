"""Configuration of the embedded segment log."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MiB = 1024 * 1024


class LocalLogConfig(BaseModel):
    """Settings of :class:`~millrace.pipeline.log.local.LocalEventLog`.

    ``fsync`` decides when an append is acknowledged: ``batch`` fsyncs the segment before
    every append returns (no acknowledged record is lost on power failure), ``interval``
    fsyncs at most every ``fsync_interval_ms`` (on append and on ``flush()``), ``never``
    leaves it to the OS (a process crash loses nothing, a power failure may).
    ``compression`` ``zstd`` stores each large record value (1 KiB and more) as a
    zstandard frame when that is smaller (``records``); reads give back the value as
    appended, whichever way it was stored.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    partitions: int = Field(default=4, ge=1, description="partitions of a topic not listed below")
    partitions_per_topic: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    fsync: Literal["batch", "interval", "never"] = "batch"
    fsync_interval_ms: int = Field(default=1000, ge=0)
    segment_bytes: int = Field(default=64 * MiB, ge=1, description="roll a segment past this")
    retention_bytes: int | None = Field(default=None, ge=0, description="per partition")
    retention_ms: int | None = Field(
        default=None, ge=0, description="by age of the newest record of a segment"
    )
    index_interval_bytes: int = Field(default=4096, ge=1)
    compression: Literal["zstd", "none"] = "zstd"

    def partitions_of(self, topic: str) -> int:
        """Configured partition count of ``topic`` (a new topic is created with it)."""
        return self.partitions_per_topic.get(topic, self.partitions)
