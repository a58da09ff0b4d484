"""The CSV row parser on its own: numbers, quoting, times, headers, line numbers."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.connectors.files.config import CsvOptions, FilesEndpoint
from millrace.connectors.files.csvparse import (
    BadLine,
    CsvFile,
    FileFormatError,
    Row,
    TimestampParser,
    check_timestamp_format,
    parse_number,
    parse_value,
)
from millrace.pipeline.timestamps import MAX_TS_US, MIN_TS_US


def opts(**kw: Any) -> CsvOptions:
    return CsvOptions.model_validate(kw)


def us(dt: datetime) -> int:
    return int(dt.replace(microsecond=0).timestamp()) * 1_000_000 + dt.microsecond


def parse(data: bytes, o: CsvOptions, endpoints: Any = ()) -> list[Row | BadLine]:
    return list(CsvFile(data, o, endpoints).rows())


# -- numbers -------------------------------------------------------------------------------
finite_or_inf = st.floats(allow_nan=False)


@given(finite_or_inf)
def test_numbers_read_back_exactly_with_either_decimal_mark(x: float) -> None:
    text = repr(x)
    assert parse_number(text) == x
    assert parse_number(text.replace(".", ","), decimal_comma=True) == x


@pytest.mark.parametrize(
    ("text", "dc"),
    [
        ("1,5", False),
        ("1.5", True),
        ("1_000", False),
        ("1.000,5", True),
        ("", False),
        ("0x1", False),
    ],
)
def test_numbers_that_are_not(text: str, dc: bool) -> None:
    with pytest.raises(ValueError):
        parse_number(text, dc)


def test_typed_values() -> None:
    assert parse_value("-32768", "int16") == -32768
    with pytest.raises(ValueError, match="out of the int16 range"):
        parse_value("32768", "int16")
    assert parse_value("12,0", "uint16", decimal_comma=True) == 12
    with pytest.raises(ValueError, match="not an integer"):
        parse_value("12.5", "int32")
    assert parse_value("18446744073709551615", "uint64") == float(2**64 - 1)
    assert [parse_value(t, "bool") for t in ("ON", "0", "yes", "False")] == [
        True,
        False,
        True,
        False,
    ]
    with pytest.raises(ValueError, match="not a boolean"):
        parse_value("maybe", "bool")
    assert parse_value(" x ", "string") == " x "
    assert [parse_value(t, "auto") for t in ("7", "7.5", "true", "RUN")] == [7, 7.5, True, "RUN"]


# -- the row parser, with hypothesis -------------------------------------------------------
# text the writer has to quote: separators, quotes, line breaks, non-ASCII
cell_text = (
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r")
        | st.sampled_from([",", ";", "\t", '"', "'", "\n"]),
        min_size=1,
        max_size=12,
    )
    .map(str.strip)
    .filter(bool)
)


@settings(max_examples=150, deadline=None)
@given(
    sep=st.sampled_from([",", ";", "\t", "|"]),
    quote=st.sampled_from(['"', "'"]),
    decimal_comma=st.booleans(),
    rows=st.lists(
        st.tuples(
            # times an event may carry (pipeline.timestamps); others are bad lines
            st.integers(MIN_TS_US, MAX_TS_US - 1),
            cell_text,
            st.lists(finite_or_inf, min_size=2, max_size=2),
        ),
        max_size=8,
    ),
)
def test_written_rows_parse_back_exactly(
    sep: str, quote: str, decimal_comma: bool, rows: list[tuple[int, str, list[float]]]
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=sep, quotechar=quote, lineterminator="\n")
    w.writerow(["ts", "who", "a", "b"])
    for ts, who, values in rows:
        num = [repr(v).replace(".", ",") if decimal_comma else repr(v) for v in values]
        w.writerow([ts, who, *num])
    text = buf.getvalue()
    o = opts(
        separator=sep,
        quotechar=quote,
        decimal_comma=decimal_comma,
        timestamp="ts",
        timestamp_format="epoch_us",
        identity_column="who",
    )
    got = parse(text.encode(), o)
    assert all(isinstance(r, Row) for r in got), got
    got_rows = [r for r in got if isinstance(r, Row)]
    assert [(r.ts_us, [(x.identity, x.signal, x.value) for x in r.readings]) for r in got_rows] == [
        (ts, [(who, "a", values[0]), (who, "b", values[1])]) for ts, who, values in rows
    ]
    # line numbers count physical lines: a quoted line break makes a record two lines
    starts, n = [], 2
    for _, who, _ in rows:
        starts.append(n)
        n += 1 + who.count("\n")
    assert [r.line for r in got_rows] == starts
    assert all(isinstance(r, Row) and r.end <= len(text.encode()) for r in got)


# -- times ---------------------------------------------------------------------------------
def test_fall_back_hour_is_read_in_file_order() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    p = TimestampParser("%Y-%m-%d %H:%M", "Europe/Berlin")
    texts = ["01:30", "02:00", "02:30", "02:00", "02:30", "03:00"]
    got = [p(f"2023-10-29 {t}") for t in texts]
    start = us(datetime(2023, 10, 28, 23, 30, tzinfo=UTC))
    assert got == [start + i * 1_800_000_000 for i in range(6)]
    assert got[1] == us(datetime(2023, 10, 29, 2, 0, tzinfo=berlin))  # first pass: CEST


def test_time_formats() -> None:
    assert TimestampParser("epoch_s", "UTC", decimal_comma=True)("1700000000,25") == (
        1_700_000_000_250_000
    )
    assert TimestampParser("epoch_us", "UTC")("-5") == -5
    # an explicit offset wins over the configured zone
    p = TimestampParser("iso8601", "Asia/Tokyo")
    assert p("2024-01-01T00:00:00+01:00") == us(datetime(2023, 12, 31, 23, tzinfo=UTC))
    assert p("2024-01-01T09:00:00") == us(datetime(2024, 1, 1, tzinfo=UTC))
    p = TimestampParser("%d/%m/%Y %H:%M:%S %z", "Asia/Tokyo")
    assert p("01/01/2024 00:00:00 -0500") == us(datetime(2024, 1, 1, 5, tzinfo=UTC))
    with pytest.raises(ValueError, match="out of range"):
        TimestampParser("epoch_s", "UTC")("1e20")
    assert check_timestamp_format("%d.%m.%Y %H:%M:%S") is None
    assert check_timestamp_format("iso8601") is None
    assert "bad directive" in (check_timestamp_format("%Y-%Q") or "")
    assert "neither" in (check_timestamp_format("yyyy-mm-dd") or "")


# -- files ---------------------------------------------------------------------------------
def test_header_index_preamble_units_and_offsets_for_resuming() -> None:
    data = b"logger 7\nexported today\nt,v\nunits,degC\n1,10\n\n2,20\n3,30\n"
    o = opts(
        header=1,
        skip_rows=1,
        skip_after_header=1,
        timestamp="t",
        timestamp_format="epoch_s",
        identity="m",
    )
    rows = parse(data, o)
    assert [(r.line, r.ts_us) for r in rows if isinstance(r, Row)] == [
        (5, 1_000_000),
        (7, 2_000_000),
        (8, 3_000_000),
    ]
    second = rows[1]
    resumed = list(CsvFile(data, o).rows(second.end, second.next_line))
    assert [(r.line, r.ts_us) for r in resumed if isinstance(r, Row)] == [(8, 3_000_000)]


def test_utf16_and_bom() -> None:
    text = "t;Temp °C\n1;2,5\n"
    o = opts(
        separator=";",
        decimal_comma=True,
        timestamp="t",
        timestamp_format="epoch_s",
        identity="m",
        encoding="utf-16",
    )
    (row,) = parse(text.encode("utf-16"), o)
    assert isinstance(row, Row) and row.readings[0].signal == "Temp °C"
    assert row.readings[0].value == 2.5
    o = opts(
        separator=";", decimal_comma=True, timestamp="t", timestamp_format="epoch_s", identity="m"
    )
    (row,) = parse(b"\xef\xbb\xbf" + text.encode(), o)
    assert isinstance(row, Row) and row.ts_us == 1_000_000


def test_endpoints_select_and_type_columns_per_identity() -> None:
    data = b"ts,id,a,b\n1,m1,5,x\n2,m2,6,y\n3,m1,,z\n"
    eps = [
        FilesEndpoint(connection="c", identity="m1", signal="a", data_type="int16"),
        FilesEndpoint(connection="c", identity="m2", signal="bee", column="b", data_type="string"),
        FilesEndpoint(connection="c", identity="m1", signal="gone", column="c"),
    ]
    o = opts(timestamp="ts", timestamp_format="epoch_s", identity_column="id")
    f = CsvFile(data, o, eps)
    assert [e.signal for e, _ in f.layout().missing] == ["gone"]
    got = [
        (r.ts_us, [(x.identity, x.signal, x.value) for x in r.readings])
        for r in f.rows()
        if isinstance(r, Row)
    ]
    assert got == [
        (1_000_000, [("m1", "a", 5)]),
        (2_000_000, [("m2", "bee", "y")]),
        (3_000_000, []),  # the empty cell is no reading
    ]


def test_file_level_errors_and_unterminated_quote() -> None:
    o = opts(timestamp="ts", timestamp_format="epoch_s", identity_column="who")
    with pytest.raises(FileFormatError, match="identity column 'who' is not in the header") as e:
        CsvFile(b"ts,v\n1,2\n", o).layout()
    assert (e.value.line, e.value.raw) == (1, b"ts,v")
    o = opts(timestamp="ts", timestamp_format="epoch_s", identity="m")
    got = parse(b'ts,v\n1,2\n2,"3\n4,5\n', o)
    assert isinstance(got[0], Row)
    assert isinstance(got[1], BadLine) and got[1].line == 3 and got[1].raw == b'2,"3\n4,5'
