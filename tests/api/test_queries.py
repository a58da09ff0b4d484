"""Signal queries against an independent computation.

One data set for the module: 3 identities x (4 numeric + 1 boolean + 1 string)
signals, a few hundred samples each over three hours, sent through the API in
shuffled batches (out of order inside a batch, and a second, late round of batches for
earlier times processed after the first), with some bad-quality samples. Every answer
of the API is compared with what this file computes from the samples it sent.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from millrace.projections.store.chdb import ChdbStore
from tests.api.conftest import HOUR_US, NOW_US, Api, assert_bad_field, build_api, uid

NUMERIC = ("temp", "pressure", "flow", "line.speed")
BOOL, TEXT = "running", "mode"
SIGNALS = (*NUMERIC, BOOL, TEXT)
BUCKETS = {"1m": 60_000_000, "5m": 300_000_000, "1h": HOUR_US}
SAMPLES_PER_IDENTITY = 300
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Reading:
    ts: int
    value: Any
    quality: int


@dataclass
class DataSet:
    identities: list[str]
    #: identity -> signal -> readings sorted by time
    readings: dict[str, dict[str, list[Reading]]] = field(default_factory=dict)

    def series(self, identity: str, signal: str) -> list[Reading]:
        return self.readings[identity][signal]

    def pairs(self) -> Iterator[tuple[str, str]]:
        for identity in self.identities:
            for signal in SIGNALS:
                yield identity, signal


def _make_samples(rng: random.Random) -> list[dict[str, Any]]:
    start = NOW_US - 3 * HOUR_US
    stamps = {start + off for off in rng.sample(range(3 * HOUR_US - 1_000_000), 280)}
    # bucket edges: the first and the last microsecond of buckets
    hour = start - start % HOUR_US + HOUR_US
    stamps |= {hour, hour - 1, hour + 60_000_000, hour + 300_000_000 - 1, start}
    stamps |= {start + off for off in rng.sample(range(3 * HOUR_US - 1_000_000), 20)}
    samples = []
    for i, ts in enumerate(sorted(stamps)[:SAMPLES_PER_IDENTITY]):
        values: dict[str, Any] = {
            "temp": round(rng.uniform(-40, 120), 3),
            "flow": rng.randint(-1_000_000, 1_000_000),
            "line.speed": rng.choice([0.0, 1.5, rng.gauss(3, 1)]),
            BOOL: rng.random() < 0.7,
        }
        if i % 7:
            values["pressure"] = rng.uniform(0, 1e5)
        if i % 5 == 0:
            values[TEXT] = rng.choice(["auto", "manual", "off", "", "ünïcødé ✓"])
        quality = rng.choice([192, -(2**31), 1]) if rng.random() < 0.06 else 0
        samples.append({"timestamp": ts, "values": values, "quality": quality})
    return samples


def _batches(rng: random.Random, samples: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    shuffled = samples[:]
    rng.shuffle(shuffled)
    return [shuffled[i : i + 37] for i in range(0, len(shuffled), 37)]


async def _load(writer: ChdbStore, reader: ChdbStore, seed: int) -> DataSet:
    rng = random.Random(seed)
    prefix = uid("q")
    data = DataSet([f"{prefix}-{n}" for n in ("a", "b", "c")])
    api = build_api(writer, reader, max_records=3)
    try:
        early: list[tuple[str, list[dict[str, Any]]]] = []
        late: list[tuple[str, list[dict[str, Any]]]] = []
        for identity in data.identities:
            samples = _make_samples(rng)
            per_signal: dict[str, list[Reading]] = {s: [] for s in SIGNALS}
            for s in samples:
                for name, value in s["values"].items():
                    per_signal[name].append(Reading(s["timestamp"], value, s["quality"]))
            data.readings[identity] = {
                k: sorted(v, key=lambda r: r.ts) for k, v in per_signal.items()
            }
            # the first round holds the newest two thirds of the samples plus a random
            # few older ones; the rest arrives late, after the first round is projected
            cut = samples[len(samples) // 3]["timestamp"]
            first = [s for s in samples if s["timestamp"] >= cut or rng.random() < 0.2]
            rest = [s for s in samples if s not in first]
            early += [(identity, b) for b in _batches(rng, first)]
            late += [(identity, b) for b in _batches(rng, rest)]
        for round_ in (early, late):
            rng.shuffle(round_)
            for identity, batch in round_:
                r = await api.ingest(identity, batch)
                assert r.status_code == 202, r.text
            await api.sync()
    finally:
        await api.client.aclose()
    return data


@pytest.fixture(scope="module")
def data(writer_store: ChdbStore, chdb_path: str | None) -> Iterator[DataSet]:
    reader = ChdbStore(chdb_path)
    try:
        yield asyncio.run(_load(writer_store, reader, seed=20250601))
    finally:
        reader.close()


# -- expectations ---------------------------------------------------------------------


def same(got: Any, want: Any) -> bool:
    """Equal, and of the same JSON kind (a boolean is not the number 1)."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, str) or isinstance(got, str):
        return isinstance(got, str) and got == want
    return isinstance(got, int | float) and got == want


