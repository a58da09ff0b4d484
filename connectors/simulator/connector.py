"""The simulator connector: simulated devices publishing TelemetryBatch events.

Each tick produces one sample per device (all its signals) and publishes one batch per
device in a single ``publish`` call on the ``telemetry`` topic; with ``batch_ticks`` n,
one batch per device holds n ticks as n rows, published when the last is due (per
record costs, in the log and in the fold, are then shared by n times the readings).
Ticks follow a fixed schedule computed from the start, so work and publish latency do
not make them drift; a loop that falls a whole interval behind skips the missed ticks
(counted in :attr:`SimulatorConnector.stats`) instead of bursting to catch up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from millrace.pipeline.clock import now_us
from millrace.pipeline.connector import Connector, EventPublisher
from millrace.pipeline.errors import ConnectorError
from millrace.pipeline.events import telemetry_from_columns
from millrace.pipeline.telemetry_columns import (
    KIND_BOOLEAN,
    KIND_DOUBLE,
    KIND_LONG,
    KIND_STRING,
    Columns,
)
from millrace.pipeline.topics import TELEMETRY

from .config import SimulatorConfig
from .shapes import ShapeModel, signal_kind

log = logging.getLogger(__name__)

SOURCE = "simulator"

# What write() accepts per signal kind; ints widen to float for analog signals.
_WRITE_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": (float, int),
    "pressure": (float, int),
    "setpoint": (float, int),
    "counter": (int,),
    "running": (bool,),
    "mode": (str,),
}


#: numpy dtype kind of a shape's values -> the batch kind they are carried as
_BATCH_KINDS = {"f": KIND_DOUBLE, "b": KIND_BOOLEAN, "O": KIND_STRING, "U": KIND_STRING}
_BATCH_KINDS["i"] = KIND_LONG
_AS_KIND: dict[int, Callable[[Any], Any]] = {
    KIND_DOUBLE: float,
    KIND_BOOLEAN: bool,
    KIND_STRING: str,
    KIND_LONG: int,
}


@dataclass(frozen=True, slots=True)
class SimulatorStats:
    """Counters of a simulator since it was created.

    ``ticks`` were generated; ``batches`` and ``readings`` were published successfully;
    ``skipped_ticks`` were dropped because the loop fell behind schedule; ``errors``
    counts failed publishes (their tick is dropped).
    """

    ticks: int = 0
    batches: int = 0
    readings: int = 0
    skipped_ticks: int = 0
    errors: int = 0


def schedule(tick: int, origin: float, interval_s: float, now: float) -> tuple[int, int, float]:
    """Decide what the loop does next for ``tick`` due at ``origin + tick * interval_s``.

    Returns ``(tick, skipped, delay)``: the tick to produce, how many ticks were skipped
    to get there, and how long to sleep first.  A tick late by less than an interval is
    produced at once; a later one jumps to the most recent due tick, so one slow publish
    never causes a burst.
    """
    delay = origin + tick * interval_s - now
    if delay >= 0:
        return tick, 0, delay
    skipped = int(-delay // interval_s)
    return tick + skipped, skipped, 0.0


class SimulatorConnector(Connector):
    """Simulated devices ``<identity_prefix><n>`` whose signals follow the shapes of
    :mod:`millrace.connectors.simulator.shapes`.

    Time stamps advance by exactly one interval per tick from ``config.start_us`` (or
    the clock at start), and a batch's ``received_us`` equals its sample time, so a
    run with ``start_us`` set is fully deterministic.  :meth:`generate_tick` builds a
    tick without asyncio; :meth:`write` makes a device report a given value.
    """

    name = "simulator"

    def __init__(self, config: SimulatorConfig, clock: Callable[[], int] | None = None) -> None:
        self.config = config
        self._clock = clock or now_us
        self._model: ShapeModel | None = None
        self._identities: list[str] = []
        self._index: dict[str, int] = {}
        self._overrides: dict[int, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._next_tick = 0
        self._ticks = self._batches = self._readings = self._skipped = self._errors = 0

    def init(self) -> None:
        """Draw the devices' parameters (no I/O); called by start() if not before."""
        if self._model is not None:
            return
        cfg = self.config
        self._model = ShapeModel(
            seed=cfg.seed, devices=cfg.devices, signals=cfg.signals, interval_ms=cfg.interval_ms
        )
        self._identities = [f"{cfg.identity_prefix}{i}" for i in range(cfg.devices)]
        self._index = {identity: i for i, identity in enumerate(self._identities)}

    @property
    def identities(self) -> list[str]:
        """The simulated devices' identities, in device order."""
        self.init()
        return list(self._identities)

    @property
    def signal_names(self) -> list[str]:
        """The signals every device reports, in signal order."""
        self.init()
        assert self._model is not None
        return list(self._model.names)

    @property
    def stats(self) -> SimulatorStats:
        """A snapshot of the counters."""
        return SimulatorStats(
            ticks=self._ticks,
            batches=self._batches,
            readings=self._readings,
            skipped_ticks=self._skipped,
            errors=self._errors,
        )

    def generate_tick(self, tick_index: int, ts_us: int) -> list[tuple[str, dict[str, Any]]]:
        """The ``(identity, TelemetryBatch)`` pairs of tick ``tick_index``, stamped
        ``ts_us``: one batch of one row per device.  Pure apart from write()
        overrides; the shapes depend on ``tick_index`` only."""
        return self.generate_ticks(tick_index, 1, ts_us, 0)

    def generate_ticks(
        self, first_tick: int, ticks: int, ts_us: int, interval_us: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """The ``(identity, TelemetryBatch)`` pairs of ``ticks`` ticks from
        ``first_tick``: one batch per device whose row ``r`` is tick ``first_tick + r``,
        stamped ``ts_us + r * interval_us`` (``batch_ticks``)."""
        return [
            (identity, telemetry_from_columns(identity, cols, received_us=ts_us, source=SOURCE))
            for identity, cols in self.block_columns(first_tick, ticks, ts_us, interval_us)
        ]

    def tick_columns(self, tick_index: int, ts_us: int) -> list[tuple[str, Columns]]:
        """Tick ``tick_index`` as the column-wise readings of each device."""
        return self.block_columns(tick_index, 1, ts_us, 0)

    def block_columns(
        self, first_tick: int, ticks: int, ts_us: int, interval_us: int
    ) -> list[tuple[str, Columns]]:
        """``ticks`` ticks from ``first_tick`` as the column-wise readings of each
        device (a dense batch of ``ticks`` rows): numpy makes every value of every
        tick, one ``tolist`` per value type splits them by device, each signal's
        values in row order."""
        self.init()
        assert self._model is not None
        signals = list(self._model.names)
        kinds = [0] * len(signals)
        # model.columns gives its value types in the same order at every tick
        entries: list[tuple[list[int], list[npt.NDArray[Any]]]] = []
        for r in range(ticks):
            for at, (indices, array) in enumerate(self._model.columns(first_tick + r)):
                if r == 0:
                    entries.append((indices, []))
                entries[at][1].append(array)
        parts: dict[int, list[tuple[list[int], list[npt.NDArray[Any]]]]] = {}
        for indices, arrays in entries:
            kind = _BATCH_KINDS[arrays[0].dtype.kind]
            for j in indices:
                kinds[j] = kind
            parts.setdefault(kind, []).append((indices, arrays))
        by_kind: dict[int, list[list[Any]]] = {}
        for kind, held in parts.items():
            indices = [j for idx, _ in held for j in idx]
            # (devices, signals of the kind, rows), signals in the names' order
            block = np.concatenate([np.stack(rows, axis=2) for _, rows in held], axis=1)
            block = block[:, np.argsort(indices, kind="stable"), :]
            by_kind[kind] = block.reshape(block.shape[0], -1).tolist()
        for device, values in self._overrides.items():
            self._override(by_kind, signals, kinds, device, values, ticks)
        empty: list[list[Any]] = [[]] * len(self._identities)
        doubles, booleans, strings, longs = (
            by_kind.get(k, empty) for k in (KIND_DOUBLE, KIND_BOOLEAN, KIND_STRING, KIND_LONG)
        )
        ts, quality = [ts_us + r * interval_us for r in range(ticks)], [0] * ticks
        return [
            (
                identity,
                Columns(ts, quality, signals, kinds, None, None, d, b, s, n),
            )
            for identity, d, b, s, n in zip(
                self._identities, doubles, booleans, strings, longs, strict=True
            )
        ]

    @staticmethod
    def _override(
        by_kind: dict[int, list[list[Any]]],
        signals: list[str],
        kinds: list[int],
        device: int,
        values: dict[str, Any],
        ticks: int,
    ) -> None:
        """Put a device's written values in place of the simulated ones, in every row."""
        for signal, value in values.items():
            j = signals.index(signal)
            kind = kinds[j]
            at = kinds[:j].count(kind) * ticks
            by_kind[kind][device][at : at + ticks] = [_AS_KIND[kind](value)] * ticks

    async def write(self, identity: str, signal: str, value: Any) -> None:
        """Make device ``identity`` report ``value`` for ``signal`` from the next tick
        on, as a device does after a write; raise ConnectorError for an unknown device
        or signal, or a value of the wrong type for the signal's kind."""
        self.init()
        assert self._model is not None
        device = self._index.get(identity)
        if device is None:
            raise ConnectorError(f"simulator: unknown device {identity!r}")
        if signal not in self._model.names:
            raise ConnectorError(f"simulator: device {identity!r} has no signal {signal!r}")
        kind = signal_kind(signal)
        accepted = _WRITE_TYPES[kind]
        # bool is an int, but a flag is not a number (nor a number a flag).
        if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
            raise ConnectorError(
                f"simulator: cannot write {type(value).__name__} {value!r} to {kind} "
                f"signal {signal!r} of {identity!r}"
            )
        reported: Any = value
        if float in accepted:
            reported = float(reported)
        self._overrides.setdefault(device, {})[signal] = reported

    async def start(self, publisher: EventPublisher) -> None:
        """Start ticking in a background task; no-op if running or ``devices`` is 0."""
        if self._task is not None and not self._task.done():
            return
        if self.config.devices == 0:
            log.info("simulator: 0 devices, not starting")
            return
        self.init()
        self._task = asyncio.create_task(self._run(publisher), name="millrace-simulator")

    async def stop(self) -> None:
        """Cancel the tick task and wait for it; safe to call any number of times."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            # Re-raise only if stop() itself is being cancelled.
            if current is not None and current.cancelling():
                raise

    async def wait(self) -> None:
        """Wait until the tick task ends (``max_ticks`` reached, or stopped)."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _run(self, publisher: EventPublisher) -> None:
        try:
            await self._tick_loop(publisher)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("simulator: tick loop failed, stopping")

    async def _tick_loop(self, publisher: EventPublisher) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        interval_s = cfg.interval_ms / 1000
        interval_us = cfg.interval_ms * 1000
        tick = self._next_tick
        # A restart continues the tick sequence, so time and counters keep growing.
        origin = loop.time() - tick * interval_s
        anchor_us = cfg.start_us
        if anchor_us is None:
            anchor_us = self._clock() - tick * interval_us
        failing = False
        while cfg.max_ticks is None or self._ticks < cfg.max_ticks:
            n = cfg.batch_ticks
            if cfg.max_ticks is not None:
                n = min(n, cfg.max_ticks - self._ticks)
            if cfg.realtime:
                # a batch of n ticks goes out when its last tick is due
                last, skipped, delay = schedule(tick + n - 1, origin, interval_s, loop.time())
                tick = last - (n - 1)
                self._skipped += skipped
                if delay > 0:
                    await asyncio.sleep(delay)
            events = self.generate_ticks(tick, n, anchor_us + tick * interval_us, interval_us)
            tick += n
            self._next_tick = tick
            self._ticks += n
            try:
                await publisher.publish(TELEMETRY, events)
            except Exception:
                if not failing:
                    log.exception("simulator: publish failed, dropping ticks until it recovers")
                failing = True
                self._errors += 1
            else:
                if failing:
                    log.info("simulator: publish recovered (%d errors so far)", self._errors)
                failing = False
                self._batches += len(events)
                self._readings += len(events) * cfg.signals * n
            if not cfg.realtime:
                await asyncio.sleep(0)  # let stop() and other tasks in
