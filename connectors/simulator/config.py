"""Configuration of the simulator connector (the ``simulator:`` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SimulatorConfig(BaseModel):
    """Simulated devices producing telemetry, for demos, tests, benchmarks and backfill."""

    model_config = ConfigDict(extra="forbid")

    devices: int = Field(
        default=100, ge=0, description="Number of simulated devices; 0 turns it off."
    )
    signals: int = Field(default=10, ge=1, le=1000, description="Signals per device.")
    interval_ms: int = Field(
        default=1000, ge=1, description="Time between two samples of a device."
    )
    identity_prefix: str = Field(
        default="sim-", description="Device identities are prefix + index."
    )
    seed: int = Field(default=0, description="Same seed, same devices and readings.")
    start_us: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Simulated start time (epoch microseconds): timestamps are start_us + "
            "tick * interval. None: start at the wall clock."
        ),
    )
    realtime: bool = Field(
        default=True, description="Tick every interval; false: as fast as possible (backfill)."
    )
    batch_ticks: int = Field(
        default=1,
        ge=1,
        le=3600,
        description=(
            "Ticks one device's TelemetryBatch holds: 1 publishes every tick; n publishes "
            "batches of n rows every n intervals (fewer, larger records: less CPU and log "
            "bytes per reading, up to n-1 intervals more latency)."
        ),
    )
    max_ticks: int | None = Field(
        default=None,
        ge=0,
        description="Stop after producing this many ticks; None: run until stopped.",
    )
