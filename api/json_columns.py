"""JSON arrays of objects built from Arrow columns, byte for byte as orjson writes the
same rows as Python dicts.

A response of 1000 readings built as dicts costs a Python object per value, a
``datetime`` per timestamp and a dict per row, all on the event loop that serves every
other request (and, in ``millrace run``, drives ingest). Here each column becomes an
Arrow array of JSON texts in C loops (orjson for numbers, Arrow for times, joins and
splits), the columns are joined into ``{"key":value,...}`` rows and the rows into one
array; the response embeds it with :class:`orjson.Fragment`. Python runs per row only
where a value needs it: an INT reading that carries its digits in ``text``, a time
beyond 2**53 microseconds in fractional seconds (both rare; they go through the same
functions the row path uses, so the output is the same).

Equality with ``orjson.dumps`` of the rows is the contract (tests/api/test_json_columns.py
compares both on generated columns, NaN, infinities, nulls and ints beyond 2**53 included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from millrace.pipeline.values import KIND_BOOL, KIND_INT, KIND_STRING, typed_value

#: a column of JSON texts, one per row (an Arrow string array)
Texts: TypeAlias = pa.Array
_EXACT = 2**53


def rows(fields: Sequence[tuple[str, Texts]], length: int) -> orjson.Fragment:
    """``[{"k1":v1,"k2":v2},...]`` from columns of JSON texts (keys are plain ASCII)."""
    if length == 0:
        return orjson.Fragment(b"[]")
    parts: list[Any] = []
    for i, (key, texts) in enumerate(fields):
        parts.append(("{" if i == 0 else ",") + orjson.dumps(key).decode() + ":")
        parts.append(texts)
    parts.append("}")
    joined = pc.binary_join_element_wise(*parts, "")
    whole = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, length], pa.int32()), joined), ",")
    return orjson.Fragment(b"[" + whole[0].as_buffer().to_pybytes() + b"]")


def _split(text: bytes, length: int) -> Texts:
    """The items of orjson's ``[a,b,...]`` of numbers (no item holds a comma)."""
    if length == 0:
        return pa.array([], pa.string())
    items: Texts = pc.split_pattern(pa.array([text[1:-1].decode()]), ",").values
    return items


def floats(values: pa.Array | np.ndarray) -> Texts:
    """Numbers as orjson writes Python floats; NaN, infinities and nulls as ``null``."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        values = pc.fill_null(values.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    array = np.ascontiguousarray(values, dtype=np.float64)
    return _split(orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY), len(array))


def ints(values: pa.Array | np.ndarray) -> Texts:
    """Integers (any Arrow integer type) as their decimal digits; nulls as ``null``."""
    array = pa.array(values) if isinstance(values, np.ndarray) else values
    texts: Texts = pc.fill_null(pc.cast(array, pa.string()), "null")
    return texts


def plain_strings(values: pa.Array) -> Texts:
    """Strings that need no escaping (ISO times, digits) in quotes."""
    texts: Texts = pc.binary_join_element_wise('"', values.cast(pa.string()), '"', "")
    return texts


def strings(values: pa.Array) -> Texts:
    """Strings as orjson escapes them; each distinct string is escaped once (names,
    texts and states repeat)."""
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    texts = pa.array(
        [orjson.dumps(s).decode() for s in encoded.dictionary.to_pylist()], pa.string()
    )
    taken: Texts = pc.fill_null(texts.take(encoded.indices), "null")
    return taken


def iso_times(ts_us: pa.Array) -> Texts:
    """Epoch microseconds as ``"2026-01-02T03:04:05.000006Z"`` (no fraction when it is
    zero), as ``datetime.isoformat`` writes them (numpy's formatter: twice as fast as
    Arrow's ``strftime``)."""
    values = ts_us.cast(pa.int64()).to_numpy(zero_copy_only=False)
    stamps = values.astype("datetime64[us]")
    text = np.datetime_as_string(stamps, unit="us")
    whole = values % 1_000_000 == 0
    if whole.any():
        text = np.where(whole, np.datetime_as_string(stamps, unit="s"), text)
    quoted: Texts = pc.binary_join_element_wise('"', pa.array(text, pa.string()), 'Z"', "")
    return quoted


def epoch_times(
    ts_us: pa.Array, factor: int, fallback: Callable[[int], int | float | str]
) -> Texts:
    """Epoch microseconds in units of ``factor`` microseconds: an integer where it
    divides, else a float; ``fallback(ts_us)`` for those a double cannot hold exactly."""
    values = ts_us.cast(pa.int64()).to_numpy(zero_copy_only=False)
    if factor == 1:
        return ints(values)
    whole = values % factor == 0
    texts: Texts = pc.if_else(pa.array(whole), ints(values // factor), floats(values / factor))
    inexact = ~whole & (np.abs(values) >= _EXACT)
    if inexact.any():
        texts = _patch(texts, inexact, lambda i: orjson.dumps(fallback(int(values[i]))).decode())
    return texts


def _patch(texts: Texts, where: np.ndarray, render: Callable[[int], str]) -> Texts:
    patched = texts.to_pylist()
    for i in np.flatnonzero(where):
        patched[i] = render(int(i))
    array: Texts = pa.array(patched, pa.string())
    return array


def typed_values(kind: pa.Array, value: pa.Array, text: pa.Array) -> Texts:
    """Readings' values by kind (``pipeline.values``), as the row path writes
    ``typed_value(kind, v, text)`` where ``v`` is the value as ClickHouse's JSON gave it
    (a non-finite number is null there, so a NaN boolean is false; -0 is 0)."""
    k = kind.cast(pa.int64()).to_numpy(zero_copy_only=False)
    # + 0.0: -0.0 as 0.0, as it came back from the JSON ("-0", an int)
    v = pc.fill_null(value.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False) + 0.0
    finite = np.isfinite(v)
    as_int = (k == KIND_INT) & finite & (np.abs(v) < 2.0**63) & (v == np.trunc(v))
    out: Texts = floats(v)
    out = pc.if_else(pa.array(as_int), ints(np.where(as_int, v, 0).astype(np.int64)), out)
    out = pc.if_else(
        pa.array(k == KIND_BOOL),
        pc.if_else(pa.array(finite & (v != 0)), "true", "false"),
        out,
    )
    is_string = k == KIND_STRING
    if is_string.any():
        out = pc.if_else(pa.array(is_string), strings(text), out)
    # INT digits in text, and integral INT doubles beyond int64: the row path's rules
    odd = (k == KIND_INT) & (
        (pc.not_equal(text, "").to_numpy(zero_copy_only=False))
        | (finite & (v == np.trunc(v)) & ~as_int)
    )
    if odd.any():
        texts = text.to_pylist()

        def render(i: int) -> str:
            number = float(v[i]) if finite[i] else None
            typed = typed_value(int(k[i]), number, texts[i])
            try:
                return orjson.dumps(typed).decode()
            except TypeError:  # an integral double beyond int64 (no INT is stored so)
                return str(typed)

        out = _patch(out, odd, render)
    return out
