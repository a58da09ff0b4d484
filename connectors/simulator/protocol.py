"""The simulator as a protocol of the commissioning file (``protocol: simulator``).

It drives :class:`SimulatorConnector`'s device model through the
:class:`ProtocolConnector` machinery, so simulated devices get the same status,
store-and-forward, batching, mappings and Command write-back as real ones: a write
makes the device report the written value from its next tick on. The ``simulator:``
section of ``millrace run`` is shorthand for one such connection (named
``simulator``; see :func:`millrace.connectors.simulator.section.simulator_connection`).

Ticks follow a schedule fixed at start (:func:`~millrace.connectors.simulator.connector.schedule`):
a tick late by a whole interval is skipped and counted (``skipped_ticks``), never
burst. A device without endpoints and a connection without mappings take the fast path:
a tick's sample goes to the batcher whole (its times advance and its values are storable
by construction), which keeps the high rates of the benchmarks.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field

from millrace.connectors._common.base import ProtocolConnector
from millrace.connectors._common.models import ConnectionBase, EndpointBase
from millrace.pipeline.telemetry_columns import iter_samples

from .config import SimulatorConfig
from .connector import SimulatorConnector, schedule


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
        self.counters.update(ticks=0.0, skipped_ticks=0.0)
        self._tick = 0
        self._slow: set[str] = set()

    async def connect(self) -> None:
        self.sim.init()
        # devices with endpoints go reading by reading (scale, deadband, units)
        self._slow = {ep.identity for ep in self.endpoints}

    async def serve(self) -> None:
        c = self.connection
        assert isinstance(c, SimulatorConnection)
        loop = asyncio.get_running_loop()
        interval_s = c.interval_ms / 1000
        interval_us = c.interval_ms * 1000
        tick = self._tick
        # a restart continues the tick sequence, so time and counters keep growing
        origin = loop.time() - tick * interval_s
        anchor_us = c.start_us if c.start_us is not None else self.now_us() - tick * interval_us
        counters = self.counters
        while c.max_ticks is None or counters["ticks"] < c.max_ticks:
            if c.realtime:
                tick, skipped, delay = schedule(tick, origin, interval_s, loop.time())
                counters["skipped_ticks"] += skipped
                if delay > 0:
                    await asyncio.sleep(delay)
            self._emit_tick(tick, anchor_us + tick * interval_us)
            tick += 1
            self._tick = tick
            counters["ticks"] += 1
            if self.batcher.full:
                await self.flush()  # a tick larger than a batch: publish before the next
            elif not c.realtime:
                await asyncio.sleep(0)  # let stop() and the other tasks in
        await asyncio.Future()  # max_ticks reached: connected, idle until stopped

    def _emit_tick(self, tick: int, ts: int) -> None:
        fast = not self.mappings
        n = 0
        for identity, cols in self.sim.tick_columns(tick, ts):
            if fast and identity not in self._slow:
                self.batcher.add_columns(identity, cols)
                n += cols.readings
                continue
            values = next(iter_samples(cols.fields()))[2]
            for signal, value in values.items():
                ep = self._by_key.get((identity, signal))
                if ep is not None:
                    self.emit(ep, value, ts_us=ts)
                else:
                    self.emit_reading(identity, signal, value, ts_us=ts)
        self.counters["readings"] += n

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
