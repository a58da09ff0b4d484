"""The simulator's connection and endpoint models (``protocol: simulator``), apart from
the connector (``protocol``, which loads numpy and the codec): validating a
commissioning file needs the models only."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from millrace.connectors._common.models import ConnectionBase, EndpointBase

__all__ = ["SimulatorConnection", "SimulatorEndpoint"]


class SimulatorConnection(ConnectionBase):
    protocol: Literal["simulator"]
    devices: int = Field(10, ge=1, le=100_000, description="Number of simulated devices.")
    signals: int = Field(5, ge=1, le=1000, description="Signals per device.")
    interval_ms: int = Field(1000, ge=1, description="Time between two samples of a device.")
    identity_prefix: str = Field("sim-", description="Device identities are prefix + index.")
    seed: int = Field(0, description="Same seed, same devices and readings.")
    start_us: int | None = Field(
        None,
        ge=0,
        description="Simulated start time (epoch microseconds): timestamps are start_us + "
        "tick * interval. None: start at the wall clock.",
    )
    realtime: bool = Field(
        True, description="Tick every interval; false: as fast as possible (backfill)."
    )
    max_ticks: int | None = Field(
        None, ge=0, description="Stop after producing this many ticks; None: run until stopped."
    )
    batch_ticks: int = Field(
        1,
        ge=1,
        le=3600,
        description="Ticks made at once, as rows of one batch per device (published when "
        "the last is due): fewer, larger records, up to n-1 intervals more latency.",
    )


class SimulatorEndpoint(EndpointBase):
    """Marks a simulated signal writable (Commands) or scales it; address-free."""
