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
from typing import Any

from millrace.connectors._common.base import ProtocolConnector
from millrace.connectors._common.models import EndpointBase
from millrace.pipeline.telemetry_columns import iter_samples

from .config import SimulatorConfig
from .connector import SimulatorConnector, schedule
from .models import SimulatorConnection, SimulatorEndpoint

__all__ = ["SimulatorConnection", "SimulatorEndpoint", "SimulatorProtocolConnector"]


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
                batch_ticks=c.batch_ticks,
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
            n = c.batch_ticks
            if c.max_ticks is not None:
                n = min(n, c.max_ticks - int(counters["ticks"]))
            if c.realtime:
                # n ticks go out together when the last of them is due
                last, skipped, delay = schedule(tick + n - 1, origin, interval_s, loop.time())
                tick = last - (n - 1)
                counters["skipped_ticks"] += skipped
                if delay > 0:
                    await asyncio.sleep(delay)
            self._emit_ticks(tick, n, anchor_us + tick * interval_us, interval_us)
            tick += n
            self._tick = tick
            counters["ticks"] += n
            if self.batcher.full:
                await self.flush()  # a tick larger than a batch: publish before the next
            elif not c.realtime:
                await asyncio.sleep(0)  # let stop() and the other tasks in
        await asyncio.Future()  # max_ticks reached: connected, idle until stopped

    def _emit_ticks(self, tick: int, ticks: int, ts: int, interval_us: int) -> None:
        fast = not self.mappings
        n = 0
        for identity, cols in self.sim.block_columns(tick, ticks, ts, interval_us):
            if fast and identity not in self._slow:
                self.batcher.add_columns(identity, cols)
                n += cols.readings
                continue
            for row_ts, _, values in iter_samples(cols.fields()):
                for signal, value in values.items():
                    ep = self._by_key.get((identity, signal))
                    if ep is not None:
                        self.emit(ep, value, ts_us=row_ts)
                    else:
                        self.emit_reading(identity, signal, value, ts_us=row_ts)
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
