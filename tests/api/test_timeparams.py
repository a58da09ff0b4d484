"""Time parameters: parse_time/format_time round trips, and their errors through the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from millrace.api.errors import ApiError
from millrace.api.timeparams import MAX_US, MIN_US, Epoch, format_time, parse_time
from tests.api.conftest import NOW_US, Api, assert_bad_field, uid

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: readings are kept in [1970, 2200)
MAX_TS_US = 7_258_118_400_000_000
#: below 2**52 us (year 2112) an epoch float in s or ms holds every microsecond
FLOAT_EXACT_US = 2**52
FACTOR = {Epoch.s: 10**6, Epoch.ms: 10**3, Epoch.us: 1}


def over_json(value: int | float | str) -> str:
    """What a client reads from the JSON answer and sends back as a query parameter."""
    decoded = json.loads(orjson.dumps(value))
    return decoded if isinstance(decoded, str) else repr(decoded)


@given(ts=st.integers(min_value=0, max_value=FLOAT_EXACT_US), unit=st.sampled_from(list(Epoch)))
@example(ts=1_748_779_200_123_457, unit=Epoch.s)
@example(ts=1_748_779_200_000_000, unit=Epoch.s)
@example(ts=1, unit=Epoch.s)
@example(ts=999, unit=Epoch.ms)
def test_epoch_round_trip(ts: int, unit: Epoch) -> None:
    out = format_time(ts, unit)
    assert not isinstance(out, bool | str)
    if ts % FACTOR[unit] == 0:
        assert isinstance(out, int) and out == ts // FACTOR[unit]
    assert parse_time("start_time", over_json(out), unit) == ts


@given(ts=st.integers(min_value=0, max_value=MAX_TS_US - 1))
def test_microsecond_round_trip_over_the_whole_range(ts: int) -> None:
    out = format_time(ts, Epoch.us)
    assert out == ts and isinstance(out, int)
    assert parse_time("end_time", str(out), Epoch.us) == ts


@given(ts=st.integers(min_value=-(10**15), max_value=MAX_TS_US - 1))
@example(ts=0)
@example(ts=-1)
@example(ts=1_748_779_200_000_000)
def test_iso_round_trip(ts: int) -> None:
    text = format_time(ts, None)
    assert isinstance(text, str)
    assert text.endswith("Z") and "+00:00" not in text
    expected = EPOCH + timedelta(microseconds=ts)
    assert datetime.fromisoformat(text[:-1] + "+00:00") == expected
    for unit in (None, *Epoch):  # an ISO input is ISO whatever the epoch unit
        assert parse_time("start_time", text, unit) == ts


@given(
    dt=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 30)),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_iso_with_any_offset(dt: datetime, offset_minutes: int) -> None:
    aware = dt.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    want = (aware - EPOCH) // timedelta(microseconds=1)
    assert parse_time("start_time", aware.isoformat(), None) == want
    # a naive time is UTC
    naive_want = (dt.replace(tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
    assert parse_time("start_time", dt.isoformat(), None) == naive_want


@given(n=st.integers(min_value=MIN_US, max_value=MAX_US - 1))
def test_integer_microseconds_are_exact(n: int) -> None:
    assert parse_time("start_time", str(n), Epoch.us) == n


@given(n=st.integers(min_value=-(MIN_US // -(10**6)), max_value=MAX_US // 10**6 - 1))
def test_integer_seconds_are_the_default_unit(n: int) -> None:
    assert parse_time("start_time", str(n), None) == n * 10**6
    assert parse_time("start_time", str(n), Epoch.s) == n * 10**6
    assert parse_time("start_time", f"{n}000", Epoch.ms) == n * 10**6


@pytest.mark.parametrize("raw", ["-2208988800000001", "10413792000000000"])
def test_microseconds_outside_1900_2299_are_400(raw: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_time("start_time", raw, Epoch.us)
    assert info.value.status == 400 and "1900" in info.value.message


def test_absent_and_empty_are_none() -> None:
    assert parse_time("start_time", None, None) is None
    assert parse_time("start_time", "", Epoch.ms) is None


@pytest.mark.parametrize(
    "raw",
    ["yesterday", "nan", "NaN", "inf", "-inf", "1e400", "2025-02-30", "12:00", "0x10", "1,5", " "],
)
def test_invalid_strings_raise_naming_the_field(raw: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_time("end_time", raw, None)
    assert info.value.status == 400
    details = info.value.details
    assert isinstance(details, list) and len(details) == 1
    assert details[0]["field"] == "end_time" and details[0]["message"]
    assert info.value.message.startswith("end_time: ")


@pytest.mark.parametrize(
    "ts,unit", [(4_485_134_212_420_543, Epoch.s), (4_458_560_466_820_355, Epoch.ms)]
)
def test_epoch_round_trip_beyond_2112(ts: int, unit: Epoch) -> None:
    assert parse_time("start_time", over_json(format_time(ts, unit)), unit) == ts


# -- through the API ------------------------------------------------------------------------

QUERY_PATHS = [
    "/identities/dev/signals/temp",
    "/identities/dev/signals/temp/aggregates",
]
MULTI_PATHS = ["/identities/dev/signals", "/identities/dev/signals/aggregates"]


@pytest.mark.parametrize("path", QUERY_PATHS + MULTI_PATHS)
@pytest.mark.parametrize("field_name", ["start_time", "end_time"])
@pytest.mark.parametrize("raw", ["yesterday", "nan", "2025-06-01T25:00:00", "1e400"])
async def test_invalid_time_is_400_naming_the_parameter(
    api: Api, path: str, field_name: str, raw: str
) -> None:
    r = await api.get(path, signals="temp", **{field_name: raw})
    assert_bad_field(r, field_name)


@pytest.mark.parametrize("path", QUERY_PATHS + MULTI_PATHS)
@pytest.mark.parametrize(
    "start,end,epoch",
    [
        ("100", "100", None),
        ("100", "99", None),
        ("100", "99.999999", "s"),
        ("1748779200000", "1748779200000", "ms"),
        ("2025-06-01T12:00:00Z", "2025-06-01T13:00:00+02:00", None),
        ("2025-06-01T12:00:00.000001Z", "1748779200", "s"),
    ],
)
async def test_end_not_after_start_is_400_naming_end_time(
    api: Api, path: str, start: str, end: str, epoch: str | None
) -> None:
    params = {"signals": "temp", "start_time": start, "end_time": end}
    if epoch:
        params["epoch"] = epoch
    assert_bad_field(await api.get(path, **params), "end_time")


async def test_one_microsecond_window_holds_one_reading(api: Api) -> None:
    identity = uid()
    stamps = [NOW_US - 3, NOW_US - 2, NOW_US - 1]
    body = [{"timestamp": t, "values": {"v": i}} for i, t in enumerate(stamps)]
    assert (await api.ingest(identity, body)).status_code == 202
    await api.sync()
    r = await api.get(
        f"/identities/{identity}/signals/v",
        epoch="us",
        start_time=stamps[1],
        end_time=stamps[1] + 1,
    )
    assert r.json()["data"]["points"] == [{"timestamp": stamps[1], "value": 1, "quality": 0}]


async def test_a_time_beyond_int64_is_refused_not_wrapped(api: Api) -> None:
    identity = uid()
    assert (
        await api.ingest(identity, [{"timestamp": NOW_US - 1, "values": {"v": 1}}])
    ).status_code == 202
    await api.sync()
    r = await api.get(
        f"/identities/{identity}/signals/v", epoch="us", start_time="9300000000000000000"
    )
    assert r.status_code == 400 or r.json()["data"]["points"] == [], r.text
