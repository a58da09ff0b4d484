"""Register words <-> values, pure: no I/O, no pymodbus.

A Modbus register is a 16-bit word sent high byte first. Values wider than a register
span consecutive registers whose order the protocol does not define, so every device
picks one: ``word_order`` says whether the first register holds the most significant
word (big, the common "ABCD") or the least (little, "CDAB"); ``byte_order`` says
whether each register's high byte comes first (big) or is swapped (little, "BADC").

Strings are the registers' bytes in register order (``byte_order`` applies inside each
register; ``word_order`` does not, as text is never stored back to front), UTF-8,
with trailing NUL padding removed. Bytes that are not UTF-8 raise :class:`CodecError`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

from millrace.pipeline.errors import MillraceError

#: data type -> (struct format, registers); bool and string are handled apart
_STRUCT: dict[str, tuple[str, int]] = {
    "int16": ("h", 1),
    "uint16": ("H", 1),
    "int32": ("i", 2),
    "uint32": ("I", 2),
    "int64": ("q", 4),
    "float32": ("f", 2),
    "float64": ("d", 4),
}
_INT_RANGE: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
DATA_TYPES = frozenset({*_STRUCT, "bool", "string"})

Value = bool | int | float | str


class CodecError(MillraceError, ValueError):
    """Registers that do not decode, or a value that does not encode, to the type."""


def resolve(data_type: str, register: str) -> str:
    """The concrete type of an endpoint: ``auto`` is bool on bits, uint16 on registers."""
    if data_type != "auto":
        return data_type
    return "bool" if register in ("coil", "discrete") else "uint16"


def register_count(data_type: str, length: int | None = None) -> int:
    """Registers (or bits, for a bool on coils) one value of ``data_type`` occupies."""
    if data_type == "string":
        if length is None or length < 1:
            raise CodecError("a string needs a length in registers")
        return length
    if data_type == "bool":
        return 1
    try:
        return _STRUCT[data_type][1]
    except KeyError:
        raise CodecError(f"unknown data type {data_type!r}") from None


def words_to_bytes(words: Sequence[int], byte_order: str = "big") -> bytes:
    """Each word as two bytes, high byte first unless ``byte_order`` is little."""
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise CodecError("a register holds 0..65535")
    raw = struct.pack(f">{len(words)}H", *words)
    if byte_order == "little":
        raw = _swap_pairs(raw)
    return raw


def bytes_to_words(raw: bytes, byte_order: str = "big") -> list[int]:
    """The inverse of :func:`words_to_bytes` (``raw`` has an even length)."""
    if len(raw) % 2:
        raise CodecError("registers are two bytes each")
    if byte_order == "little":
        raw = _swap_pairs(raw)
    return list(struct.unpack(f">{len(raw) // 2}H", raw))


def _swap_pairs(raw: bytes) -> bytes:
    out = bytearray(raw)
    out[0::2], out[1::2] = raw[1::2], raw[0::2]
    return bytes(out)


def decode(
    words: Sequence[int],
    data_type: str,
    byte_order: str = "big",
    word_order: str = "big",
) -> Value:
    """The value held by ``words`` (exactly :func:`register_count` of them)."""
    if data_type == "bool":
        if len(words) != 1:
            raise CodecError(f"bool takes 1 register, got {len(words)}")
        return words[0] != 0
    if data_type == "string":
        raw = words_to_bytes(words, byte_order).rstrip(b"\x00")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"not UTF-8 text: {raw!r}") from exc
    try:
        fmt, count = _STRUCT[data_type]
    except KeyError:
        raise CodecError(f"unknown data type {data_type!r}") from None
    if len(words) != count:
        raise CodecError(f"{data_type} takes {count} registers, got {len(words)}")
    ordered = list(words) if word_order == "big" else list(reversed(words))
    value: int | float = struct.unpack(">" + fmt, words_to_bytes(ordered, byte_order))[0]
    return value


def decoder(
    data_type: str, byte_order: str = "big", word_order: str = "big"
) -> Callable[[Sequence[int]], Value]:
    """:func:`decode` specialised once for an endpoint: the connector decodes every
    endpoint on every poll, and the generic path costs more than the request. The
    words must come from a response (0..65535, the right count)."""
    if data_type == "uint16" and byte_order == "big":
        return lambda words: words[0]
    if data_type == "int16" and byte_order == "big":
        return lambda words: words[0] - 0x10000 if words[0] & 0x8000 else words[0]
    if data_type not in _STRUCT:
        return lambda words: decode(words, data_type, byte_order, word_order)
    fmt, count = _STRUCT[data_type]
    value_struct = struct.Struct(">" + fmt)
    words_struct = struct.Struct(f">{count}H")
    swap_bytes = byte_order == "little"
    reverse = word_order == "little"

    def decode_fast(words: Sequence[int]) -> Value:
        if reverse:
            words = words[::-1]
        raw = words_struct.pack(*words)
        if swap_bytes:
            raw = _swap_pairs(raw)
        value: int | float = value_struct.unpack(raw)[0]
        return value

    return decode_fast


def encode(
    value: object,
    data_type: str,
    byte_order: str = "big",
    word_order: str = "big",
    length: int | None = None,
) -> list[int]:
    """The register words that hold ``value``; CodecError if it does not fit the type.

    Integer types take ints and integral floats (a command unscaled by the connector is
    a float); a float with a fraction is rounded to the nearest integer. Strings are
    padded with NULs to ``length`` registers."""
    if data_type == "bool":
        return [1 if _as_bool(value) else 0]
    if data_type == "string":
        if not isinstance(value, str):
            raise CodecError(f"a string endpoint takes text, not {type(value).__name__}")
        n = register_count("string", length)
        raw = value.encode("utf-8")
        if len(raw) > 2 * n:
            raise CodecError(f"{len(raw)} bytes do not fit in {n} registers")
        return bytes_to_words(raw.ljust(2 * n, b"\x00"), byte_order)
    try:
        fmt, _count = _STRUCT[data_type]
    except KeyError:
        raise CodecError(f"unknown data type {data_type!r}") from None
    number: int | float
    if data_type.startswith("float"):
        number = _as_float(value)
        if data_type == "float32" and math.isfinite(number) and abs(number) > 3.4028234663852886e38:
            raise CodecError(f"{number} is out of range for float32")
    else:
        number = _as_int(value)
        lo, hi = _INT_RANGE[data_type]
        if not lo <= number <= hi:
            raise CodecError(f"{number} is out of range for {data_type} ({lo}..{hi})")
    words = bytes_to_words(struct.pack(">" + fmt, number), byte_order)
    return words if word_order == "big" else list(reversed(words))


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "on", "off"):
        return value.lower() in ("true", "1", "on")
    raise CodecError(f"{value!r} is not a boolean")


def _as_int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CodecError(f"{value} is not a number an integer register can hold")
        return round(value)
    raise CodecError(f"{value!r} is not a number")


def _as_float(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise CodecError(f"{value!r} is not a number")
