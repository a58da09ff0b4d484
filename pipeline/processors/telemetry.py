"""Telemetry processor: TelemetryBatch events -> raw readings, latest values and
1m/5m/1h partial aggregates.

Readings are flattened into columns once; latest values and aggregates are computed
with Arrow's vectorised kernels. Aggregates are partials per (identity, signal,
bucket) of this batch; the store merges partials of all batches (late and
out-of-order readings simply add to their bucket's partial set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from millrace.pipeline.batches import (
    DEFAULT_MAX_KEYS,
    DEFAULT_WINDOW_US,
    AppliedBatches,
    BatchLedger,
)
from millrace.pipeline.processors.base import Event, Outputs, ReadingProcessor, dead_letter
from millrace.pipeline.tables import AGG_SCHEMA, METRICS_SCHEMA, READINGS_SCHEMA, SEEN_SCHEMA
from millrace.pipeline.timestamps import MAX_TS_US, MIN_TS_US, ts_problem
from millrace.pipeline.topics import TELEMETRY
from millrace.pipeline.values import KIND_NUMBER, KIND_OF_TYPE, KIND_STRING

#: bucket name -> width in microseconds
BUCKETS: dict[str, int] = {"1m": 60_000_000, "5m": 300_000_000, "1h": 3_600_000_000}


def _check_batch(value: Any) -> str | None:
    """Why a decoded TelemetryBatch cannot be applied, or None."""
    identity = value.get("identity")
    if not isinstance(identity, str) or not identity:
        return "identity: must be a non-empty string"
    for i, sample in enumerate(value.get("samples") or ()):
        ts = sample.get("ts_us")
        if not (ts.__class__ is int and MIN_TS_US <= ts < MAX_TS_US):  # pipeline.timestamps
            return f"samples[{i}].ts_us: {ts_problem(ts)}"
        if "" in sample.get("values", {}):
            return f"samples[{i}].values: empty signal name"
    return None


def _empty_strings(n: int) -> pa.Array:
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(np.zeros(n + 1, dtype=np.int32)), pa.py_buffer(b"")
    )


@dataclass(slots=True)
class Flat:
    """A batch of TelemetryBatch events flattened: readings, per-event facts, dead letters."""

    readings: pa.Table
    dead: list[dict[str, Any]]
    seen: pa.Table  # identity, received, ip: one row per applied event
    metrics: pa.Table  # device metrics: publish_count, publish_size, publish_resource_count


def flatten(events: Sequence[Event]) -> tuple[pa.Table, list[dict[str, Any]]]:
    """One row per reading, in log order; batches that cannot be applied become
    dead letters."""
    flat = flatten_all(events)
    return flat.readings, flat.dead


def flatten_all(events: Sequence[Event]) -> Flat:
    """:func:`flatten`, plus when each identity was seen and the publish metrics. Per
    sample only its dict is touched in Python; columns are built by numpy and Arrow."""
    dead: list[dict[str, Any]] = []
    ev_identity: list[str] = []
    ev_received: list[int] = []
    ev_ip: list[str] = []
    ev_size: list[float] = []
    ev_readings: list[float] = []
    identities: list[str] = []
    received: list[int] = []
    stamps: list[int] = []
    qualities: list[int] = []
    counts: list[int] = []
    signals: list[str] = []
    raw: list[Any] = []
    for ev in events:
        batch = ev.value
        problem = _check_batch(batch)
        if problem is not None:
            dead.append(
                dead_letter(
                    ev,
                    reason=problem,
                    error_type="InvalidTelemetry",
                    stage="apply",
                    ts_us=ev.timestamp_us,
                    payload=repr(batch).encode()[:65536],
                )
            )
            continue
        identity = batch["identity"]
        recv = batch.get("received_us", ev.timestamp_us)
        before = len(raw)
        for sample in batch["samples"]:
            values = sample["values"]
            if not values:
                continue
            identities.append(identity)
            received.append(recv)
            stamps.append(sample["ts_us"])
            qualities.append(sample.get("quality", 0))
            counts.append(len(values))
            signals.extend(values)
            raw.extend(values.values())
        ev_identity.append(identity)
        ev_received.append(recv)
        ev_ip.append(batch.get("ip") or "")
        ev_size.append(float(ev.size))
        ev_readings.append(float(len(raw) - before))
    seen = pa.Table.from_arrays(
        [pa.array(ev_identity, pa.string()), pa.array(ev_received, pa.int64()), pa.array(ev_ip)],
        schema=SEEN_SCHEMA,
    )
    k = len(ev_received)
    metrics = pa.Table.from_arrays(
        [
            pa.array(
                ["publish_count"] * k + ["publish_size"] * k + ["publish_resource_count"] * k,
                pa.string(),
            ),
            pa.array(ev_received * 3, pa.int64()),
            pa.array([1.0] * k + ev_size + ev_readings, pa.float64()),
        ],
        schema=METRICS_SCHEMA,
    )
    n = len(raw)
    if n == 0:
        return Flat(READINGS_SCHEMA.empty_table(), dead, seen, metrics)
    repeat = np.array(counts, dtype=np.int64)
    kind_of = KIND_OF_TYPE.get
    kinds = np.fromiter((kind_of(type(v), KIND_STRING) for v in raw), dtype=np.uint8, count=n)
    strings = kinds == KIND_STRING
    if strings.any():
        value = np.array([0.0 if isinstance(v, str) else v for v in raw], dtype=np.float64)
        text = pa.array([v if isinstance(v, str) else "" for v in raw], pa.string())
    else:
        value = np.array(raw, dtype=np.float64)
        text = _empty_strings(n)
    sample_of_row = pa.array(np.repeat(np.arange(len(counts)), repeat))
    table = pa.Table.from_arrays(
        [
            pa.array(identities, pa.string()).take(sample_of_row),
            pa.array(signals, pa.string()),
            pa.array(np.repeat(np.array(stamps, dtype=np.int64), repeat)),
            pa.array(value),
            text,
            pa.array(kinds),
            pa.array(np.repeat(np.array(qualities, dtype=np.int32), repeat)),
            pa.array(np.repeat(np.array(received, dtype=np.int64), repeat)),
        ],
        schema=READINGS_SCHEMA,
    )
    return Flat(table, dead, seen, metrics)


def _run_starts(
    table: pa.Table, keys: Sequence[str], extra: np.ndarray | None = None
) -> np.ndarray:
    """Indices where a run of equal ``keys`` (and ``extra``) starts in a sorted table."""
    n = table.num_rows
    change = np.zeros(max(n - 1, 0), dtype=bool)
    for k in keys:
        col = table[k]
        change |= pc.not_equal(col.slice(1), col.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    if extra is not None:
        change |= extra[1:] != extra[:-1]
    return np.concatenate(([0], np.flatnonzero(change) + 1)).astype(np.int64)


def latest(readings: pa.Table) -> pa.Table:
    """The last reading per (identity, signal): greatest ts, ties to the later one in
    log order (the sort is stable), matching ReplacingMergeTree(ts) across batches."""
    if readings.num_rows == 0:
        return readings
    ordered = readings.sort_by(
        [("identity", "ascending"), ("signal", "ascending"), ("ts", "ascending")]
    )
    starts = _run_starts(ordered, ("identity", "signal"))
    last = np.append(starts[1:], ordered.num_rows) - 1
    return ordered.take(pa.array(last))


AGG_COLUMNS = AGG_SCHEMA.names


def sorted_good(readings: pa.Table) -> pa.Table:
    """Good-quality readings sorted so that the first row of a group is the min of
    (ts, value, text) and the last is the max: the order ClickHouse uses when it
    merges the first/last tuples of partials."""
    good = readings.filter(pc.equal(readings["quality"], 0))
    return good.sort_by(
        [
            ("identity", "ascending"),
            ("signal", "ascending"),
            ("ts", "ascending"),
            ("value", "ascending"),
            ("text", "ascending"),
        ]
    )


def aggregate(good: pa.Table, bucket_us: int) -> pa.Table:
    """Partial aggregates per (identity, signal, bucket) of readings sorted by
    :func:`sorted_good`. Groups are contiguous runs, reduced with numpy."""
    n = good.num_rows
    if n == 0:
        return pa.table({c: [] for c in AGG_COLUMNS})
    ts = good["ts"].to_numpy()
    bucket = ts - ts % bucket_us
    starts = _run_starts(good, ("identity", "signal"), bucket)
    counts = np.diff(np.append(starts, n))
    value = good["value"].to_numpy()
    kind = good["kind"].to_numpy()
    numeric = (kind == KIND_NUMBER) & np.isfinite(value)
    num_count = np.add.reduceat(numeric.astype(np.int64), starts)
    total = np.add.reduceat(np.where(numeric, value, 0.0), starts)
    low = np.minimum.reduceat(np.where(numeric, value, np.inf), starts)
    high = np.maximum.reduceat(np.where(numeric, value, -np.inf), starts)
    last = starts + counts - 1
    first_idx, last_idx = pa.array(starts), pa.array(last)
    has_num = num_count > 0
    return pa.table(
        {
            "identity": good["identity"].take(first_idx),
            "signal": good["signal"].take(first_idx),
            "bucket": pa.array(bucket[starts] // 1_000_000, pa.int64()),
            "kind": pa.array(np.maximum.reduceat(kind, starts), pa.uint8()),
            "count": pa.array(counts, pa.uint64()),
            "num_count": pa.array(num_count, pa.uint64()),
            "sum": pa.array(total, pa.float64()),
            "min": pa.array(low, pa.float64(), mask=~has_num),
            "max": pa.array(high, pa.float64(), mask=~has_num),
            "first_ts": good["ts"].take(first_idx),
            "first_value": good["value"].take(first_idx),
            "first_text": good["text"].take(first_idx),
            "last_ts": good["ts"].take(last_idx),
            "last_value": good["value"].take(last_idx),
            "last_text": good["text"].take(last_idx),
        }
    )


class TelemetryProcessor(ReadingProcessor):
    """Raw readings, latest values and 1m/5m/1h partial aggregates, each batch id once.

    A batch whose id was already applied at another log position within the window is
    dropped before anything is computed (:class:`~millrace.pipeline.batches.BatchLedger`,
    which remembers the ids in the ``applied_batches`` projection, written in the same
    sink batch as the readings, so both land exactly once together)."""

    topics = (TELEMETRY,)

    def __init__(
        self,
        buckets: dict[str, int] | None = None,
        *,
        window_us: int = DEFAULT_WINDOW_US,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self.buckets = dict(buckets or BUCKETS)
        self.ledger = BatchLedger(window_us, max_keys)

    def process_reading(self, events: Sequence[Event], reader: object | None) -> Outputs:
        admitted = self.ledger.admit(events, reader if isinstance(reader, AppliedBatches) else None)
        out = Outputs()
        if admitted.rows is not None and admitted.rows.num_rows:
            # first: the sink inserts the ids before the rows they stand for
            out.tables["applied_batches"] = admitted.rows
        out.merge(self.fold(admitted.events))
        return out

    def fold(self, events: Sequence[Event]) -> Outputs:
        """The projection rows of ``events``, every one applied (no id check)."""
        flat = flatten_all(events)
        readings = flat.readings
        out = Outputs(deadletters=flat.dead)
        if flat.seen.num_rows:
            out.tables["identity_seen"] = flat.seen
            out.tables["device_metrics"] = flat.metrics
        if readings.num_rows == 0:
            return out
        out.tables["readings"] = readings
        out.tables["latest"] = latest(readings)
        good = sorted_good(readings)
        if good.num_rows:
            for name, width in self.buckets.items():
                out.tables[f"agg_{name}"] = aggregate(good, width)
        return out