def points_us(points: list[dict[str, Any]]) -> list[tuple[int, Any, int]]:
    return [(p["timestamp"], p["value"], p["quality"]) for p in points]


def assert_points(points: list[dict[str, Any]], want: list[Reading]) -> None:
    got = points_us(points)
    assert [g[0] for g in got] == [w.ts for w in want]
    for (ts, value, quality), w in zip(got, want, strict=True):
        assert same(value, w.value), (ts, value, w.value)
        assert quality == w.quality


def expected_aggregates(readings: list[Reading], width: int) -> dict[int, dict[str, Any]]:
    groups: dict[int, list[Reading]] = {}
    for r in sorted(readings, key=lambda r: r.ts):
        if r.quality == 0:
            groups.setdefault(r.ts - r.ts % width, []).append(r)
    out = {}
    for bucket, rs in groups.items():
        values = [r.value for r in rs]
        numeric = not any(isinstance(v, bool | str) for v in values)
        total = math.fsum(values) if numeric else None
        out[bucket] = {
            "count": len(rs),
            "min": min(values) if numeric else None,
            "max": max(values) if numeric else None,
            "sum": total,
            "avg": total / len(rs) if total is not None else None,
            "first": rs[0].value,
            "last": rs[-1].value,
        }
    return out


def assert_aggregate(got: dict[str, Any], want: dict[str, Any], where: Any) -> None:
    assert got["count"] == want["count"], where
    for key in ("min", "max", "first", "last"):
        if want[key] is None:
            assert got[key] is None, (where, key)
        else:
            assert same(got[key], want[key]), (where, key, got[key], want[key])
    for key in ("sum", "avg"):
        if want[key] is None:
            assert got[key] is None, (where, key)
        else:
            assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-9), (where, key)


def iso_to_us(text: str) -> int:
    assert text.endswith("Z"), text
    dt = datetime.fromisoformat(text[:-1] + "+00:00")
    return (dt - EPOCH) // timedelta(microseconds=1)


def in_unit(value: int | float, unit: str) -> int:
    """An epoch number in ``unit`` back to microseconds, exactly (from its JSON text)."""
    factor = {"s": 10**6, "ms": 10**3, "us": 1}[unit]
    exact = Decimal(repr(value)) * factor
    assert exact == exact.to_integral_value(), value
    return int(exact)


def as_unit(ts: int, unit: str) -> str:
    """Microseconds as an exact decimal string in ``unit``."""
    factor = {"s": 10**6, "ms": 10**3, "us": 1}[unit]
    return str(Decimal(ts) / factor)


# -- raw readings -----------------------------------------------------------------------


async def test_raw_readings_newest_first_by_default(api: Api, data: DataSet) -> None:
    for identity, signal in data.pairs():
        r = await api.get(f"/identities/{identity}/signals/{signal}", epoch="us")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["data"]["identity"] == identity
        assert body["data"]["signal"] == signal
        want = data.series(identity, signal)[::-1]
        assert_points(body["data"]["points"], want)
        assert body["meta"]["pagination"] == {
            "page": 1,
            "limit": 1000,
            "rows_in_page": len(want),
            "next_page": None,
        }


