"""The simulator as a protocol of the commissioning file (``protocol: simulator``).

It drives :class:`SimulatorConnector`'s device model through the
:class:`ProtocolConnector` machinery, so simulated devices get the same status,
batching, mappings and Command write-back as real ones: a write makes the device
report the written value from its next tick on. (The top-level ``simulator:``
section of ``millrace run`` still uses the vectorised connector, for benchmarks.)
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field

from connectors._common.base import ProtocolConnector
from connectors._common.models import ConnectionBase, EndpointBase

from .config import SimulatorConfig
from .connector import SimulatorConnector


class SimulatorConnection(ConnectionBase):
    protocol: Literal["simulator"]
    devices: int = Field(10, ge=1, le=100_000, description="Number of simulated devices.")
    signals: int = Field(5, ge=1, le=1000, description="Signals per device.")
    interval_ms: int = Field(1000, ge=1, description="Time between two samples of a device.")
    identity_prefix: str = Field("sim-", description="Device identities are prefix + index.")
    seed: int = 0


class SimulatorEndpoint(EndpointBase):
    """Marks a simulated signal writable (Commands) or scales it; address-free."""


class SimulatorProtocolConnector(ProtocolConnector):
    protocol = "simulator"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c = self.connection
        assert isinstance(c, SimulatorConnection)
        self.sim = SimulatorConnector(
            SimulatorConfig(
                devices=c.devices,
                signals=c.signals,
                interval_ms=c.interval_ms,
                identity_prefix=c.identity_prefix,
                seed=c.seed,
            ),
            clock=self.clock,
        )
        self._tick = 0

    async def connect(self) -> None:
        self.sim.init()

    async def serve(self) -> None:
        assert isinstance(self.connection, SimulatorConnection)
        interval_s = self.connection.interval_ms / 1000
        while True:
            ts = self.now_us()
            for identity, batch in self.sim.generate_tick(self._tick, ts):
                for signal, value in batch["samples"][0]["values"].items():
                    ep = self._by_key.get((identity, signal))
                    if ep is not None:
                        self.emit(ep, value, ts_us=ts)
                    else:
                        self.emit_reading(identity, signal, value, ts_us=ts)
            self._tick += 1
            await asyncio.sleep(interval_s)

    async def disconnect(self) -> None:
        pass

    def handles(self, identity: str, signal: str) -> bool:
        return identity in self.sim.identities and signal in self.sim.signal_names

    async def execute(self, command: dict[str, Any]) -> None:
        key = (command["identity"], command["resource"])
        if key not in self._by_key:  # every simulated signal can be written
            self._by_key[key] = SimulatorEndpoint(
                connection=self.name, identity=key[0], signal=key[1], writable=True
            )
        await super().execute(command)

    async def write(self, endpoint: EndpointBase, value: Any) -> None:
        await self.sim.write(endpoint.identity, endpoint.signal, value)
