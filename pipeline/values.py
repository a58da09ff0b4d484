"""The value-kind codec: how a reading's value (a number, a boolean or a string) is
stored and read back.

A reading's value is stored in three columns: ``kind`` (UInt8), ``value`` (Float64)
and ``text`` (String):

========  ====================  ==============  ==========================================
kind      Python value          ``value``       ``text``
========  ====================  ==============  ==========================================
NUMBER 0  float                 the number      ``""``
BOOL   1  bool                  1.0 or 0.0      ``""``
STRING 2  str                   0.0             the string
INT    3  int (64-bit)          the int as a    ``""``, or the decimal digits when the
                                double          double is not exact (beyond 2**53)
========  ====================  ==============  ==========================================

Integers have a kind of their own since TelemetryBatch v5 (the ``longs`` column): they
come back exactly as int64, while numeric SQL (sum, avg, comparisons) keeps reading
``value``; only the few integers a double cannot hold carry their digits in ``text``
(no column to add, nothing stored for the usual counters). Before v5 an int was
stored as NUMBER (a Float64); a replay of those batches stores their ints as INT
(the row-wise union's long branch decodes to an int too). The aggregates keep exact
``imin``/``imax`` of the integers (migration 0021).

The telemetry processor encodes with :func:`int_text` (vectorised); every reader
(queries, registry, identity watch, resource states) decodes with :func:`typed_value`,
and SQL that branches on the kind interpolates these constants.
"""

from __future__ import annotations

import math
from typing import Any

KIND_NUMBER, KIND_BOOL, KIND_STRING, KIND_INT = 0, 1, 2, 3
#: the kinds whose ``value`` is a number (aggregated, compared)
NUMERIC_KINDS = (KIND_NUMBER, KIND_INT)
#: integers beyond this magnitude carry their digits in ``text``
EXACT_DOUBLE_INT = 2**53

#: Python type of a decoded TelemetryBatch value -> its kind (anything else: a string)
KIND_OF_TYPE: dict[type, int] = {float: KIND_NUMBER, int: KIND_INT, bool: KIND_BOOL}


def kind_of(value: Any) -> int:
    """The kind a value is stored as (an int beyond 64 bits: a number)."""
    kind = KIND_OF_TYPE.get(type(value), KIND_STRING)
    if kind == KIND_INT and not -(2**63) <= value < 2**63:
        return KIND_NUMBER
    return kind


def int_text(value: int) -> str:
    """``text`` of an INT reading: its digits when a double cannot hold it, else ''."""
    return str(value) if abs(value) > EXACT_DOUBLE_INT else ""


def typed_value(kind: int, value: float | None, text: str) -> Any:
    """A stored reading as JSON carries it: a bool, a string, an int, or a float; a
    number that is not finite (NaN, ±inf, which ClickHouse writes as JSON null) is
    None. An INT read where a float may stand too (the first value of a bucket that
    mixes ints and floats) is an int when it is integral."""
    if kind == KIND_BOOL:
        return bool(value)
    if kind == KIND_STRING:
        return text
    if kind == KIND_INT:
        if text:
            try:
                return int(text)
            except ValueError:  # a bucket mixing strings and ints: the string's
                return text
        if value is not None and math.isfinite(value) and float(value).is_integer():
            return int(value)
    if value is None or not math.isfinite(value):
        return None
    return float(value)