async def test_raw_readings_ascending(api: Api, data: DataSet) -> None:
    for identity, signal in data.pairs():
        r = await api.get(f"/identities/{identity}/signals/{signal}", epoch="us", order="asc")
        assert_points(r.json()["data"]["points"], data.series(identity, signal))


async def test_bad_quality_readings_are_in_the_raw_series(api: Api, data: DataSet) -> None:
    identity = data.identities[0]
    bad = [r for r in data.series(identity, "temp") if r.quality != 0]
    assert bad, "the data set should hold bad-quality samples"
    r = await api.get(f"/identities/{identity}/signals/temp", epoch="us", limit=10_000)
    got = {p["timestamp"]: p["quality"] for p in r.json()["data"]["points"]}
    assert all(got[b.ts] == b.quality for b in bad)


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 23, 100])
async def test_paging_has_no_gap_and_no_overlap(
    api: Api, data: DataSet, order: str, limit: int
) -> None:
    identity = data.identities[1]
    want = data.series(identity, "temp")
    if order == "desc":
        want = want[::-1]
    if limit == 1:
        want = want[:5]  # five pages are enough to show the pattern
    seen: list[dict[str, Any]] = []
    page: int | None = 1
    while page is not None and len(seen) < len(want):
        r = await api.get(
            f"/identities/{identity}/signals/temp", epoch="us", order=order, limit=limit, page=page
        )
        body = r.json()
        pagination = body["meta"]["pagination"]
        assert pagination["page"] == page and pagination["limit"] == limit
        points = body["data"]["points"]
        assert len(points) == pagination["rows_in_page"] <= limit
        seen += points
        page = pagination["next_page"]
    assert_points(seen, want)


async def test_page_past_the_end_is_empty(api: Api, data: DataSet) -> None:
    identity = data.identities[0]
    n = len(data.series(identity, "flow"))
    r = await api.get(f"/identities/{identity}/signals/flow", limit=n, page=2)
    assert r.status_code == 200
    assert r.json()["data"]["points"] == []
    assert r.json()["meta"]["pagination"]["next_page"] is None


@pytest.mark.parametrize("unit", ["us", "ms", "s"])
async def test_time_range_start_inclusive_end_exclusive(api: Api, data: DataSet, unit: str) -> None:
    identity = data.identities[2]
    series = data.series(identity, "flow")
    start, end = series[40].ts, series[90].ts
    r = await api.get(
        f"/identities/{identity}/signals/flow",
        epoch=unit,
        order="asc",
        start_time=as_unit(start, unit),
        end_time=as_unit(end, unit),
    )
    assert r.status_code == 200, r.text
    points = r.json()["data"]["points"]
    assert [in_unit(p["timestamp"], unit) for p in points] == [x.ts for x in series[40:90]]
    assert len(points) == 50


async def test_time_range_one_side_only(api: Api, data: DataSet) -> None:
    identity = data.identities[0]
    series = data.series(identity, "temp")
    t = series[100].ts
    after = await api.get(
        f"/identities/{identity}/signals/temp", epoch="us", order="asc", start_time=t
    )
    assert_points(after.json()["data"]["points"], series[100:])
    before = await api.get(
        f"/identities/{identity}/signals/temp", epoch="us", order="asc", end_time=t
    )
    assert_points(before.json()["data"]["points"], series[:100])


async def test_time_range_in_iso_with_offsets(api: Api, data: DataSet) -> None:
    identity = data.identities[0]
    series = data.series(identity, "temp")
    start, end = series[10].ts, series[20].ts
    plus2 = timezone(timedelta(hours=2))
    start_iso = (EPOCH + timedelta(microseconds=start)).astimezone(plus2).isoformat()
    end_iso = (EPOCH + timedelta(microseconds=end)).isoformat().replace("+00:00", "Z")
    r = await api.get(
        f"/identities/{identity}/signals/temp",
        epoch="us",
        order="asc",
        start_time=start_iso,
        end_time=end_iso,
    )
    assert r.status_code == 200, r.text
    assert_points(r.json()["data"]["points"], series[10:20])
    # a naive ISO time is UTC
    naive = (EPOCH + timedelta(microseconds=start)).replace(tzinfo=None).isoformat()
    r = await api.get(
        f"/identities/{identity}/signals/temp", epoch="us", order="asc", start_time=naive
    )
    assert_points(r.json()["data"]["points"], series[10:])


