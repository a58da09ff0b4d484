"""The value-kind codec: how a reading's value (a number, a boolean or a string) is
stored and read back.

A reading's value is stored in three columns: ``kind`` (UInt8), ``value`` (Float64)
and ``text`` (String):

========  ====================  ============  ===========
kind      Python value          ``value``     ``text``
========  ====================  ============  ===========
NUMBER 0  int or float          the number    ``""``
BOOL   1  bool                  1.0 or 0.0    ``""``
STRING 2  str                   0.0           the string
========  ====================  ============  ===========

The telemetry processor encodes with :data:`KIND_OF_TYPE` (vectorised); every reader
(queries, registry, identity watch, resource states) decodes with :func:`typed_value`,
and SQL that branches on the kind interpolates these constants.
"""

from __future__ import annotations

import math
from typing import Any

KIND_NUMBER, KIND_BOOL, KIND_STRING = 0, 1, 2

#: Python type of a decoded TelemetryBatch value -> its kind (anything else: a string)
KIND_OF_TYPE: dict[type, int] = {float: KIND_NUMBER, int: KIND_NUMBER, bool: KIND_BOOL}


def kind_of(value: Any) -> int:
    """The kind a value is stored as."""
    return KIND_OF_TYPE.get(type(value), KIND_STRING)


def typed_value(kind: int, value: float | None, text: str) -> Any:
    """A stored reading as JSON carries it: a bool, a string, or a float; a number that
    is not finite (NaN, ±inf, which ClickHouse writes as JSON null) is None."""
    if kind == KIND_BOOL:
        return bool(value)
    if kind == KIND_STRING:
        return text
    if value is None or not math.isfinite(value):
        return None
    return float(value)
