"""MQTT payloads to reading values and times, and values to command payloads (pure).

Nothing here does I/O or reads the clock: a payload that cannot be used raises
:class:`DecodeError` with a reason meant for the dead letter, and the connector goes on
with the next message.

Value types follow the endpoint's ``data_type``:

* ``auto``: a JSON boolean, number or string as it is;
* ``bool``: ``true``/``false``, or the numbers 0 and 1;
* ``int16`` ... ``uint64``: an integer (or a float with no fraction) in the type's range
  (at most 2**63 - 1: readings are signed 64-bit);
* ``float32``/``float64``: any number, as a float;
* ``string``: a JSON string; for a whole payload (no ``value_path``), its text.

Without ``value_path`` the whole payload is the value: JSON (``21.5``, ``true``,
``"on"``), or, when it is not JSON, its UTF-8 text (``on``) for ``auto`` and ``string``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from millrace.pipeline.errors import MillraceError
from millrace.pipeline.timestamps import MAX_TS_US, MIN_TS_US, TS_RANGE_TEXT

from .jsonpath import JsonPath, PathNotFoundError

TimestampFormat = Literal["epoch_s", "epoch_ms", "epoch_us", "iso8601"]
Scalar = bool | int | float | str

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_EPOCH_FACTOR = {"epoch_s": 1_000_000, "epoch_ms": 1_000, "epoch_us": 1}
INT64 = (-(2**63), 2**63 - 1)
_INT_RANGES: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": INT64,
    "uint64": (0, INT64[1]),
}
FLOAT_TYPES = ("float32", "float64")
FLOAT32_MAX = 3.4028234663852886e38
MAX_IDENTITY = 256


class DecodeError(MillraceError, ValueError):
    """A payload (or a part of it) that cannot become a reading; the text is the reason."""


def parse_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"payload is not JSON ({exc})") from None


def kind(value: Any) -> str:
    """The JSON kind of ``value``, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def coerce(value: Any, data_type: str) -> Scalar:
    """``value`` (decoded JSON) as a reading of ``data_type``; DecodeError if it is of
    the wrong type or out of range."""
    if isinstance(value, dict | list) or value is None:
        raise DecodeError(f"value is {kind(value)}, not a boolean, number or string")
    if data_type == "auto":
        if isinstance(value, int) and not isinstance(value, bool):
            _in_range(value, INT64, "a 64-bit reading")
        out: Scalar = value
        return out
    if data_type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise DecodeError(f"value {_show(value)} is {kind(value)}, expected bool (or 0/1)")
    if data_type in _INT_RANGES:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise DecodeError(f"value {_show(value)} is {kind(value)}, expected {data_type}")
        _in_range(value, _INT_RANGES[data_type], data_type)
        return value
    if data_type in FLOAT_TYPES:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if data_type == "float32" and math.isfinite(number) and abs(number) > FLOAT32_MAX:
                number = math.inf
            if math.isinf(number) and not (isinstance(value, float) and math.isinf(value)):
                raise DecodeError(f"value {_show(value)} is out of range for {data_type}")
            return number
        raise DecodeError(f"value {_show(value)} is {kind(value)}, expected {data_type}")
    if data_type == "string":
        if isinstance(value, str):
            return value
        raise DecodeError(f"value {_show(value)} is {kind(value)}, expected string")
    raise DecodeError(f"unknown data_type {data_type!r}")


def _in_range(value: int, bounds: tuple[int, int], what: str) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise DecodeError(f"value {value} is out of range for {what} ({lo}..{hi})")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole_payload(payload: bytes, data_type: str) -> Scalar:
    """The reading a payload is when no value path is given (see the module doc)."""
    if not payload.strip():
        raise DecodeError("payload is empty")
    try:
        value: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        if data_type not in ("auto", "string"):
            raise DecodeError(f"payload is not a JSON value of type {data_type}") from None
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("payload is neither JSON nor UTF-8 text") from None
    if data_type == "string" and not isinstance(value, str):
        try:
            return payload.decode("utf-8")  # "123" as text, not the number
        except UnicodeDecodeError:  # pragma: no cover - orjson only accepts UTF-8
            raise DecodeError("payload is not UTF-8 text") from None
    if isinstance(value, dict | list):
        raise DecodeError(
            f"payload is {kind(value)}: set value_path to the value inside it (e.g. $.value)"
        )
    return coerce(value, data_type)