async def test_seconds_are_the_default_input_unit(api: Api, data: DataSet) -> None:
    identity = data.identities[0]
    series = data.series(identity, "temp")
    t = series[200].ts
    r = await api.get(
        f"/identities/{identity}/signals/temp", order="asc", start_time=as_unit(t, "s")
    )
    points = r.json()["data"]["points"]
    assert [iso_to_us(p["timestamp"]) for p in points] == [x.ts for x in series[200:]]


@pytest.mark.parametrize("unit", ["s", "ms", "us", None])
async def test_output_time_units(api: Api, data: DataSet, unit: str | None) -> None:
    identity = data.identities[1]
    series = data.series(identity, "pressure")
    params = {"order": "asc"} | ({"epoch": unit} if unit else {})
    r = await api.get(f"/identities/{identity}/signals/pressure", **params)
    stamps = [p["timestamp"] for p in r.json()["data"]["points"]]
    if unit is None:
        assert all(isinstance(s, str) for s in stamps)
        assert [iso_to_us(s) for s in stamps] == [x.ts for x in series]
    else:
        assert all(isinstance(s, int | float) and not isinstance(s, bool) for s in stamps)
        assert [in_unit(s, unit) for s in stamps] == [x.ts for x in series]
        if unit == "us":
            assert all(isinstance(s, int) for s in stamps)


async def test_unknown_identity_or_signal_is_empty(api: Api, data: DataSet) -> None:
    r = await api.get(f"/identities/{uid()}/signals/temp")
    assert r.status_code == 200 and r.json()["data"]["points"] == []
    r = await api.get(f"/identities/{data.identities[0]}/signals/nope")
    assert r.status_code == 200 and r.json()["data"]["points"] == []


# -- several signals ----------------------------------------------------------------------


async def test_several_signals_match_the_single_signal_series(api: Api, data: DataSet) -> None:
    identity = data.identities[2]
    r = await api.get(
        f"/identities/{identity}/signals",
        signals=f"temp, {TEXT},{BOOL},temp,nothing",
        epoch="us",
    )
    assert r.status_code == 200, r.text
    body = r.json()["data"]
    assert body["identity"] == identity
    assert list(body["signals"]) == ["temp", TEXT, BOOL, "nothing"]
    for signal in ("temp", TEXT, BOOL):
        assert_points(body["signals"][signal], data.series(identity, signal)[::-1])
    assert body["signals"]["nothing"] == []


async def test_several_signals_limit_is_per_signal(api: Api, data: DataSet) -> None:
    identity = data.identities[0]
    series = {s: data.series(identity, s) for s in ("flow", TEXT)}
    r = await api.get(
        f"/identities/{identity}/signals",
        signals=f"flow,{TEXT}",
        epoch="us",
        order="asc",
        limit=7,
        page=3,
    )
    body = r.json()
    for signal, want in series.items():
        assert_points(body["data"]["signals"][signal], want[14:21])
    assert body["meta"]["pagination"]["rows_in_page"] == 7
    assert body["meta"]["pagination"]["next_page"] == 4


@pytest.mark.parametrize("path", ["/signals", "/signals/aggregates"])
@pytest.mark.parametrize("value", [None, "", " , ,", ",".join(f"s{i}" for i in range(101))])
async def test_several_signals_need_1_to_100_names(
    api: Api, data: DataSet, path: str, value: str | None
) -> None:
    params = {} if value is None else {"signals": value}
    r = await api.get(f"/identities/{data.identities[0]}{path}", **params)
    assert_bad_field(r, "signals")


