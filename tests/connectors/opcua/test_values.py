"""Conversions between OPC UA values and readings/commands (pure functions)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from millrace.connectors.opcua.values import (
    WriteError,
    coerce,
    datetime_us,
    quality,
    source_time_us,
    status_name,
    telemetry_value,
)


@given(st.integers(0, 2**32 - 1))
def test_quality_is_the_status_code_as_signed_int32(code: int) -> None:
    q = quality(code)
    assert -(2**31) <= q < 2**31
    assert q & 0xFFFFFFFF == code
    assert (q < 0) == bool(code & 0x80000000)  # Bad codes, and only they, are negative


def test_known_codes() -> None:
    assert quality(0) == 0 and quality(None) == 0
    assert quality(0x80340000) == 0x80340000 - 2**32
    assert status_name(0x80340000) == "BadNodeIdUnknown"
    assert status_name(0x80AB0001) == "0x80AB0001"


@given(st.integers(1, 253_402_300_799_999_999))  # up to 9999-12-31
def test_timestamps_are_exact_microseconds(us: int) -> None:
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    assert datetime_us(dt) == us
    assert datetime_us(dt.replace(tzinfo=None)) == us  # naive means UTC


def test_missing_timestamps_fall_back() -> None:
    server: Any = datetime(2024, 5, 1, 12, 0, 0, 250, tzinfo=UTC)
    assert datetime_us(None) is None
    assert datetime_us(datetime(1601, 1, 1, tzinfo=UTC)) is None  # "no timestamp"
    dv = ua.DataValue(ua.Variant(1.0), ServerTimestamp=server)
    assert source_time_us(dv) == 1714564800000250
    dv = ua.DataValue(ua.Variant(1.0), SourceTimestamp=server + timedelta(seconds=1))
    assert source_time_us(dv) == 1714564801000250
    assert source_time_us(ua.DataValue(ua.Variant(1.0))) is None


@given(
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False),
        st.text(),
    )
)
def test_scalars_keep_their_value(v: object) -> None:
    out = telemetry_value(v)
    if isinstance(v, int) and not isinstance(v, bool) and v > 2**63 - 1:
        assert out == str(v)
    else:
        assert out == v and type(out) is type(v)


def test_other_values_become_text() -> None:
    assert math.isnan(telemetry_value(None))  # type: ignore[arg-type]
    assert json.loads(telemetry_value([1, 2.5, True])) == [1, 2.5, True]  # type: ignore[arg-type]
    assert telemetry_value(ua.LocalizedText("auto")) == '"auto"'
    assert telemetry_value(ua.NodeId(ua.String("A"), ua.Int16(2))) == '"ns=2;s=A"'
    assert telemetry_value(b"\x00\xff") == '"AP8="'
    assert telemetry_value(ua.MessageSecurityMode.Sign) == 2
    assert json.loads(str(telemetry_value(ua.Range(Low=1.0, High=5.0)))) == {
        "Low": 1.0,
        "High": 5.0,
    }
    assert telemetry_value(datetime(2024, 1, 2, tzinfo=UTC)) == '"2024-01-02T00:00:00+00:00"'


V = ua.VariantType


@given(st.integers(-(2**15), 2**15 - 1))
def test_int16_accepts_whole_numbers_in_range(n: int) -> None:
    assert coerce(n, V.Int16) == n
    assert coerce(float(n), V.Int16) == n
    assert coerce(str(n), V.Int16) == n


@pytest.mark.parametrize(
    ("value", "vtype", "message"),
    [
        (2**15, V.Int16, "outside the range of Int16"),
        (-1, V.UInt32, "outside the range of UInt32"),
        (1.5, V.Int32, "not a whole number"),
        ("abc", V.Double, "not a number"),
        (2, V.Boolean, "not a boolean"),
        (1e39, V.Float, "outside the range of Float"),
        ({"a": 1}, V.String, "not a string"),
        ("x", V.ExtensionObject, "cannot be written"),
    ],
)
def test_values_that_do_not_fit_are_refused(
    value: object, vtype: ua.VariantType, message: str
) -> None:
    with pytest.raises(WriteError, match=message):
        coerce(value, vtype)


def test_conversions_for_writes() -> None:
    assert coerce(1, V.Boolean) is True and coerce("false", V.Boolean) is False
    assert coerce(3, V.Double) == 3.0 and isinstance(coerce(3, V.Double), float)
    assert coerce(2.5, V.String) == "2.5"
    assert coerce([1, 2], V.UInt16) == [1, 2]
    assert coerce(1_000_000, V.DateTime) == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert coerce("AP8=", V.ByteString) == b"\x00\xff"
