"""CSV cells → values: numbers (decimal point or comma), integers of a data type's range,
boolean words, and the ``auto`` guess; ValueError for a cell that is not its type."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_SPECIAL = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_INT_RANGE = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_INT64_MAX = 2**63 - 1


def parse_number(text: str, decimal_comma: bool = False) -> float:
    """A float from CSV text: ``12.5`` (or ``12,5`` with ``decimal_comma``), exponent,
    nan, inf. Anything else raises ValueError: no thousands separators, no ``_``."""
    t = text.strip()
    if decimal_comma:
        if "." in t:
            raise ValueError(f"not a number with a decimal comma: {text!r}")
        t = t.replace(",", ".")
    if _NUMBER.fullmatch(t) or t.lower() in _SPECIAL:
        return float(t)
    raise ValueError(f"not a number: {text!r}")


def parse_decimal(text: str, decimal_comma: bool) -> Decimal:
    t = text.strip()
    if decimal_comma:
        if "." in t:
            raise ValueError(f"not a number with a decimal comma: {text!r}")
        t = t.replace(",", ".")
    if not _NUMBER.fullmatch(t):
        raise ValueError(f"not a number: {text!r}")
    return Decimal(t)


def parse_value(text: str, data_type: str, decimal_comma: bool = False) -> Any:
    """``text`` (a stripped, non-empty cell) read as ``data_type``; ValueError if it is not."""
    if data_type == "string":
        return text
    if data_type in ("float64", "float32"):
        return parse_number(text, decimal_comma)
    if data_type == "bool":
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if data_type in _INT_RANGE:
        if _INTEGER.fullmatch(text):
            n = int(text)
        else:
            d = parse_decimal(text, decimal_comma)
            if d != d.to_integral_value():
                raise ValueError(f"not an integer: {text!r}")
            n = int(d)
        lo, hi = _INT_RANGE[data_type]
        if not lo <= n <= hi:
            raise ValueError(f"{n} is out of the {data_type} range")
        return n if n <= _INT64_MAX else float(n)  # events carry signed 64-bit integers
    # auto: integer, number, boolean word, else text
    if _INTEGER.fullmatch(text):
        n = int(text)
        return n if -_INT64_MAX - 1 <= n <= _INT64_MAX else float(n)
    try:
        return parse_number(text, decimal_comma)
    except ValueError:
        pass
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    return text