# -- aggregates -------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", list(BUCKETS))
async def test_aggregates_match_independent_computation(
    api: Api, data: DataSet, bucket: str
) -> None:
    width = BUCKETS[bucket]
    for identity, signal in data.pairs():
        r = await api.get(
            f"/identities/{identity}/signals/{signal}/aggregates",
            bucket=bucket,
            epoch="us",
            order="asc",
            limit=10_000,
        )
        assert r.status_code == 200, r.text
        body = r.json()["data"]
        assert (body["identity"], body["signal"], body["bucket"]) == (identity, signal, bucket)
        want = expected_aggregates(data.series(identity, signal), width)
        got = body["points"]
        assert [p["timestamp"] for p in got] == sorted(want)
        for point in got:
            assert set(point) == {"timestamp", "count", "min", "max", "sum", "avg", "first", "last"}
            assert_aggregate(point, want[point["timestamp"]], (identity, signal, bucket, point))


async def test_aggregates_exclude_bad_quality(api: Api, data: DataSet) -> None:
    identity = data.identities[0]
    series = data.series(identity, "flow")
    r = await api.get(f"/identities/{identity}/signals/flow/aggregates", bucket="1h", limit=10_000)
    counted = sum(p["count"] for p in r.json()["data"]["points"])
    good = sum(1 for x in series if x.quality == 0)
    assert good < len(series)
    assert counted == good


async def test_aggregates_newest_first_by_default_and_1h_default_bucket(
    api: Api, data: DataSet
) -> None:
    identity = data.identities[1]
    r = await api.get(f"/identities/{identity}/signals/temp/aggregates", epoch="us")
    body = r.json()["data"]
    assert body["bucket"] == "1h"
    want = expected_aggregates(data.series(identity, "temp"), HOUR_US)
    assert [p["timestamp"] for p in body["points"]] == sorted(want, reverse=True)
    assert len(body["points"]) in (3, 4)


async def test_aggregate_paging_and_iso_buckets(api: Api, data: DataSet) -> None:
    identity = data.identities[2]
    want = sorted(expected_aggregates(data.series(identity, "temp"), 60_000_000))
    got: list[int] = []
    page: int | None = 1
    while page is not None:
        r = await api.get(
            f"/identities/{identity}/signals/temp/aggregates", bucket="1m", limit=50, page=page
        )
        pagination = r.json()["meta"]["pagination"]
        got += [iso_to_us(p["timestamp"]) for p in r.json()["data"]["points"]]
        page = pagination["next_page"]
    assert got == want[::-1]


async def test_aggregates_in_a_time_range_are_buckets_starting_in_it(
    api: Api, data: DataSet
) -> None:
    identity = data.identities[0]
    width = 300_000_000
    want = expected_aggregates(data.series(identity, "temp"), width)
    starts = sorted(want)
    # from the middle of one bucket to the exact start of another: the first bucket
    # starts before start_time, the last starts at end_time: both are out
    start, end = starts[3] + 1, starts[9]
    r = await api.get(
        f"/identities/{identity}/signals/temp/aggregates",
        bucket="5m",
        epoch="us",
        order="asc",
        start_time=start,
        end_time=end,
    )
    assert [p["timestamp"] for p in r.json()["data"]["points"]] == starts[4:9]
    r = await api.get(
        f"/identities/{identity}/signals/temp/aggregates",
        bucket="5m",
        epoch="ms",
        order="asc",
        start_time=as_unit(starts[3], "ms"),
        end_time=as_unit(end + 1, "ms"),
    )
    got = [in_unit(p["timestamp"], "ms") for p in r.json()["data"]["points"]]
    assert got == starts[3:10]


@pytest.mark.parametrize("fields", ["count", "last,first", " min , max,avg,sum "])
async def test_aggregate_fields_subset(api: Api, data: DataSet, fields: str) -> None:
    identity = data.identities[0]
    names = [f.strip() for f in fields.split(",")]
    for path in ("/signals/flow/aggregates", "/signals/aggregates"):
        r = await api.get(f"/identities/{identity}{path}", signals="flow", fields=fields)
        assert r.status_code == 200, r.text
        body = r.json()["data"]
        points = body["points"] if "points" in body else body["signals"]["flow"]
        assert points
        for p in points:
            assert set(p) == {"timestamp", *names}


