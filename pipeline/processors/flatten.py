"""TelemetryBatch events -> one row per reading, built from the batches' columns.

Per event, Python only extends a few lists with the event's columns (fastavro decoded
each into one list); the readings' columns are then made by numpy and Arrow:
``np.repeat`` of the per-signal facts by their value counts, the per-row facts
gathered by each reading's row, and each kind's values scattered to the readings of
that kind (the values of a kind are in reading order, since both go signal after
signal and event after event). Batches of versions 1-4 (row-wise samples) are turned
into columns first (``telemetry_columns.column_fields``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from millrace.pipeline.processors.base import Event, dead_letter
from millrace.pipeline.tables import METRICS_SCHEMA, READINGS_SCHEMA, SEEN_SCHEMA
from millrace.pipeline.telemetry_columns import (
    KIND_BOOLEAN,
    KIND_DOUBLE,
    KIND_LONG,
    KIND_STRING,
    column_fields,
    problem,
)
from millrace.pipeline.values import EXACT_DOUBLE_INT, int_text


@dataclass(slots=True)
class Flat:
    """A batch of TelemetryBatch events flattened: readings, per-event facts, dead letters."""

    readings: pa.Table
    dead: list[dict[str, Any]]
    seen: pa.Table  # identity, received, ip: one row per applied event
    metrics: pa.Table  # device metrics: publish_count, publish_size, publish_resource_count
    #: per reading, a code of its (identity, signal) that sorts as the pair of strings
    #: does (ranks of the per-event identities and per-signal names, not of the
    #: readings' string columns): the fold sorts and groups by it with numpy
    groups: np.ndarray


def flatten(events: Sequence[Event]) -> tuple[pa.Table, list[dict[str, Any]]]:
    """One row per reading, in log order (signal after signal within a batch); batches
    that cannot be applied become dead letters."""
    flat = flatten_all(events)
    return flat.readings, flat.dead


@dataclass(slots=True)
class _Gather:
    """The columns of the applied events, concatenated."""

    ev_identity: list[str]
    ev_received: list[int]
    ev_ip: list[str]
    ev_size: list[float]
    ev_rows: list[int]  # rows per event
    ev_readings: list[int]  # readings per event
    ts: list[int]
    quality: list[int]
    signals: list[str]
    kinds: list[int]
    counts: list[int]  # values per signal
    sparse: list[bool]  # per signal: its rows are given
    rows: list[int]  # rows of the sparse signals' values
    doubles: list[float]
    booleans: list[bool]
    strings: list[str]
    longs: list[int]


def flatten_all(events: Sequence[Event]) -> Flat:
    """:func:`flatten`, plus when each identity was seen and the publish metrics."""
    dead: list[dict[str, Any]] = []
    g = _Gather(*([] for _ in range(17)))
    for ev in events:
        batch = ev.value
        why = problem(batch)
        if why is not None:
            dead.append(
                dead_letter(
                    ev,
                    reason=why,
                    error_type="InvalidTelemetry",
                    stage="apply",
                    ts_us=ev.timestamp_us,
                    payload=repr(batch).encode()[:65536],
                )
            )
            continue
        cols = column_fields(batch)
        get = cols.get
        ts, signals = get("ts_us") or (), get("signals") or ()
        counts = get("counts") or None
        doubles, booleans = get("doubles") or (), get("booleans") or ()
        strings, longs = get("strings") or (), get("longs") or ()
        n, s = len(ts), len(signals)
        g.ev_identity.append(batch["identity"])
        g.ev_received.append(batch.get("received_us", ev.timestamp_us))
        g.ev_ip.append(batch.get("ip") or "")
        g.ev_size.append(float(ev.size))
        g.ev_rows.append(n)
        g.ev_readings.append(len(doubles) + len(booleans) + len(strings) + len(longs))
        g.ts.extend(ts)
        g.quality.extend(get("qualities") or ())
        g.signals.extend(signals)
        g.kinds.extend(get("kinds") or ())
        if counts is None:
            g.counts.extend(repeat(n, s))
            g.sparse.extend(repeat(False, s))
        else:
            g.counts.extend(counts)
            g.sparse.extend(repeat(True, s))
            g.rows.extend(get("rows") or ())
        g.doubles.extend(doubles)
        g.booleans.extend(booleans)
        g.strings.extend(strings)
        g.longs.extend(longs)
    readings, groups = _readings(g)
    return Flat(readings, dead, _seen(g), _metrics(g), groups)


def _seen(g: _Gather) -> pa.Table:
    return pa.Table.from_arrays(
        [
            pa.array(g.ev_identity, pa.string()),
            pa.array(g.ev_received, pa.int64()),
            pa.array(g.ev_ip, pa.string()),
        ],
        schema=SEEN_SCHEMA,
    )


def _metrics(g: _Gather) -> pa.Table:
    k = len(g.ev_received)
    return pa.Table.from_arrays(
        [
            pa.array(
                ["publish_count"] * k + ["publish_size"] * k + ["publish_resource_count"] * k,
                pa.string(),
            ),
            pa.array(g.ev_received * 3, pa.int64()),
            pa.array([1.0] * k + g.ev_size + [float(r) for r in g.ev_readings], pa.float64()),
        ],
        schema=METRICS_SCHEMA,
    )


def _empty_strings(n: int) -> pa.Array:
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(np.zeros(n + 1, dtype=np.int32)), pa.py_buffer(b"")
    )


def _dense_ranks(values: pa.Array) -> np.ndarray:
    """0-based ranks of strings in string order, equal strings equal ranks: the
    distinct ones (a hash pass) are sorted, not every one (names repeat per event)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    encoded = pc.dictionary_encode(values)
    ranks = pc.rank(encoded.dictionary, sort_keys="ascending", tiebreaker="dense")
    rank_of = ranks.to_numpy().astype(np.int64) - 1
    return rank_of[encoded.indices.to_numpy()]