def timestamp_us(raw: Any, fmt: str) -> int:
    """Microseconds since the epoch from a payload's time; DecodeError if unusable.

    Epoch formats take a number or a numeric string; ``iso8601`` a string such as
    ``2024-05-01T12:00:00.5+02:00`` (no offset: UTC)."""
    if fmt == "iso8601":
        if not isinstance(raw, str):
            raise DecodeError(f"timestamp {_show(raw)} is {kind(raw)}, expected an ISO 8601 text")
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise DecodeError(f"timestamp {_show(raw)} is not ISO 8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ts = (dt - _EPOCH) // _US
    else:
        factor = _EPOCH_FACTOR.get(fmt)
        if factor is None:
            raise DecodeError(f"unknown timestamp format {fmt!r}")
        number: Any = raw
        if isinstance(raw, str):
            try:
                number = int(raw)
            except ValueError:
                try:
                    number = float(raw)
                except ValueError:
                    raise DecodeError(f"timestamp {_show(raw)} is not a number ({fmt})") from None
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise DecodeError(f"timestamp {_show(raw)} is {kind(raw)}, expected a number ({fmt})")
        if isinstance(number, float):
            if not math.isfinite(number):
                raise DecodeError(f"timestamp {_show(raw)} is not finite")
            ts = round(number * factor)
        else:
            ts = number * factor
    if not MIN_TS_US <= ts < MAX_TS_US:
        raise DecodeError(f"timestamp {_show(raw)} ({fmt}) is outside {TS_RANGE_TEXT}")
    return int(ts)


# -- endpoints ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ValueSpec:
    """How one endpoint reads its payloads."""

    value_path: JsonPath | None = None
    data_type: str = "auto"
    timestamp_path: JsonPath | None = None
    timestamp_format: TimestampFormat = "epoch_ms"


def endpoint_reading(payload: bytes, spec: ValueSpec) -> tuple[Scalar, int | None]:
    """(value, source time in µs or None) of one endpoint's message."""
    if spec.value_path is None:
        return whole_payload(payload, spec.data_type), None
    doc = parse_json(payload)
    value = _at(doc, spec.value_path, "value")
    try:
        out = coerce(value, spec.data_type)
    except DecodeError as exc:
        raise DecodeError(f"{spec.value_path}: {exc}") from None
    ts = None
    if spec.timestamp_path is not None:
        ts = timestamp_us(_at(doc, spec.timestamp_path, "timestamp"), spec.timestamp_format)
    return out, ts


def _at(doc: Any, path: JsonPath, what: str) -> Any:
    try:
        return path.get(doc)
    except PathNotFoundError as exc:
        raise DecodeError(f"{what} missing: {exc}") from None


# -- payload mappings ---------------------------------------------------------------------
@dataclass(frozen=True)
class MappingSpec:
    """One JSON payload to many signals: ``values`` maps signal -> path."""

    values: Mapping[str, JsonPath]
    identity_path: JsonPath | None = None
    timestamp_path: JsonPath | None = None
    timestamp_format: TimestampFormat = "epoch_ms"


@dataclass
class MappingResult:
    """What a payload gave: the identity (when taken from the payload), the source
    time, the values found, and a reason per value that could not be used."""

    identity: str | None
    ts_us: int | None
    values: list[tuple[str, Scalar]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def mapping_readings(payload: bytes, spec: MappingSpec) -> MappingResult:
    """Readings of a mapped payload.

    A signal whose path is missing or null is skipped: devices often publish only what
    changed. A value of the wrong kind is reported in ``errors`` and the others are
    used. DecodeError when the payload is unusable as a whole: not JSON, no identity or
    a bad time, or none of the mapped values present."""
    doc = parse_json(payload)
    identity = None
    if spec.identity_path is not None:
        raw = _at(doc, spec.identity_path, "identity")
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise DecodeError(f"identity {_show(raw)} at {spec.identity_path} is {kind(raw)}")
        identity = str(raw)
        if not 0 < len(identity) <= MAX_IDENTITY:
            raise DecodeError(f"identity at {spec.identity_path} must be 1-{MAX_IDENTITY} chars")
    ts = None
    if spec.timestamp_path is not None:
        ts = timestamp_us(_at(doc, spec.timestamp_path, "timestamp"), spec.timestamp_format)
    result = MappingResult(identity, ts)
    for signal, path in spec.values.items():
        try:
            value = path.get(doc)
        except PathNotFoundError:
            continue
        if value is None:
            continue
        try:
            result.values.append((signal, coerce(value, "auto")))
        except DecodeError as exc:
            result.errors.append(f"{signal} ({path}): {exc}")
    if not result.values and not result.errors:
        raise DecodeError(
            "none of the mapped values is in the payload ("
            + ", ".join(str(p) for p in spec.values.values())
            + ")"
        )
    return result


# -- commands -----------------------------------------------------------------------------
def command_payload(
    value: Any, fmt: str, data_type: str, identity: str, signal: str, ts_us: int
) -> bytes:
    """The payload a command writes: ``json`` is ``{"value": v, "identity", "signal",
    "ts_us"}``, ``plain`` the bare value (``21.5``, ``true``, text as is).

    The value is checked against the endpoint's data_type (DecodeError if it does not
    fit), so a float command for an int16 endpoint is sent as an integer when whole."""
    v = coerce(value, data_type)
    if isinstance(v, float) and not math.isfinite(v):
        raise DecodeError(f"value {v} is not a finite number")
    if fmt == "plain":
        return v.encode() if isinstance(v, str) else orjson.dumps(v)
    return orjson.dumps({"value": v, "identity": identity, "signal": signal, "ts_us": ts_us})