@pytest.mark.parametrize("fields", ["median", "count,median", "", ",", "COUNT"])
async def test_unknown_aggregate_field_is_400(api: Api, data: DataSet, fields: str) -> None:
    for path in ("/signals/flow/aggregates", "/signals/aggregates"):
        r = await api.get(f"/identities/{data.identities[0]}{path}", signals="flow", fields=fields)
        assert_bad_field(r, "fields")


@pytest.mark.parametrize(
    "params,field_name",
    [
        ({"bucket": "2m"}, "bucket"),
        ({"bucket": "1d"}, "bucket"),
        ({"order": "up"}, "order"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"page": 0}, "page"),
        ({"epoch": "ns"}, "epoch"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"end_time": "2025-13-01"}, "end_time"),
        ({"start_time": "100", "end_time": "100"}, "end_time"),
    ],
)
async def test_bad_aggregate_parameters(
    api: Api, data: DataSet, params: dict[str, Any], field_name: str
) -> None:
    r = await api.get(f"/identities/{data.identities[0]}/signals/temp/aggregates", **params)
    assert_bad_field(r, field_name)


async def test_several_signal_aggregates_match_single(api: Api, data: DataSet) -> None:
    identity = data.identities[1]
    r = await api.get(
        f"/identities/{identity}/signals/aggregates",
        signals=f"temp,{BOOL},{TEXT}",
        bucket="5m",
        epoch="us",
        order="asc",
        limit=10_000,
    )
    assert r.status_code == 200, r.text
    body = r.json()["data"]
    assert body["bucket"] == "5m"
    assert list(body["signals"]) == ["temp", BOOL, TEXT]
    for signal, points in body["signals"].items():
        want = expected_aggregates(data.series(identity, signal), 300_000_000)
        assert [p["timestamp"] for p in points] == sorted(want)
        for p in points:
            assert_aggregate(p, want[p["timestamp"]], (signal, p))


async def test_boolean_and_string_aggregates(api: Api, data: DataSet) -> None:
    identity = data.identities[0]
    for signal, kind in ((BOOL, bool), (TEXT, str)):
        r = await api.get(f"/identities/{identity}/signals/{signal}/aggregates", bucket="1h")
        points = r.json()["data"]["points"]
        assert points
        for p in points:
            assert p["min"] is None and p["max"] is None
            assert p["sum"] is None and p["avg"] is None
            assert type(p["first"]) is kind and type(p["last"]) is kind
            assert p["count"] > 0


async def test_a_late_reading_merges_into_its_bucket(api: Api) -> None:
    identity = uid()
    t0 = NOW_US - HOUR_US - HOUR_US % 60_000_000 + 30_000_000  # 30 s into a minute
    assert (await api.ingest(identity, [{"timestamp": t0, "values": {"v": 5}}])).status_code == 202
    await api.sync()
    late = [{"timestamp": t0 - 20_000_000, "values": {"v": 1}}]
    assert (await api.ingest(identity, late)).status_code == 202
    await api.sync()
    r = await api.get(f"/identities/{identity}/signals/v/aggregates", bucket="1m", epoch="us")
    [point] = r.json()["data"]["points"]
    assert point == {
        "timestamp": t0 - 30_000_000,
        "count": 2,
        "min": 1,
        "max": 5,
        "sum": 6,
        "avg": 3,
        "first": 1,
        "last": 5,
    }
    r = await api.get("/signals/latest", identities=identity, epoch="us")
    assert [(x["timestamp"], x["value"]) for x in r.json()["data"]] == [(t0, 5)]


# -- latest -------------------------------------------------------------------------------


def expected_latest(data: DataSet, signals: tuple[str, ...] = SIGNALS) -> list[dict[str, Any]]:
    rows = []
    for identity in data.identities:
        for signal in signals:
            last = data.series(identity, signal)[-1]
            rows.append(
                {
                    "identity": identity,
                    "signal": signal,
                    "timestamp": last.ts,
                    "value": last.value,
                    "quality": last.quality,
                    "received": NOW_US,
                }
            )
    return sorted(rows, key=lambda row: (row["identity"], row["signal"]))


