"""Conversions between OPC UA data values and millrace readings and commands.

A TelemetryBatch value is a boolean, a 64-bit integer, a double or a string, so every
OPC UA variant is mapped to one of those without losing information: integers beyond
int64 (UInt64) and structured or array values become text (JSON where it makes
sense), a missing value (a Bad status often carries none) becomes NaN, which the
base class keeps as text. Writes go the other way, to the variant type of the node.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua

from millrace.pipeline.errors import MillraceError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (INT64_MIN, INT64_MAX),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38

#: endpoint data_type -> variant type written (``auto``: the node's DataType)
DATA_TYPES: dict[str, ua.VariantType] = {
    "bool": ua.VariantType.Boolean,
    "int16": ua.VariantType.Int16,
    "uint16": ua.VariantType.UInt16,
    "int32": ua.VariantType.Int32,
    "uint32": ua.VariantType.UInt32,
    "int64": ua.VariantType.Int64,
    "uint64": ua.VariantType.UInt64,
    "float32": ua.VariantType.Float,
    "float64": ua.VariantType.Double,
    "string": ua.VariantType.String,
}


def quality(code: int | None) -> int:
    """An OPC UA StatusCode as the signed 32-bit quality of a reading (0 = Good)."""
    if not code:
        return 0
    code &= 0xFFFFFFFF
    return code - 2**32 if code >= 2**31 else code


def status_name(code: int) -> str:
    """``BadNodeIdUnknown`` for 0x80340000 (the hex code when unknown)."""
    code &= 0xFFFFFFFF
    known = ua.status_codes.code_to_name_doc.get(code)
    return known[0] if known else f"0x{code:08X}"


def datetime_us(dt: datetime | None) -> int | None:
    """Microseconds since the epoch of an OPC UA DateTime; None when it is missing or
    not after 1970 (servers send the minimum DateTime for "no timestamp")."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    us = (dt - _EPOCH) // _US
    return us if us > 0 else None


def source_time_us(dv: ua.DataValue) -> int | None:
    """The source timestamp of a data value, else its server timestamp."""
    ts = datetime_us(dv.SourceTimestamp)
    return ts if ts is not None else datetime_us(dv.ServerTimestamp)


def telemetry_value(value: Any) -> bool | int | float | str:
    """An OPC UA value as a TelemetryBatch value (see the module doc)."""
    if value is None:
        return math.nan
    if isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        # enums (IntEnum) become plain numbers; beyond int64 only text is exact
        return int(value) if INT64_MIN <= value <= INT64_MAX else str(int(value))
    return json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, ua.QualifiedName | ua.NodeId):
        return value.to_string()
    if isinstance(value, ua.StatusCode):
        return quality(value.value)
    if isinstance(value, ua.Variant):
        return _jsonable(value.Value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "Encoding"
        }
    return str(value)


class WriteError(MillraceError, ValueError):
    """A command value that does not fit the node's type (the message says why)."""


def coerce(value: Any, vtype: ua.VariantType) -> Any:
    """``value`` (a command value: bool, number, string or a list of them) as the Python
    value asyncua encodes as ``vtype``; WriteError when it does not fit."""
    if isinstance(value, list):
        return [coerce(v, vtype) for v in value]
    if vtype == ua.VariantType.Boolean:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise WriteError(f"{value!r} is not a boolean")
    if vtype in _INT_RANGES:
        n = _integer(value)
        lo, hi = _INT_RANGES[vtype]
        if not lo <= n <= hi:
            raise WriteError(f"{value!r} is outside the range of {vtype.name} ({lo}..{hi})")
        return n
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        x = _number(value)
        if vtype == ua.VariantType.Float and math.isfinite(x) and abs(x) > _FLOAT32_MAX:
            raise WriteError(f"{value!r} is outside the range of Float")
        return x
    if vtype == ua.VariantType.String:
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return json.dumps(value)
        raise WriteError(f"{value!r} is not a string")
    if vtype == ua.VariantType.DateTime:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _EPOCH + timedelta(microseconds=int(value))
        if isinstance(value, str):
            try:
                dt = datetime.fromisoformat(value)
            except ValueError:
                raise WriteError(f"{value!r} is not an ISO-8601 time") from None
            return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        raise WriteError(f"{value!r} is not a time (epoch microseconds or ISO-8601)")
    if vtype == ua.VariantType.ByteString:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise WriteError(f"{value!r} is not base64") from None
        raise WriteError(f"{value!r} is not a byte string (base64 text)")
    raise WriteError(f"values of type {vtype.name} cannot be written")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise WriteError(f"{value!r} is not a whole number")
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            pass
        try:
            return _integer(float(value))
        except ValueError:
            pass
    raise WriteError(f"{value!r} is not a whole number")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise WriteError(f"{value!r} is not a number")


def infer_variant_type(value: Any) -> ua.VariantType:
    """The variant type of a command value written to a node typed BaseDataType or
    Number whose current value gives no hint."""
    if isinstance(value, list) and value:
        return infer_variant_type(value[0])
    if isinstance(value, bool):
        return ua.VariantType.Boolean
    if isinstance(value, int):
        return ua.VariantType.Int64
    if isinstance(value, float):
        return ua.VariantType.Double
    return ua.VariantType.String
