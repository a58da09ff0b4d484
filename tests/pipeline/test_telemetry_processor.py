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
