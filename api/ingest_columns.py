"""HTTP ingest's rows turned into columns at the edge, for batches that are plainly valid.

``POST /identities/{id}/data`` receives rows (a sample per timestamp, a map of signal
values) and the log carries columns (``pipeline.telemetry_columns``). The general path
validates every sample with pydantic and every value in Python, then turns the rows
into columns: several Python objects and checks per reading. Most batches a device
sends are regular: every sample has the same signals, each signal one type. For those,
:func:`plain_columns` checks the whole batch a column at a time (the types of a column
as one set, numeric bounds as min/max, finiteness with numpy, each signal name once)
and builds the columns directly.

It only ever *accepts*: a batch it does not recognise as plainly valid (irregular
signals, a signal of mixed types, any value or field the rules refuse) gives None, and
the route takes the general path, which accepts or refuses it with the message naming
the field exactly as before. So the fast path changes no answer: a test holds it to
give the very columns the general path gives, for any batch it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from millrace.pipeline.telemetry_columns import (
    KIND_BOOLEAN,
    KIND_DOUBLE,
    KIND_LONG,
    KIND_STRING,
    Columns,
)
from millrace.pipeline.timestamps import valid_ts

KINDS = (KIND_DOUBLE, KIND_BOOLEAN, KIND_STRING, KIND_LONG)
_INT64 = (-(2**63), 2**63)
_INT32 = (-(2**31), 2**31)
_SAMPLE_KEYS = frozenset({"timestamp", "values"})
_SAMPLE_KEYS_Q = frozenset({"timestamp", "values", "quality"})


@dataclass(frozen=True, slots=True)
class IngestRules:
    """The ingest rules the batch must meet (``ApiSettings``' ingest fields)."""

    max_samples: int
    max_readings: int
    max_future_us: int
    max_past_us: int
    max_text_bytes: int
    strict_signals: bool
    known_signals: frozenset[str]
    #: a compiled pattern every signal name must match
    signal_re: Any


def plain_columns(document: Any, rules: IngestRules, now_us: int) -> tuple[Columns, int] | None:
    """The batch ``document`` (parsed JSON) as columns and its number of readings, when
    it is plainly valid (see the module doc); None sends it down the general path."""
    if document.__class__ is not list or not document or len(document) > rules.max_samples:
        return None
    first = document[0]
    if first.__class__ is not dict:
        return None
    names = first.get("values")
    if names.__class__ is not dict or not names:
        return None
    signals = list(names)
    if len(signals) * len(document) > rules.max_readings:
        return None
    keys = names.keys()
    rows: list[dict[str, Any]] = []
    for sample in document:
        if sample.__class__ is not dict:
            return None
        values = sample.get("values")
        if values.__class__ is not dict or values.keys() != keys:
            return None
        rows.append(values)
    shape = {frozenset(s) for s in document}
    if not shape <= {_SAMPLE_KEYS, _SAMPLE_KEYS_Q}:
        return None
    ts = [s["timestamp"] for s in document]
    qualities = [s.get("quality", 0) for s in document]
    if not _timestamps_ok(ts, rules, now_us) or not _ints_in(qualities, _INT32):
        return None
    for name in signals:
        if not rules.signal_re.match(name):
            return None
        if rules.strict_signals and name not in rules.known_signals:
            return None
    by_kind: dict[int, list[Any]] = {k: [] for k in KINDS}
    kinds: list[int] = []
    for name in signals:
        column = [v[name] for v in rows]
        kind = _kind(column, rules.max_text_bytes)
        if kind is None:
            return None
        kinds.append(kind)
        by_kind[kind].extend(column)
    columns = Columns(
        ts,
        qualities,
        signals,
        kinds,
        None,
        None,
        by_kind[KIND_DOUBLE],
        by_kind[KIND_BOOLEAN],
        by_kind[KIND_STRING],
        by_kind[KIND_LONG],
    )
    return columns, len(signals) * len(rows)


def _timestamps_ok(ts: list[Any], rules: IngestRules, now_us: int) -> bool:
    if set(map(type, ts)) != {int}:
        return False
    low, high = min(ts), max(ts)
    return (
        valid_ts(low)
        and valid_ts(high)
        and high <= now_us + rules.max_future_us
        and low >= now_us - rules.max_past_us
    )


def _ints_in(values: list[Any], bounds: tuple[int, int]) -> bool:
    if set(map(type, values)) != {int}:
        return False
    return bounds[0] <= min(values) and max(values) < bounds[1]


def _kind(column: list[Any], max_text_bytes: int) -> int | None:
    """The one kind of every value of ``column`` when each is valid, else None."""
    types = set(map(type, column))
    if len(types) != 1:
        return None  # mixed types: the general path groups them
    t = types.pop()
    if t is float:
        return KIND_DOUBLE if bool(np.isfinite(np.array(column, dtype=np.float64)).all()) else None
    if t is int:
        return KIND_LONG if _ints_in(column, _INT64) else None
    if t is bool:
        return KIND_BOOLEAN
    if t is str:
        try:
            "".join(column).encode()  # a lone surrogate (json's fallback reads them)
        except UnicodeEncodeError:
            return None
        # a character is at most 4 bytes of UTF-8: measure only when it may matter
        if max(map(len, column)) * 4 > max_text_bytes and any(
            len(s.encode()) > max_text_bytes for s in column
        ):
            return None
        return KIND_STRING
    return None


__all__ = ["IngestRules", "plain_columns"]
