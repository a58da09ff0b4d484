"""Telemetry processor: TelemetryBatch events -> raw readings, latest values and
1m/5m/1h partial aggregates.

Readings are flattened into columns once (``processors.flatten``); latest values and
aggregates are computed with Arrow's vectorised kernels. Aggregates are partials per
(identity, signal, bucket) of this batch; the store merges partials of all batches (late
and out-of-order readings simply add to their bucket's partial set).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from millrace.pipeline.batch_ledger import DEFAULT_FILTER_BYTES, DEFAULT_MAX_KEYS, BatchLedger
from millrace.pipeline.batches import DEFAULT_WINDOW_US, AppliedBatches
from millrace.pipeline.processors.base import Event, Outputs, ReadingProcessor
from millrace.pipeline.processors.flatten import Flat, flatten, flatten_all
from millrace.pipeline.tables import AGG_SCHEMA
from millrace.pipeline.telemetry_columns import problem
from millrace.pipeline.topics import TELEMETRY
from millrace.pipeline.values import KIND_INT, KIND_NUMBER

#: bucket name -> width in microseconds
BUCKETS: dict[str, int] = {"1m": 60_000_000, "5m": 300_000_000, "1h": 3_600_000_000}


#: why a decoded TelemetryBatch cannot be applied, or None
_check_batch = problem


def _ranks(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """0-based dense ranks of a column's values in sort order."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    ranks = pc.rank(column, sort_keys="ascending", tiebreaker="dense")
    return ranks.to_numpy().astype(np.int64) - 1


def group_codes(readings: pa.Table) -> np.ndarray:
    """Per reading, a code of its (identity, signal) ordered as the pair of strings
    (``Flat.groups`` is the same, made without ranking every reading's strings)."""
    if readings.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    signal = _ranks(readings["signal"])
    codes: np.ndarray = _ranks(readings["identity"]) * (int(signal.max()) + 1) + signal
    return codes


def _run_starts(groups: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
    """Indices where a run of equal ``groups`` (and ``extra``) starts in sorted rows."""
    change = groups[1:] != groups[:-1]
    if extra is not None:
        change |= extra[1:] != extra[:-1]
    return np.concatenate(([0], np.flatnonzero(change) + 1)).astype(np.int64)


def _by_group_and_ts(groups: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, bool]:
    """A stable order of rows by (group, ts), and whether two rows tie on both. One
    integer key (group * span + ts offset) when it fits: numpy's stable sort of
    mostly sorted runs (readings come device after device, signal after signal); a
    lexsort else."""
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64), False
    low = int(ts.min())
    span = int(ts.max()) - low + 1
    if (int(groups.max()) + 1) * span < 2**62:
        key = groups * span + (ts - low)
        order = np.argsort(key, kind="stable")
        k = key[order]
        return order, bool((k[1:] == k[:-1]).any())
    order = np.lexsort((ts, groups))
    g, t = groups[order], ts[order]
    return order, bool(((g[1:] == g[:-1]) & (t[1:] == t[:-1])).any())


def latest(readings: pa.Table, groups: np.ndarray | None = None) -> pa.Table:
    """The last reading per (identity, signal): greatest ts, ties to the later one in
    log order (the sort is stable), matching ReplacingMergeTree(ts) across batches.
    ``groups``: the readings' :func:`group_codes` when known (``Flat.groups``)."""
    if readings.num_rows == 0:
        return readings
    if groups is None:
        groups = group_codes(readings)
    order, _ = _by_group_and_ts(groups, readings["ts"].to_numpy())
    ordered = groups[order]
    last = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    # only the chosen rows are taken from the table
    return readings.take(pa.array(order[last]))


AGG_COLUMNS = AGG_SCHEMA.names


def sorted_good(readings: pa.Table, groups: np.ndarray | None = None) -> pa.Table:
    """Good-quality readings sorted so that the first row of a group is the min of
    (ts, value, text) and the last is the max: the order ClickHouse uses when it
    merges the first/last tuples of partials."""
    return order_good(readings, groups)[0]


