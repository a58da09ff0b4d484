"""Batcher: readings into TelemetryBatch events, pure (no clock, no I/O, no asyncio).

A reading passes three filters before it waits for the next batch: a source time that
does not advance for its (identity, signal) is dropped (a value re-sent after a
re-subscription), a numeric value within the deadband of the last one kept is dropped,
and the first matching mapping renames or scales it. Values the Avro schema cannot hold
are made storable (no value: NaN; an integer beyond a long: a float; NaN or infinity:
text). :meth:`Batcher.take` then hands out one TelemetryBatch per identity, rows in
time order, a row holding every signal read at one (time, quality), as columns
(``pipeline.telemetry_columns``); a source that builds columns itself hands them over
whole (:meth:`Batcher.add_columns`).

Every batch taken gets its batch id then (``pipeline.batches``): a fresh random one, or
the one the protocol gave the readings (an MQTT message's, derived from the message so
that a QoS 1 redelivery maps to it again; those readings make a batch of their own). The
id is in the encoded event from then on, so a store-and-forward resend (the spool keeps
the encoded events) carries the id the batch got when it was built, and the telemetry
fold applies it once.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from typing import Any

from millrace.pipeline.batches import new_batch_id
from millrace.pipeline.events import sample, telemetry_batch, telemetry_from_columns
from millrace.pipeline.telemetry_columns import Columns, concat_rows, iter_samples

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
        #: readings whose batch id the protocol gave: (identity, batch id) -> samples
        self.tagged: dict[tuple[str, str], Samples] = {}
        #: (identity, batch id or None) in the order readings first came: batches are
        #: taken in that order (only consulted when some readings are tagged)
        self._order: dict[tuple[str, str | None], int] = {}
        #: readings a source handed over as columns (the simulator): identity -> them
        self.columns: dict[str, list[Columns]] = {}
        self.pending_n = 0

    @property
    def waiting(self) -> bool:
        """Readings wait for the next batch."""
        return bool(self.pending or self.tagged or self.columns)

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
        batch_id: str | None = None,
    ) -> str | None:
        """Batch one reading; None, or why it was dropped (the name of the counter:
        ``duplicates_dropped`` or ``deadband_suppressed``). With ``batch_id`` it goes
        to the batch of that id (one per identity and id)."""
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
        order = self._order
        order.setdefault((identity, batch_id), len(order))
        samples = (
            self.pending.setdefault(identity, {})
            if batch_id is None
            else self.tagged.setdefault((identity, batch_id), {})
        )
        samples.setdefault((ts_us, quality), {})[signal] = value
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

    def add_columns(self, identity: str, columns: Columns) -> None:
        """Batch column-wise readings as they are, unfiltered (as :meth:`add_sample`):
        for a source that builds columns itself (the simulator, vectorised). One set of
        columns per identity becomes that batch's columns without a Python loop per
        reading."""
        self.columns.setdefault(identity, []).append(columns)
        self.pending_n += columns.readings

    def _map(self, identity: str, signal: str, value: Any) -> tuple[str, str, Any]:
        for m in self.mappings:
            if fnmatch.fnmatchcase(identity, m.identity) and fnmatch.fnmatchcase(signal, m.signal):
                if numeric(value) and (m.scale != 1.0 or m.offset != 0.0):
                    value = value * m.scale + m.offset
                return (m.rename_identity or identity, m.rename_signal or signal, value)
        return identity, signal, value

    def take(self, source: str, received_us: int) -> list[tuple[str, dict[str, Any]]]:
        """The pending readings as ``(identity, TelemetryBatch)`` pairs, one per
        identity (and one per identity and given batch id), each with its batch id;
        the batcher is empty afterwards."""
        pending, tagged, order, columns = self.pending, self.tagged, self._order, self.columns
        self.pending, self.tagged, self._order, self.columns, self.pending_n = {}, {}, {}, {}, 0
        out = []
        for identity, parts in columns.items():
            # several ticks of a device: their rows one after the other, as columns
            merged = parts[0] if len(parts) == 1 else concat_rows(parts)
            if merged is None or identity in pending:  # rare: merged as rows
                rows = pending.setdefault(identity, {})
                for part in parts:
                    for ts, q, values in iter_samples(part.fields()):
                        rows.setdefault((ts, q), {}).update(values)
                continue
            out.append(
                (
                    identity,
                    telemetry_from_columns(
                        identity,
                        merged,
                        received_us=received_us,
                        source=source,
                        batch_id=new_batch_id(),
                    ),
                )
            )
        groups: list[tuple[str, str | None, Samples]] = [
            (identity, None, samples) for identity, samples in pending.items()
        ]
        if tagged:
            groups += [(identity, bid, samples) for (identity, bid), samples in tagged.items()]
            groups.sort(key=lambda g: order.get((g[0], g[1]), -1))
        return out + [
            (
                identity,
                telemetry_batch(
                    identity,
                    [sample(ts, values, q) for (ts, q), values in sorted(samples.items())],
                    received_us=received_us,
                    source=source,
                    batch_id=new_batch_id() if bid is None else bid,
                ),
            )
            for identity, bid, samples in groups
        ]

    def discard(self) -> int:
        """Forget the pending readings; how many there were."""
        n = self.pending_n
        self.pending, self.tagged, self._order, self.columns, self.pending_n = {}, {}, {}, {}, 0
        return n


def numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
