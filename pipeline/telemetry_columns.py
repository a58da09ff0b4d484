"""A TelemetryBatch's readings, column-wise: the one view every reader takes.

Version 5 of ``schemas/telemetry.avsc`` carries readings as columns: ``ts_us`` and
``qualities`` per row, ``signals`` and ``kinds`` per signal, and the values of every
signal of one kind in one typed array (``doubles``, ``booleans``, ``strings``,
``longs``), signal after signal. A *dense* batch (``counts`` empty) has a value for
every signal in every row; a *sparse* one says how many values each signal has
(``counts``) and in which rows (``rows``). Why one array per kind and not a record per
signal: fastavro decodes an array of doubles into one list in its C loop, while a
record per signal costs a dict and five lists per signal, and most batches (one poll
of a device) have one row: per reading that would be more objects than the map it
replaces.

Batches of versions 1-4 carry row-wise ``samples`` (a map per timestamp); Avro's schema
resolution reads them into the current schema with the columns empty.
:func:`columns_of` turns either into :class:`Columns`; :func:`from_samples` is the one
conversion from rows to columns (the event builder and old batches use it).
:func:`problem` says why a decoded batch cannot be applied (columns of unequal lengths,
an unknown kind, a row out of range, a time out of range), or None.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from millrace.pipeline.timestamps import MAX_TS_US, MIN_TS_US, ts_problem
from millrace.pipeline.values import KIND_BOOL, KIND_INT, KIND_NUMBER
from millrace.pipeline.values import KIND_STRING as _STRING

#: batch kinds: the stored kinds of ``pipeline.values``, named as the Avro types
KIND_DOUBLE, KIND_BOOLEAN, KIND_STRING, KIND_LONG = KIND_NUMBER, KIND_BOOL, _STRING, KIND_INT
#: kind -> the batch field holding that kind's values
VALUE_FIELDS: dict[int, str] = {
    KIND_DOUBLE: "doubles",
    KIND_BOOLEAN: "booleans",
    KIND_STRING: "strings",
    KIND_LONG: "longs",
}
COLUMN_FIELDS = ("ts_us", "qualities", "signals", "kinds", "counts", "rows", *VALUE_FIELDS.values())
_INT64 = (-(2**63), 2**63)

Reading = bool | int | float | str


@dataclass(frozen=True, slots=True)
class Columns:
    """The readings of one batch as columns (lists, as fastavro decodes them)."""

    ts_us: list[int]
    qualities: list[int]
    signals: list[str]
    kinds: list[int]
    #: values per signal; None: every signal has one value per row
    counts: list[int] | None = None
    #: the row of each value, signal after signal (with ``counts``)
    rows: list[int] | None = None
    doubles: list[float] = field(default_factory=list)
    booleans: list[bool] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    longs: list[int] = field(default_factory=list)

    @property
    def readings(self) -> int:
        return len(self.doubles) + len(self.booleans) + len(self.strings) + len(self.longs)

    def fields(self) -> dict[str, Any]:
        """The batch fields of these columns, as given (``counts``/``rows`` empty when
        dense): the keyword arguments of ``events.telemetry_batch``, which makes lists."""
        return {
            "ts_us": self.ts_us,
            "qualities": self.qualities,
            "signals": self.signals,
            "kinds": self.kinds,
            "counts": () if self.counts is None else self.counts,
            "rows": () if self.rows is None else self.rows,
            "doubles": self.doubles,
            "booleans": self.booleans,
            "strings": self.strings,
            "longs": self.longs,
        }


def as_list(values: Any) -> list[Any]:
    """``values`` as a new list (a numpy array's items as Python scalars; None: empty)."""
    if values.__class__ is list:
        return values.copy()
    if values is None:
        return []
    tolist = getattr(values, "tolist", None)
    return tolist() if tolist is not None else list(values)


def _kind(value: Any) -> int:
    t = type(value)
    if t is float:
        return KIND_DOUBLE
    if t is bool:
        return KIND_BOOLEAN
    if t is int:
        return KIND_LONG if _INT64[0] <= value < _INT64[1] else KIND_DOUBLE
    return KIND_STRING if t is str else -1


def from_samples(samples: Sequence[Mapping[str, Any]]) -> Columns:
    """Rows (``{ts_us, values, quality}``) as columns: a row per sample, a column per
    (signal, kind) in the order they first appear; ints beyond 64 bits become doubles
    (as the row-wise union wrote them). A value of another type raises TypeError."""
    ts: list[int] = []
    qualities: list[int] = []
    groups: dict[tuple[str, int], tuple[list[int], list[Any]]] = {}
    for row, sample in enumerate(samples):
        ts.append(sample["ts_us"])
        qualities.append(sample.get("quality", 0))
        for signal, value in sample["values"].items():
            kind = _kind(value)
            if kind < 0:
                raise TypeError(f"{signal}: a reading is a bool, int, float or str, not {value!r}")
            group = groups.get((signal, kind))
            if group is None:
                group = groups[(signal, kind)] = ([], [])
            group[0].append(row)
            group[1].append(float(value) if kind == KIND_DOUBLE else value)
    n = len(ts)
    values: dict[int, list[Any]] = {k: [] for k in VALUE_FIELDS}
    dense = all(len(rows) == n for rows, _ in groups.values())
    counts: list[int] = []
    rows: list[int] = []
    for (_, kind), (group_rows, group_values) in groups.items():
        values[kind].extend(group_values)
        if not dense:
            counts.append(len(group_rows))
            rows.extend(group_rows)
    return Columns(
        ts,
        qualities,
        [signal for signal, _ in groups],
        [kind for _, kind in groups],
        None if dense else counts,
        None if dense else rows,
        values[KIND_DOUBLE],
        values[KIND_BOOLEAN],
        values[KIND_STRING],
        values[KIND_LONG],
    )


def concat_rows(parts: Sequence[Columns]) -> Columns | None:
    """Dense column sets of the same signals and kinds as one, their rows one after
    the other (a connector's ticks of one device in one batch); None when they are not
    all dense or their signals or kinds differ. Per signal, one slice of each part."""
    first = parts[0]
    if any(
        p.counts is not None or p.signals != first.signals or p.kinds != first.kinds for p in parts
    ):
        return None
    arrays = {
        kind: [(len(p.ts_us), getattr(p, name)) for p in parts]
        for kind, name in VALUE_FIELDS.items()
    }
    merged: dict[int, list[Any]] = {kind: [] for kind in VALUE_FIELDS}
    at = dict.fromkeys(VALUE_FIELDS, 0)  # the signal of each kind the loop is at
    for kind in first.kinds:
        j = at[kind]
        at[kind] = j + 1
        out = merged[kind]
        for n, values in arrays[kind]:
            out.extend(values[j * n : (j + 1) * n])
    return Columns(
        [t for p in parts for t in p.ts_us],
        [q for p in parts for q in p.qualities],
        list(first.signals),
        list(first.kinds),
        None,
        None,
        merged[KIND_DOUBLE],
        merged[KIND_BOOLEAN],
        merged[KIND_STRING],
        merged[KIND_LONG],
    )


def is_row_wise(batch: Mapping[str, Any]) -> bool:
    """Whether the batch's readings are in ``samples`` (versions 1-4, or no rows at all)."""
    return bool(batch.get("samples")) or not batch.get("ts_us")


def columns_of(batch: Mapping[str, Any]) -> Columns:
    """The batch's readings as columns, whichever version wrote it (checked with
    :func:`problem` first: this one trusts the lengths)."""
    if batch.get("samples"):
        return from_samples(batch["samples"])
    counts = batch.get("counts") or None
    return Columns(
        batch.get("ts_us") or [],
        batch.get("qualities") or [],
        batch.get("signals") or [],
        batch.get("kinds") or [],
        counts,
        batch.get("rows") or [] if counts is not None else None,
        batch.get("doubles") or [],
        batch.get("booleans") or [],
        batch.get("strings") or [],
        batch.get("longs") or [],
    )


def problem(batch: Mapping[str, Any]) -> str | None:
    """Why a decoded TelemetryBatch cannot be applied, or None."""
    identity = batch.get("identity")
    if not isinstance(identity, str) or not identity:
        return "identity: must be a non-empty string"
    samples = batch.get("samples") or ()
    if samples and any(batch.get(f) for f in COLUMN_FIELDS):
        return "samples: a batch carries rows (samples) or columns, not both"
    for i, sample in enumerate(samples):
        ts = sample.get("ts_us")
        if not (ts.__class__ is int and MIN_TS_US <= ts < MAX_TS_US):  # pipeline.timestamps
            return f"samples[{i}].ts_us: {ts_problem(ts)}"
        if "" in sample.get("values", {}):
            return f"samples[{i}].values: empty signal name"
    return None if samples else _columns_problem(batch)


def _columns_problem(batch: Mapping[str, Any]) -> str | None:
    # every fold step checks every batch: C-level list operations, no loop per signal
    # for a dense batch
    get = batch.get
    ts = get("ts_us") or []
    n = len(ts)
    qualities = len(get("qualities") or ())
    if qualities != n:
        return f"qualities: {qualities} qualities for {n} rows (ts_us)"
    if n and not (min(ts) >= MIN_TS_US and max(ts) < MAX_TS_US):
        bad = next(t for t in ts if not MIN_TS_US <= t < MAX_TS_US)
        return f"ts_us[{ts.index(bad)}]: {ts_problem(bad)}"
    signals, kinds = get("signals") or [], get("kinds") or []
    if len(kinds) != len(signals):
        return f"kinds: {len(kinds)} kinds for {len(signals)} signals"
    if "" in signals:
        return f"signals[{signals.index('')}]: empty signal name"
    of_kind = {kind: kinds.count(kind) for kind in VALUE_FIELDS}
    if sum(of_kind.values()) != len(kinds):
        unknown = min(k for k in kinds if k not in VALUE_FIELDS)
        return f"kinds[{kinds.index(unknown)}]: unknown kind {unknown} (0-3)"
    counts = get("counts") or []
    rows = get("rows") or []
    if not counts:
        if rows:
            return "rows: given without counts"
        per_kind = {kind: signals_of_kind * n for kind, signals_of_kind in of_kind.items()}
    else:
        if len(counts) != len(signals):
            return f"counts: {len(counts)} counts for {len(signals)} signals"
        if min(counts) < 0:
            return f"counts[{counts.index(min(counts))}]: negative"
        if len(rows) != sum(counts):
            return f"rows: {len(rows)} rows for {sum(counts)} values (counts)"
        if rows and not (min(rows) >= 0 and max(rows) < n):
            bad = next(r for r in rows if not 0 <= r < n)
            return f"rows[{rows.index(bad)}]: row {bad} of {n}"
        per_kind = dict.fromkeys(VALUE_FIELDS, 0)
        for kind, count in zip(kinds, counts, strict=True):
            per_kind[kind] += count
    for kind, name in VALUE_FIELDS.items():
        have = len(get(name) or ())
        if have != per_kind[kind]:
            return f"{name}: {have} values for {per_kind[kind]} (signals of kind {kind} x rows)"
    return None


def column_fields(batch: Mapping[str, Any]) -> Mapping[str, Any]:
    """The column fields of a batch (checked with :func:`problem`): the batch itself
    when it is column-wise (no copy), else its samples turned into columns."""
    if batch.get("samples"):
        return from_samples(batch["samples"]).fields()
    return batch


def iter_samples(batch: Mapping[str, Any]) -> Iterator[tuple[int, int, dict[str, Reading]]]:
    """The batch's rows as ``(ts_us, quality, {signal: value})``, in row order, for
    readers that look at a few readings at a time (alarm rules, the live stream); the
    telemetry fold uses the columns themselves. Rows without a value are skipped."""
    if batch.get("samples"):
        for sample in batch["samples"]:
            if sample["values"]:
                yield sample["ts_us"], sample.get("quality", 0), sample["values"]
        return
    cols = columns_of(batch)
    values: list[dict[str, Reading]] = [{} for _ in cols.ts_us]
    for signal, row, value in _cells(cols):
        values[row][signal] = value
    for ts, quality, row_values in zip(cols.ts_us, cols.qualities, values, strict=True):
        if row_values:
            yield ts, quality, row_values


def samples_of(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The batch's rows as the samples of versions 1-4 (``{ts_us, values, quality}``)."""
    return [{"ts_us": t, "values": v, "quality": q} for t, q, v in iter_samples(batch)]


def _cells(cols: Columns) -> Iterator[tuple[str, int, Reading]]:
    """(signal, row, value) of every reading, signal after signal."""
    taken = dict.fromkeys(VALUE_FIELDS, 0)
    arrays: dict[int, list[Any]] = {
        KIND_DOUBLE: cols.doubles,
        KIND_BOOLEAN: cols.booleans,
        KIND_STRING: cols.strings,
        KIND_LONG: cols.longs,
    }
    n = len(cols.ts_us)
    at = 0
    for j, (signal, kind) in enumerate(zip(cols.signals, cols.kinds, strict=True)):
        count = n if cols.counts is None else cols.counts[j]
        rows = range(n) if cols.rows is None else cols.rows[at : at + count]
        at += count
        start = taken[kind]
        taken[kind] = start + count
        for row, value in zip(rows, arrays[kind][start : start + count], strict=True):
            yield signal, row, value


def count(batch: Mapping[str, Any]) -> int:
    """The readings a batch carries, rows or columns alike."""
    if batch.get("samples"):
        return sum(len(s.get("values") or ()) for s in batch["samples"])
    return sum(len(batch.get(f) or ()) for f in VALUE_FIELDS.values())


__all__ = [
    "COLUMN_FIELDS",
    "KIND_BOOLEAN",
    "KIND_DOUBLE",
    "KIND_LONG",
    "KIND_STRING",
    "VALUE_FIELDS",
    "Columns",
    "as_list",
    "column_fields",
    "columns_of",
    "concat_rows",
    "count",
    "from_samples",
    "is_row_wise",
    "iter_samples",
    "problem",
    "samples_of",
]
