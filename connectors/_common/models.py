"""Typed models shared by every protocol of the commissioning file.

A protocol package subclasses :class:`ConnectionBase` and :class:`EndpointBase` with
its own fields (``extra="forbid"`` everywhere, so a misspelt key is a violation, not a
silent default) and registers them in a :class:`millrace.connectors.registry.ProtocolSpec`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DataType = Literal[
    "bool",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "string",
    "auto",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackoffConfig(Strict):
    """Reconnect delays: exponential from ``initial_ms`` to ``max_ms``, with full jitter."""

    initial_ms: int = Field(500, ge=1, description="First reconnect delay.")
    max_ms: int = Field(30_000, ge=1, description="Longest reconnect delay.")
    factor: float = Field(2.0, ge=1.0, le=10.0, description="Growth per failed attempt.")
    jitter: float = Field(
        0.5, ge=0.0, le=1.0, description="Fraction of each delay drawn at random (0 = none)."
    )

    @model_validator(mode="after")
    def _order(self) -> BackoffConfig:
        if self.initial_ms > self.max_ms:
            raise ValueError("initial_ms must not exceed max_ms")
        return self


class BufferConfig(Strict):
    """Store-and-forward while the log is unreachable: oldest first, bounded on disk."""

    max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=4096,
        description="Bound of the on-disk buffer; beyond it the oldest events are dropped "
        "and counted.",
    )
    segment_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Size of one buffer file.")


class ConnectionBase(Strict):
    """Settings every connection has; protocols add theirs."""

    protocol: str
    description: str = ""
    enabled: bool = Field(True, description="false: validated but not started.")
    batch_ms: int = Field(
        200,
        ge=1,
        le=60_000,
        description="Readings are grouped into TelemetryBatch events this often.",
    )
    max_batch_readings: int = Field(
        5000, ge=1, description="A batch is published early when it holds this many readings."
    )
    reconnect: BackoffConfig = BackoffConfig()
    buffer: BufferConfig = BufferConfig()


class EndpointBase(Strict):
    """One device value: where it is read (protocol fields) and what it becomes."""

    connection: str = Field(description="Name of a connection under `connections`.")
    identity: str = Field(
        min_length=1, max_length=256, description="Device identity the value belongs to."
    )
    signal: str = Field(min_length=1, max_length=256, description="Signal name of the value.")
    interval_ms: int = Field(
        1000, ge=1, le=86_400_000, description="Sampling (subscriptions) or poll interval."
    )
    deadband: float = Field(
        0.0,
        ge=0.0,
        description="Absolute deadband: a numeric change smaller than this is not reported.",
    )
    data_type: DataType = Field("auto", description="Type of the value at the device.")
    scale: float = Field(1.0, description="value = raw * scale + offset (numbers only).")
    offset: float = 0.0
    unit: str | None = Field(None, max_length=64)
    writable: bool = Field(False, description="Commands for this identity/signal are written back.")


class MappingConfig(Strict):
    """A rule applied to a connection's readings before they are published.

    ``identity``/``signal`` are glob patterns matched against the reading; the first
    matching rule applies. For MQTT, ``topic`` with ``values`` maps JSON payloads by
    JSON path (``$.a.b``) to signals; ``identity_path``/``timestamp_path`` pick the
    identity and source time from the payload.
    """

    connection: str = Field(description="Name of a connection under `connections`.")
    identity: str = Field("*", description="Glob matched against the reading's identity.")
    signal: str = Field("*", description="Glob matched against the reading's signal.")
    rename_identity: str | None = None
    rename_signal: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    # MQTT JSON payload mapping
    topic: str | None = Field(None, description="MQTT topic filter (wildcards + and #).")
    qos: Literal[0, 1] = 1
    identity_path: str | None = Field(
        None, description="JSON path of the identity in the payload; else `identity` is literal."
    )
    timestamp_path: str | None = Field(None, description="JSON path of the source time.")
    timestamp_format: Literal["epoch_s", "epoch_ms", "epoch_us", "iso8601"] = "epoch_ms"
    values: dict[str, str] = Field(
        default_factory=dict, description="signal -> JSON path of its value in the payload."
    )


class Violation(Strict):
    """One problem found in a commissioning file."""

    level: Literal["error", "warning"]
    json_path: str
    description: str

    def line(self) -> str:
        return f"{self.level} {self.json_path}: {self.description}"