def assert_latest(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [(g["identity"], g["signal"]) for g in got] == [
        (w["identity"], w["signal"]) for w in want
    ]
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        assert same(g["value"], w["value"]), (g, w)
        assert {k: g[k] for k in g if k != "value"} == {k: w[k] for k in w if k != "value"}


async def test_latest_value_per_identity_and_signal(api: Api, data: DataSet) -> None:
    r = await api.get("/signals/latest", identities=",".join(data.identities), epoch="us")
    assert r.status_code == 200, r.text
    body = r.json()
    want = expected_latest(data)
    assert body["total"] == len(want) == 18
    assert_latest(body["data"], want)
    assert body["meta"]["pagination"] == {
        "page": 1,
        "limit": 1000,
        "rows_in_page": 18,
        "next_page": None,
        "total_rows": 18,
        "total_pages": 1,
    }


async def test_latest_filters_by_signal(api: Api, data: DataSet) -> None:
    r = await api.get(
        "/signals/latest",
        identities=",".join(data.identities[:2]),
        signals=f"{TEXT}, temp",
        epoch="us",
    )
    want = [w for w in expected_latest(data, ("temp", TEXT)) if w["identity"] != data.identities[2]]
    assert r.json()["total"] == 4
    assert_latest(r.json()["data"], want)


@pytest.mark.parametrize("sort_key", ["identity", "signal"])
@pytest.mark.parametrize("reverse", [False, True])
async def test_latest_sorting(api: Api, data: DataSet, sort_key: str, reverse: bool) -> None:
    r = await api.get(
        "/signals/latest",
        identities=",".join(data.identities),
        sort_key=sort_key,
        reverse=str(reverse).lower(),
        epoch="us",
    )
    fields = ("identity", "signal") if sort_key == "identity" else ("signal", "identity")
    want = sorted(expected_latest(data), key=lambda w: tuple(w[f] for f in fields), reverse=reverse)
    assert_latest(r.json()["data"], want)


async def test_latest_paging(api: Api, data: DataSet) -> None:
    want = expected_latest(data)
    got: list[dict[str, Any]] = []
    for page in (1, 2, 3, 4):
        r = await api.get(
            "/signals/latest",
            identities=",".join(data.identities),
            epoch="us",
            limit=5,
            page=page,
        )
        body = r.json()
        assert body["total"] == 18
        pagination = body["meta"]["pagination"]
        assert pagination["total_rows"] == 18 and pagination["total_pages"] == 4
        assert pagination["next_page"] == (page + 1 if page < 4 else None)
        got += body["data"]
    assert_latest(got, want)
    r = await api.get("/signals/latest", identities=",".join(data.identities), limit=5, page=5)
    assert r.json()["data"] == [] and r.json()["total"] == 18


async def test_latest_times_in_iso_and_seconds(api: Api, data: DataSet) -> None:
    identity = data.identities[0]
    want = expected_latest(data)[:6]
    r = await api.get("/signals/latest", identities=identity)
    rows = r.json()["data"]
    assert [iso_to_us(x["timestamp"]) for x in rows] == [w["timestamp"] for w in want]
    assert {iso_to_us(x["received"]) for x in rows} == {NOW_US}
    r = await api.get("/signals/latest", identities=identity, epoch="s")
    rows = r.json()["data"]
    assert [in_unit(x["timestamp"], "s") for x in rows] == [w["timestamp"] for w in want]


async def test_latest_unknown_filters_match_nothing(api: Api, data: DataSet) -> None:
    r = await api.get("/signals/latest", identities=uid())
    assert r.status_code == 200
    assert r.json()["data"] == [] and r.json()["total"] == 0
    r = await api.get("/signals/latest", identities=data.identities[0], signals="nope")
    assert r.json()["total"] == 0


@pytest.mark.parametrize(
    "params,field_name",
    [
        ({"sort_key": "value"}, "sort_key"),
        ({"reverse": "maybe"}, "reverse"),
        ({"limit": 0}, "limit"),
        ({"page": -1}, "page"),
        ({"epoch": "h"}, "epoch"),
    ],
)
async def test_bad_latest_parameters(api: Api, params: dict[str, Any], field_name: str) -> None:
    assert_bad_field(await api.get("/signals/latest", **params), field_name)


# -- bugs -----------------------------------------------------------------------------------


async def test_a_signal_with_a_slash_is_refused_at_ingest(api: Api) -> None:
    """The one-signal routes could never match it, so it is not accepted at all."""
    r = await api.ingest(uid(), [{"timestamp": NOW_US - 1, "values": {"line1/temp": 7}}])
    assert r.status_code == 400
    assert r.json()["error"]["details"][0]["field"] == "body[0].values.line1/temp"


async def test_int64_values_come_back_exactly(api: Api) -> None:
    """Integers have a kind of their own (TelemetryBatch v5): raw points, latest and the
    aggregates' first/last/min/max give them back as sent, beyond 2**53 too."""
    identity = uid()
    big = 2**53 + 1
    r = await api.ingest(identity, [{"timestamp": NOW_US - 1, "values": {"counter": big}}])
    assert r.status_code == 202
    await api.sync()
    r = await api.get(f"/identities/{identity}/signals/counter")
    assert r.json()["data"]["points"][0]["value"] == big
    r = await api.get("/signals/latest", identities=identity)
    assert r.json()["data"][0]["value"] == big


async def test_int64_aggregates_are_exact(api: Api) -> None:
    identity = uid()
    values = [2**63 - 1, -(2**63), 2**53 + 1, 7]  # each one double-rounded before v5
    t0 = NOW_US - NOW_US % 3_600_000_000 - 3_600_000_000  # one whole hour bucket
    samples = [{"timestamp": t0 + i, "values": {"n": v}} for i, v in enumerate(values)]
    assert (await api.ingest(identity, samples)).status_code == 202
    await api.sync()
    r = await api.get(f"/identities/{identity}/signals/n/aggregates", bucket="1h")
    (point,) = r.json()["data"]["points"]
    assert (point["min"], point["max"]) == (min(values), max(values))
    assert (point["first"], point["last"]) == (values[0], values[-1])
    assert point["count"] == len(values)
    # ints and floats in one bucket: min/max are the floats' (as numbers), first exact
    other = uid()
    mixed = [
        {"timestamp": t0, "values": {"n": 2**53 + 1}},
        {"timestamp": t0 + 1, "values": {"n": 0.5}},
    ]
    assert (await api.ingest(other, mixed)).status_code == 202
    await api.sync()
    r = await api.get(f"/identities/{other}/signals/n/aggregates", bucket="1h")
    (point,) = r.json()["data"]["points"]
    assert point["first"] == 2**53 + 1 and point["last"] == 0.5
    assert point["min"] == 0.5 and point["max"] == float(2**53 + 1)


async def test_a_retried_batch_is_not_counted_twice(api: Api) -> None:
    """A client's retry after a timeout sends the same Idempotency-Key (issue 14)."""
    identity = uid()
    batch = [{"timestamp": NOW_US - 5, "values": {"v": 1.5}}]
    for _ in range(2):
        r = await api.ingest(identity, batch, headers={"Idempotency-Key": "retry-1"})
        assert r.status_code == 202
    await api.sync()
    r = await api.get(f"/identities/{identity}/signals/v")
    assert len(r.json()["data"]["points"]) == 1
    r = await api.get(f"/identities/{identity}/signals/v/aggregates")
    assert r.json()["data"]["points"][0]["count"] == 1


@pytest.mark.parametrize(
    "path",
    ["/identities/dev/signals/temp", "/identities/dev/signals/temp/aggregates", "/signals/latest"],
)
async def test_a_huge_page_is_400(api: Api, path: str) -> None:
    r = await api.get(path, page=10**20)
    assert_bad_field(r, "page")
