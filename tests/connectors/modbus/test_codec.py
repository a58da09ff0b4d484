"""Register words <-> values: round trips for every type and order, and the exact
register layouts of each order checked against bytes computed here with struct."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millrace.connectors.modbus import codec
from millrace.connectors.modbus.codec import CodecError, decode, encode

ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]
orders = st.sampled_from(ORDERS)

INT_TYPES = {
    "int16": st.integers(-(2**15), 2**15 - 1),
    "uint16": st.integers(0, 2**16 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "uint32": st.integers(0, 2**32 - 1),
    "int64": st.integers(-(2**63), 2**63 - 1),
}


def wire(words: list[int]) -> bytes:
    """The bytes of registers as they travel (each register high byte first)."""
    return b"".join(w.to_bytes(2, "big") for w in words)


def words_of(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def permute(raw: bytes, pattern: str) -> bytes:
    """``raw`` (big-endian "ABCD..." bytes) rearranged as ``pattern``, e.g. "CDAB"."""
    return bytes(raw[ord(ch) - ord("A")] for ch in pattern)


#: (byte order, word order) -> the arrangement of a 4-byte and an 8-byte value
LAYOUT = {
    ("big", "big"): ("ABCD", "ABCDEFGH"),
    ("big", "little"): ("CDAB", "GHEFCDAB"),
    ("little", "big"): ("BADC", "BADCFEHG"),
    ("little", "little"): ("DCBA", "HGFEDCBA"),
}


@pytest.mark.parametrize(("byte_order", "word_order"), ORDERS)
def test_layouts_match_struct(byte_order: str, word_order: str) -> None:
    p4, p8 = LAYOUT[(byte_order, word_order)]
    cases = [
        ("int32", struct.pack(">i", -123456789), -123456789, p4),
        ("uint32", struct.pack(">I", 3_000_000_000), 3_000_000_000, p4),
        ("float32", struct.pack(">f", 21.5), 21.5, p4),
        ("int64", struct.pack(">q", -1234567890123), -1234567890123, p8),
        ("float64", struct.pack(">d", -3.25e10), -3.25e10, p8),
    ]
    for dtype, big, value, pattern in cases:
        expected = words_of(permute(big, pattern))
        assert encode(value, dtype, byte_order, word_order) == expected, dtype
        assert decode(expected, dtype, byte_order, word_order) == value, dtype
    # fully little-endian is what struct calls "<"
    if (byte_order, word_order) == ("little", "little"):
        assert wire(encode(21.5, "float32", byte_order, word_order)) == struct.pack("<f", 21.5)
        assert wire(encode(-7, "int64", byte_order, word_order)) == struct.pack("<q", -7)
    # 16-bit values have no word order, only byte order
    one = struct.pack(">h", -1234)
    if byte_order == "little":
        one = one[::-1]
    assert encode(-1234, "int16", byte_order, word_order) == words_of(one)


@given(st.data(), orders)
def test_integers_round_trip(data: st.DataObject, order: tuple[str, str]) -> None:
    dtype = data.draw(st.sampled_from(sorted(INT_TYPES)))
    value = data.draw(INT_TYPES[dtype])
    words = encode(value, dtype, *order)
    assert len(words) == codec.register_count(dtype)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, dtype, *order) == value


@given(st.floats(allow_nan=False, width=32), orders)
def test_float32_round_trip(value: float, order: tuple[str, str]) -> None:
    assert decode(encode(value, "float32", *order), "float32", *order) == value


@given(st.floats(allow_nan=False), orders)
def test_float64_round_trip(value: float, order: tuple[str, str]) -> None:
    words = encode(value, "float64", *order)
    assert wire(words) == permute(struct.pack(">d", value), LAYOUT[order][1])
    assert decode(words, "float64", *order) == value


@given(st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4), orders)
def test_any_registers_decode_and_reencode(words: list[int], order: tuple[str, str]) -> None:
    """Every register content is some float64/int64: decoding then encoding gives it back
    (NaN payloads included, compared by bits)."""
    for dtype in ("int64", "float64"):
        value = decode(words, dtype, *order)
        assert encode(value, dtype, *order) == words
    for dtype in ("int32", "uint32", "float32"):
        value = decode(words[:2], dtype, *order)
        if isinstance(value, float) and math.isnan(value):
            continue  # struct may canonicalise a float32 NaN's payload
        assert encode(value, dtype, *order) == words[:2]


@given(
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20),
    st.sampled_from(["big", "little"]),
)
def test_strings_round_trip(text: str, byte_order: str) -> None:
    size = len(text.encode()) // 2 + 1
    words = encode(text, "string", byte_order, length=size)
    assert len(words) == size
    assert decode(words, "string", byte_order) == text


def test_string_layout_padding_and_errors() -> None:
    words = encode("AB-7", "string", length=3)
    assert wire(words) == b"AB-7\x00\x00"
    assert words == [0x4142, 0x2D37, 0]
    assert encode("AB", "string", "little", length=1) == [0x4241]
    assert decode([0x4142, 0x4300, 0], "string") == "ABC"  # trailing NULs stripped
    assert decode([0x4241, 0x0043], "string", "little") == "ABC"
    with pytest.raises(CodecError, match="not UTF-8"):
        decode([0xFFFE, 0x4142], "string")
    with pytest.raises(CodecError, match="do not fit"):
        encode("ABCDE", "string", length=2)
    with pytest.raises(CodecError, match="length"):
        encode("A", "string")


def test_bool_and_errors() -> None:
    assert decode([0], "bool") is False and decode([7], "bool") is True
    assert encode(True, "bool") == [1] and encode(0, "bool") == [0] and encode("on", "bool") == [1]
    with pytest.raises(CodecError):
        encode(2, "bool")
    with pytest.raises(CodecError, match="out of range"):
        encode(70000, "uint16")
    with pytest.raises(CodecError, match="out of range"):
        encode(-1, "uint32")
    with pytest.raises(CodecError, match="out of range"):
        encode(1e39, "float32")
    with pytest.raises(CodecError, match="not a number"):
        encode("12", "int16")
    with pytest.raises(CodecError):
        encode(math.nan, "int32")
    with pytest.raises(CodecError, match="takes 2 registers"):
        decode([1], "float32")
    with pytest.raises(CodecError, match=r"0\.\.65535"):
        decode([70000], "uint16")
    assert encode(12.6, "int16") == [13]  # an unscaled command rounds to the nearest
    assert codec.resolve("auto", "coil") == "bool" and codec.resolve("auto", "input") == "uint16"


@given(st.data(), orders)
def test_specialised_decoder_agrees_with_decode(
    data: st.DataObject, order: tuple[str, str]
) -> None:
    dtype = data.draw(st.sampled_from([*sorted(INT_TYPES), "float32", "float64", "bool"]))
    n = codec.register_count(dtype)
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n))
    fast = codec.decoder(dtype, *order)(words)
    slow = decode(words, dtype, *order)
    assert type(fast) is type(slow)
    assert fast == slow or (math.isnan(fast) and math.isnan(slow))  # type: ignore[arg-type]
