"""The telemetry processor on plain data, against sums computed here."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.processors.base import Event
from millrace.pipeline.processors.telemetry import BUCKETS, TelemetryProcessor

T0 = 1_700_000_000_000_000


def ev(offset: int, identity: str, samples: list[dict[str, Any]]) -> Event:
    return Event(
        "telemetry",
        0,
        offset,
        T0,
        identity.encode(),
        {
            "identity": identity,
            "source": "t",
            "received_us": T0,
            "samples": samples,
            "batch_id": f"b{offset}",  # one batch per offset (identical ones are resends)
        },
    )


def rows(t: pa.Table) -> list[dict[str, Any]]:
    return t.to_pylist()


def test_flattens_every_reading_with_its_kind() -> None:
    out = TelemetryProcessor().process(
        [
            ev(
                0,
                "d1",
                [
                    {
                        "ts_us": T0,
                        "values": {"t": 1.5, "on": True, "mode": "auto", "n": 7},
                        "quality": 0,
                    }
                ],
            )
        ]
    )
    got = {r["signal"]: (r["value"], r["text"], r["kind"]) for r in rows(out.tables["readings"])}
    assert got == {
        "t": (1.5, "", 0),
        "on": (1.0, "", 1),
        "mode": (0.0, "auto", 2),
        "n": (7.0, "", 3),  # an int: kind INT (its digits in text only beyond 2**53)
    }


def test_bad_quality_kept_raw_but_not_aggregated() -> None:
    out = TelemetryProcessor().process(
        [
            ev(0, "d", [{"ts_us": T0, "values": {"x": 1.0}, "quality": 0}]),
            ev(1, "d", [{"ts_us": T0 + 1, "values": {"x": 100.0}, "quality": -2147483648}]),
        ]
    )
    assert out.tables["readings"].num_rows == 2
    agg = rows(out.tables["agg_1m"])
    assert len(agg) == 1 and agg[0]["count"] == 1 and agg[0]["max"] == 1.0


def test_invalid_batches_become_dead_letters_and_the_rest_applies() -> None:
    out = TelemetryProcessor().process(
        [
            ev(0, "", [{"ts_us": T0, "values": {"x": 1.0}, "quality": 0}]),
            ev(1, "d", [{"ts_us": -1, "values": {"x": 1.0}, "quality": 0}]),
            ev(2, "d", [{"ts_us": T0, "values": {"x": 2.0}, "quality": 0}]),
        ]
    )
    assert [d["source_offset"] for d in out.deadletters] == [0, 1]
    assert "identity" in out.deadletters[0]["reason"]
    assert "ts_us" in out.deadletters[1]["reason"]
    assert out.tables["readings"].num_rows == 1


def test_latest_takes_greatest_timestamp_then_log_order() -> None:
    out = TelemetryProcessor().process(
        [
            ev(0, "d", [{"ts_us": T0 + 10, "values": {"x": 1.0}, "quality": 0}]),
            ev(1, "d", [{"ts_us": T0 + 5, "values": {"x": 2.0}, "quality": 0}]),  # late
            ev(2, "d", [{"ts_us": T0 + 10, "values": {"x": 3.0}, "quality": 0}]),  # same ts, later
        ]
    )
    (latest,) = rows(out.tables["latest"])
    assert latest["ts"] == T0 + 10 and latest["value"] == 3.0


readings_st = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(["x", "y"]),
        st.integers(0, 3 * 3600 * 1_000_000),
        st.one_of(
            st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 2)),
            st.integers(-1000, 1000),
        ),
    ),
    min_size=1,
    max_size=60,
)


def merge(partials: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Merge partial rows the way ClickHouse's SimpleAggregateFunctions do."""
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for p in partials:
        k = (p["identity"], p["signal"], p["bucket"])
        first = (p["first_ts"], p["first_value"], p["first_text"])
        last = (p["last_ts"], p["last_value"], p["last_text"])
        if k not in out:
            out[k] = {
                "count": p["count"],
                "sum": p["sum"],
                "min": p["min"],
                "max": p["max"],
                "first": first,
                "last": last,
            }
            continue
        m = out[k]
        m["count"] += p["count"]
        m["sum"] += p["sum"]
        m["min"] = min(m["min"], p["min"])
        m["max"] = max(m["max"], p["max"])
        m["first"] = min(m["first"], first)
        m["last"] = max(m["last"], last)
    return out