def _scattered_strings(n: int, at: np.ndarray, strings: list[str]) -> pa.Array:
    """A string column of ``n`` rows holding ``strings`` at rows ``at`` (ascending) and
    "" elsewhere, built from the strings' own buffer (no object per empty row)."""
    given = pa.array(strings, pa.string())
    lengths = np.zeros(n + 1, dtype=np.int64)
    lengths[at + 1] = pc.binary_length(given).to_numpy()
    offsets = np.cumsum(lengths)
    if offsets[-1] >= 2**31:  # beyond 32-bit offsets: the general way
        text = np.full(n, "", dtype=object)
        text[at] = strings
        return pa.array(text, pa.string())
    data = given.buffers()[2] or pa.py_buffer(b"")
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), data)


def _readings(g: _Gather) -> tuple[pa.Table, np.ndarray]:
    counts = np.array(g.counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return READINGS_SCHEMA.empty_table(), np.zeros(0, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    signal_of = np.repeat(np.arange(len(counts)), counts)
    # a reading's row within its event: its place in its signal's run, or the row given
    row = np.arange(n, dtype=np.int64) - starts[signal_of]
    sparse = np.array(g.sparse, dtype=bool)[signal_of]
    if g.rows:
        row[sparse] = np.array(g.rows, dtype=np.int64)
    event_of = np.repeat(np.arange(len(g.ev_readings)), g.ev_readings)
    first_row = np.cumsum(g.ev_rows, dtype=np.int64) - np.array(g.ev_rows, dtype=np.int64)
    row += first_row[event_of]
    kind = np.array(g.kinds, dtype=np.uint8)[signal_of]
    value = np.zeros(n, dtype=np.float64)
    for k, values in ((KIND_DOUBLE, g.doubles), (KIND_BOOLEAN, g.booleans)):
        if values:
            value[kind == k] = np.array(values, dtype=np.float64)
    big: np.ndarray | None = None
    if g.longs:
        longs = np.array(g.longs, dtype=np.int64)
        value[kind == KIND_LONG] = longs
        beyond = (longs > EXACT_DOUBLE_INT) | (longs < -EXACT_DOUBLE_INT)
        if beyond.any():  # their digits go to text (pipeline.values)
            big = np.flatnonzero(kind == KIND_LONG)[beyond]
            big_text = [int_text(int(x)) for x in longs[beyond]]
    if g.strings and big is None:
        text = _scattered_strings(n, np.flatnonzero(kind == KIND_STRING), g.strings)
    elif g.strings or big is not None:
        text_obj = np.full(n, "", dtype=object)
        if g.strings:
            text_obj[kind == KIND_STRING] = g.strings
        if big is not None:
            text_obj[big] = big_text
        text = pa.array(text_obj, pa.string())
    else:
        text = _empty_strings(n)
    event_idx = pa.array(event_of)
    identities, signals = pa.array(g.ev_identity, pa.string()), pa.array(g.signals, pa.string())
    signal_rank = _dense_ranks(signals)
    groups = _dense_ranks(identities)[event_of] * (int(signal_rank.max()) + 1)
    groups += signal_rank[signal_of]
    table = pa.Table.from_arrays(
        [
            identities.take(event_idx),
            signals.take(pa.array(signal_of)),
            pa.array(np.array(g.ts, dtype=np.int64)[row]),
            pa.array(value),
            text,
            pa.array(kind),  # batch kinds are the stored kinds (KIND_LONG is KIND_INT)
            pa.array(np.array(g.quality, dtype=np.int32)[row]),
            pa.array(np.array(g.ev_received, dtype=np.int64)[event_of]),
        ],
        schema=READINGS_SCHEMA,
    )
    return table, groups
