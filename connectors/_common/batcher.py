"""Batcher: readings into TelemetryBatch events, pure (no clock, no I/O, no asyncio).

A reading passes three filters before it waits for the next batch: a source time that
does not advance for its (identity, signal) is dropped (a value re-sent after a
re-subscription), a numeric value within the deadband of the last one kept is dropped,
and the first matching mapping renames or scales it. Values the Avro schema cannot hold
are made storable (no value: NaN; an integer beyond a long: a float; NaN or infinity:
text). :meth:`Batcher.take` then hands out one TelemetryBatch per identity, samples in
time order, a sample holding every signal read at one (time, quality).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from typing import Any

from millrace.pipeline.events import sample, telemetry_batch

from .models import MappingConfig

#: (time, quality) -> signal -> value
Samples = dict[tuple[int, int], dict[str, Any]]


class Batcher:
    """Pending readings of one connection, grouped per identity and sample."""

    def __init__(self, mappings: Sequence[MappingConfig] = (), max_readings: int = 5000) -> None:
        # payload mappings (with a topic) are applied by the protocol (MQTT)
        self.mappings = [m for m in mappings if m.topic is None]
        self.max_readings = max_readings
        #: drop a reading whose source time does not advance; False where times
        #: legitimately repeat (overlapping files)
        self.drop_repeated_times = True
        #: (identity, signal) -> the newest source time kept (the files connector
        #: persists it as its watermarks)
        self.last_ts: dict[tuple[str, str], int] = {}
        self.last_value: dict[tuple[str, str], Any] = {}
        self.pending: dict[str, Samples] = {}
        self.pending_n = 0

    @property
    def full(self) -> bool:
        """As many readings wait as a batch may hold: publish now."""
        return self.pending_n >= self.max_readings

    def add(
        self,
        identity: str,
        signal: str,
        value: Any,
        ts_us: int,
        quality: int = 0,
        deadband: float = 0.0,
    ) -> str | None:
        """Batch one reading; None, or why it was dropped (the name of the counter:
        ``duplicates_dropped`` or ``deadband_suppressed``)."""
        key = (identity, signal)
        last_ts = self.last_ts.get(key)
        if self.drop_repeated_times and last_ts is not None and ts_us <= last_ts:
            return "duplicates_dropped"
        if deadband > 0 and quality == 0 and numeric(value):
            prev = self.last_value.get(key)
            if numeric(prev) and abs(value - prev) < deadband:
                return "deadband_suppressed"
        self.last_ts[key] = ts_us
        if quality == 0:
            self.last_value[key] = value
        if self.mappings:
            identity, signal, value = self._map(identity, signal, value)
        if value is None:  # no value (e.g. a bad-quality reading): the schema has no null
            value = math.nan
        elif type(value) is int and not -(2**63) <= value < 2**63:
            value = float(value)  # beyond Avro's long (a uint64 counter, say)
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)  # NaN/inf are kept as text rather than lost
        sample = self.pending.setdefault(identity, {}).setdefault((ts_us, quality), {})
        sample[signal] = value
        self.pending_n += 1
        return None

    def add_sample(
        self, identity: str, ts_us: int, values: Mapping[str, Any], quality: int = 0
    ) -> None:
        """Batch a whole sample as it is, unfiltered: for a source that knows its times
        advance, its values are storable and no mapping or deadband applies to them
        (the simulator at high rates)."""
        self.pending.setdefault(identity, {}).setdefault((ts_us, quality), {}).update(values)
        self.pending_n += len(values)

    def _map(self, identity: str, signal: str, value: Any) -> tuple[str, str, Any]:
        for m in self.mappings:
            if fnmatch.fnmatchcase(identity, m.identity) and fnmatch.fnmatchcase(signal, m.signal):
                if numeric(value) and (m.scale != 1.0 or m.offset != 0.0):
                    value = value * m.scale + m.offset
                return (m.rename_identity or identity, m.rename_signal or signal, value)
        return identity, signal, value

    def take(self, source: str, received_us: int) -> list[tuple[str, dict[str, Any]]]:
        """The pending readings as ``(identity, TelemetryBatch)`` pairs, one per
        identity; the batcher is empty afterwards."""
        pending = self.pending
        self.pending, self.pending_n = {}, 0
        return [
            (
                identity,
                telemetry_batch(
                    identity,
                    [sample(ts, values, q) for (ts, q), values in sorted(samples.items())],
                    received_us=received_us,
                    source=source,
                ),
            )
            for identity, samples in pending.items()
        ]

    def discard(self) -> int:
        """Forget the pending readings; how many there were."""
        n = self.pending_n
        self.pending, self.pending_n = {}, 0
        return n


def numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