@settings(max_examples=60, deadline=None)
@given(
    readings=readings_st,
    cuts=st.lists(st.integers(0, 60), max_size=4),
    bucket=st.sampled_from(list(BUCKETS)),
)
def test_partials_merge_to_the_same_aggregate_whatever_the_batching(
    readings: list[tuple[str, str, int, float | int]], cuts: list[int], bucket: str
) -> None:
    events = [
        ev(i, ident, [{"ts_us": T0 + ts, "values": {sig: v}, "quality": 0}])
        for i, (ident, sig, ts, v) in enumerate(readings)
    ]
    width = BUCKETS[bucket]
    expected: dict[tuple[str, str, int], list[tuple[int, float]]] = defaultdict(list)
    for ident, sig, ts, v in readings:
        t = T0 + ts
        expected[(ident, sig, (t - t % width) // 1_000_000)].append((t, float(v)))
    bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
    partials: list[dict[str, Any]] = []
    proc = TelemetryProcessor()
    for lo, hi in itertools.pairwise(bounds):
        out = proc.process(events[lo:hi])
        partials.extend(rows(out.tables[f"agg_{bucket}"]))
    got = merge(partials)
    assert set(got) == set(expected)
    for k, pts in expected.items():
        values = [v for _, v in pts]
        g = got[k]
        assert g["count"] == len(pts)
        assert math.isclose(g["sum"], sum(values), rel_tol=1e-9, abs_tol=1e-6)
        assert g["min"] == min(values) and g["max"] == max(values)
        assert g["first"][:2] == min(pts)
        assert g["last"][:2] == max(pts)


def _reference_order(readings: pa.Table) -> pa.Table:
    """Good readings sorted by the strings themselves (Arrow's sort, as before the
    numpy codes): the order order_good must reproduce."""
    import pyarrow.compute as pc

    good = readings.filter(pc.equal(readings["quality"], 0))
    keys = ["identity", "signal", "ts", "value", "text"]
    return good.sort_by([(k, "ascending") for k in keys])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "ab", "B", ""]),
            st.sampled_from(["x", "y", "x2"]),
            st.one_of(st.integers(0, 5), st.just(2**57)),  # a span too wide for one key
            st.sampled_from([0.0, -0.0, 1.5, -2.0, math.nan, math.inf]),
            st.sampled_from(["", "", "on", "auto", "Z"]),
            st.sampled_from([0, 0, 0, 192]),
        ),
        max_size=40,
    ),
    st.booleans(),
)
def test_numpy_order_is_the_order_of_the_strings(
    rows_: list[tuple[str, str, int, float, str, int]], from_flatten: bool
) -> None:
    from millrace.pipeline.processors.telemetry import group_codes, latest, order_good
    from millrace.pipeline.tables import READINGS_SCHEMA

    cols = list(zip(*rows_, strict=True)) or [[]] * 6
    readings = pa.Table.from_arrays(
        [
            pa.array(cols[0], pa.string()),
            pa.array(cols[1], pa.string()),
            pa.array([T0 + t for t in cols[2]], pa.int64()),
            pa.array(cols[3], pa.float64()),
            pa.array(cols[4], pa.string()),
            pa.array([0] * len(rows_), pa.uint8()),
            pa.array(cols[5], pa.int32()),
            pa.array([T0] * len(rows_), pa.int64()),
        ],
        schema=READINGS_SCHEMA,
    )
    groups = group_codes(readings) if from_flatten else None
    got, got_groups = order_good(readings, groups)
    want = _reference_order(readings)
    # equal as rows (NaN compared as text: NaN != NaN)
    assert [repr(r) for r in got.to_pylist()] == [repr(r) for r in want.to_pylist()]
    assert len(got_groups) == got.num_rows
    # latest: per (identity, signal) the greatest ts, the later row of equal ones
    expected: dict[tuple[str, str], tuple[int, int]] = {}
    for i, (ident, sig, ts, *_rest) in enumerate(rows_):
        if (ident, sig) not in expected or ts >= expected[(ident, sig)][0]:
            expected[(ident, sig)] = (ts, i)
    last = latest(readings, groups)
    assert sorted((r["identity"], r["signal"], r["ts"] - T0) for r in last.to_pylist()) == sorted(
        (k[0], k[1], ts) for k, (ts, _) in expected.items()
    )
    picked = [readings.slice(i, 1).to_pylist()[0] for _, i in expected.values()]
    assert sorted(repr(r) for r in last.to_pylist()) == sorted(repr(r) for r in picked)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["d2", "d1", "d10", "D"]),
            st.dictionaries(st.sampled_from(["t", "p", "on", "T"]), st.floats(0, 9), min_size=1),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_flatten_groups_are_the_codes_of_the_readings_strings(
    batches: list[tuple[str, dict[str, float]]],
) -> None:
    from millrace.pipeline.processors.telemetry import flatten_all, group_codes

    events = [
        ev(i, ident, [{"ts_us": T0 + i, "values": values, "quality": 0}])
        for i, (ident, values) in enumerate(batches)
    ]
    flat = flatten_all(events)
    want = group_codes(flat.readings)
    # the same order and grouping (codes may differ by scale, not by order)
    assert (flat.groups.argsort(kind="stable") == want.argsort(kind="stable")).all()
    same = flat.groups[1:] == flat.groups[:-1]
    assert (same == (want[1:] == want[:-1])).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=5)), max_size=30))
def test_scattered_strings_are_the_strings_at_their_rows(cells: list[str | None]) -> None:
    import numpy as np

    from millrace.pipeline.processors.flatten import _scattered_strings

    at = np.array([i for i, c in enumerate(cells) if c is not None], dtype=np.int64)
    strings = [c for c in cells if c is not None]
    got = _scattered_strings(len(cells), at, strings)
    got.validate(full=True)
    assert got.to_pylist() == [c or "" for c in cells]
