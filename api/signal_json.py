"""The signal queries' JSON (raw points, latest values, aggregates) from their Arrow
results, through :mod:`millrace.api.json_columns`: the same bytes the row-by-row
dicts gave (``format_time`` for times, ``typed_value`` for values)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from millrace.api import json_columns as jc
from millrace.api.timeparams import Epoch, format_time

_FACTOR = {Epoch.s: 1_000_000, Epoch.ms: 1_000, Epoch.us: 1}
#: aggregate fields and the columns of ``queries.aggregates_table`` that hold them
_AGG_COLUMNS = {"first": "first_value", "last": "last_value"}


def time_texts(ts_us: pa.Array, epoch: Epoch | None) -> jc.Texts:
    """``format_time`` of each timestamp, as JSON."""
    if epoch is None:
        return jc.iso_times(ts_us)
    return jc.epoch_times(ts_us, _FACTOR[epoch], lambda t: format_time(t, epoch))


def points(table: pa.Table, epoch: Epoch | None) -> tuple[orjson.Fragment, int]:
    """``[{"timestamp", "value", "quality"}, ...]`` of raw readings, and how many."""
    fields = [
        ("timestamp", time_texts(_array(table["ts_us"]), epoch)),
        ("value", _values(table)),
        ("quality", jc.ints(_array(table["quality"]))),
    ]
    return jc.rows(fields, table.num_rows), table.num_rows


def points_by_signal(
    table: pa.Table, signals: Sequence[str], epoch: Epoch | None
) -> dict[str, tuple[orjson.Fragment, int]]:
    """:func:`points` of each signal."""
    if len(signals) == 1:
        return {signals[0]: points(table, epoch)}
    return {s: points(table.filter(pc.equal(table["signal"], s)), epoch) for s in signals}


def latest(table: pa.Table, epoch: Epoch | None) -> tuple[orjson.Fragment, int]:
    """Latest values: identity, signal, timestamp, value, quality, received."""
    fields = [
        ("identity", jc.strings(_array(table["identity"]))),
        ("signal", jc.strings(_array(table["signal"]))),
        ("timestamp", time_texts(_array(table["ts_us"]), epoch)),
        ("value", _values(table)),
        ("quality", jc.ints(_array(table["quality"]))),
        ("received", time_texts(_array(table["received_us"]), epoch)),
    ]
    return jc.rows(fields, table.num_rows), table.num_rows


def aggregate_points(table: pa.Table, fields: Sequence[str]) -> tuple[orjson.Fragment, int]:
    """Buckets of plain numbers (``queries.numbers_only``): ``timestamp`` and ``fields``."""
    stamps = _array(table["timestamp"])
    texts = [
        (
            "timestamp",
            jc.ints(stamps) if pa.types.is_integer(stamps.type) else jc.plain_strings(stamps),
        )
    ]
    for name in fields:
        column = _array(table[_AGG_COLUMNS.get(name, name)])
        texts.append((name, jc.ints(column) if name == "count" else jc.floats(column)))
    return jc.rows(texts, table.num_rows), table.num_rows


def _values(table: pa.Table) -> jc.Texts:
    return jc.typed_values(_array(table["kind"]), _array(table["value"]), _array(table["text"]))


def _array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column