def order_good(readings: pa.Table, groups: np.ndarray | None = None) -> tuple[pa.Table, np.ndarray]:
    """:func:`sorted_good` and the group codes of its rows: a stable numpy sort by
    (identity, signal, ts) codes, by value and text too only when some rows tie on
    those (a resent timestamp), then one take."""
    if groups is None:
        groups = group_codes(readings)
    good = np.flatnonzero(readings["quality"].to_numpy() == 0)
    ts, g = readings["ts"].to_numpy()[good], groups[good]
    order, ties = _by_group_and_ts(g, ts)
    if ties:
        keys = [readings["value"].to_numpy()[good], ts, g]
        text = readings["text"].take(pa.array(good))
        if pc.any(pc.not_equal(text, "")).as_py():
            keys.insert(0, _ranks(text))  # the last tie-breaker
        order = np.lexsort(keys)
    rows = good[order]
    return readings.take(pa.array(rows)), groups[rows]


def aggregate(good: pa.Table, bucket_us: int, groups: np.ndarray | None = None) -> pa.Table:
    """Partial aggregates per (identity, signal, bucket) of readings sorted by
    :func:`sorted_good` (``groups``: their codes, from :func:`order_good`). Groups
    are contiguous runs, reduced with numpy."""
    n = good.num_rows
    if n == 0:
        return pa.table({c: [] for c in AGG_COLUMNS})
    if groups is None:
        groups = group_codes(good)
    ts = good["ts"].to_numpy()
    bucket = ts - ts % bucket_us
    starts = _run_starts(groups, bucket)
    counts = np.diff(np.append(starts, n))
    value = good["value"].to_numpy()
    kind = good["kind"].to_numpy()
    numeric = ((kind == KIND_NUMBER) | (kind == KIND_INT)) & np.isfinite(value)
    ints = kind == KIND_INT
    exact = _int_values(good, value, ints)
    int_count = np.add.reduceat(ints.astype(np.int64), starts)
    imin = np.minimum.reduceat(np.where(ints, exact, _INT64_MAX), starts)
    imax = np.maximum.reduceat(np.where(ints, exact, _INT64_MIN), starts)
    has_int = int_count > 0
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
            "int_count": pa.array(int_count, pa.uint64()),
            "imin": pa.array(imin, pa.int64(), mask=~has_int),
            "imax": pa.array(imax, pa.int64(), mask=~has_int),
        }
    )


_INT64_MAX, _INT64_MIN = np.int64(2**63 - 1), np.int64(-(2**63))


def _int_values(good: pa.Table, value: np.ndarray, ints: np.ndarray) -> np.ndarray:
    """The exact int64 of every INT reading (0 elsewhere): the digits in ``text`` when
    it has them (beyond 2**53), else the double, which holds it exactly
    (``pipeline.values``)."""
    exact = np.zeros(len(value), dtype=np.int64)
    if not ints.any():
        return exact
    digits = ints & pc.not_equal(good["text"], "").to_numpy(zero_copy_only=False)
    small = ints & ~digits
    exact[small] = value[small].astype(np.int64)
    for i in np.flatnonzero(digits):
        exact[i] = int(good["text"][int(i)].as_py())
    return exact


class TelemetryProcessor(ReadingProcessor):
    """Raw readings, latest values and 1m/5m/1h partial aggregates, each batch id once.

    A batch whose id was already applied at another log position within the window is
    dropped before anything is computed (:class:`~millrace.pipeline.batch_ledger.BatchLedger`,
    which remembers the ids in the ``applied_batches`` projection, written in the same
    sink batch as the readings, so both land exactly once together)."""

    topics = (TELEMETRY,)

    def __init__(
        self,
        buckets: dict[str, int] | None = None,
        *,
        window_us: int = DEFAULT_WINDOW_US,
        max_keys: int = DEFAULT_MAX_KEYS,
        filter_bytes: int = DEFAULT_FILTER_BYTES,
    ) -> None:
        self.buckets = dict(buckets or BUCKETS)
        self.ledger = BatchLedger(window_us, max_keys, filter_bytes)

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
        out.tables["latest"] = latest(readings, flat.groups)
        good, groups = order_good(readings, flat.groups)
        if good.num_rows:
            for name, width in self.buckets.items():
                out.tables[f"agg_{name}"] = aggregate(good, width, groups)
        return out


__all__ = [
    "BUCKETS",
    "Flat",
    "TelemetryProcessor",
    "aggregate",
    "flatten",
    "flatten_all",
    "group_codes",
    "latest",
    "order_good",
    "sorted_good",
]
