"""The console's pure parts: the explorer's query plan, zoom and CSV; the live table's
filters and rows; a session's permissions (no browser, no NiceGUI)."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from millrace.api.console.livetable import MAX_ROWS, Filters, LiveTable, quality_text, row_of
from millrace.api.console.resolution import (
    BUCKETS,
    MAX_POINTS,
    RAW_MAX_S,
    parse_time,
    plan,
    shifted,
    to_csv,
    zoomed,
)
from millrace.api.console.session import Session
from millrace.api.permissions import BUILTIN_ROLES

SECONDS = {name: s for name, s in BUCKETS}
ranges = st.tuples(st.integers(0, 2_000_000_000_000), st.integers(0, 400 * 86_400_000)).map(
    lambda t: (t[0], t[0] + t[1])
)


@given(ranges, st.booleans())
def test_a_plan_never_asks_for_more_than_max_points(rng: tuple[int, int], raw_long: bool) -> None:
    start, end = rng
    p = plan(start, end, raw_long)
    span_s = (end - start) / 1000
    if p.bucket is None:
        assert span_s <= RAW_MAX_S and not raw_long
        return
    buckets = span_s / SECONDS[p.bucket]
    assert p.truncated == (buckets > MAX_POINTS)
    if not p.truncated:
        assert buckets <= MAX_POINTS
    finer = [s for name, s in BUCKETS if s < SECONDS[p.bucket]]
    if span_s > RAW_MAX_S or raw_long:
        # the finest bucket that fits was chosen
        assert all(span_s / s > MAX_POINTS for s in finer)


def test_plan_examples() -> None:
    assert plan(0, 15 * 60_000).bucket is None
    assert plan(0, 15 * 60_000, raw_too_long=True).bucket == "1m"
    assert plan(0, 6 * 3_600_000).bucket == "1m"
    assert plan(0, 7 * 86_400_000).bucket == "5m"  # 2016 buckets
    assert plan(0, 30 * 86_400_000).bucket == "1h"
    assert plan(0, 365 * 86_400_000).truncated  # 8760 hours


@given(ranges, st.floats(0, 100), st.floats(0, 100))
def test_zoom_stays_inside_the_range(rng: tuple[int, int], a: float, b: float) -> None:
    start, end = rng
    lo, hi = zoomed(start, end, min(a, b), max(a, b))
    assert start <= lo <= end and hi >= lo + 1000
    assert hi <= max(end, lo + 1000)


def test_keyboard_zoom_and_pan() -> None:
    assert shifted(0, 1000_000, 0.5, 0) == (250_000, 750_000)
    assert shifted(0, 1000_000, 2.0, 0) == (-500_000, 1_500_000)
    assert shifted(0, 1000_000, 1.0, -0.5) == (-500_000, 500_000)


def test_times_parse_as_utc_unless_given_an_offset() -> None:
    assert parse_time("1970-01-01T00:00:01") == 1000
    assert parse_time("1970-01-01 01:00:00+01:00") == 0
    assert parse_time("yesterday") is None


def test_csv_holds_exactly_the_points_shown() -> None:
    agg = {
        "a": [
            {"timestamp": 60_000, "min": 1.0, "avg": 1.5, "max": 2.0},
            {"timestamp": 0, "min": None, "avg": None, "max": None},
        ]
    }
    rows = list(csv.reader(io.StringIO(to_csv("1m", agg))))
    assert rows == [
        ["time", "signal", "min", "avg", "max"],
        ["1970-01-01T00:00:00.000+00:00", "a", "", "", ""],
        ["1970-01-01T00:01:00.000+00:00", "a", "1.0", "1.5", "2.0"],
    ]
    raw = {"b": [{"timestamp": 1, "value": 3}]}
    assert list(csv.reader(io.StringIO(to_csv(None, raw))))[1] == [
        "1970-01-01T00:00:00.001+00:00",
        "b",
        "3",
    ]


def test_filters_match_names_patterns_and_tags() -> None:
    f = Filters(identity="press-*, mixer", signal="temp*")
    assert f.server_side() == {}  # a pattern: matched in the console
    assert f.match("press-1", "temp_0") and f.match("mixer", "temperature")
    assert not f.match("mixer-2", "temp") and not f.match("press-1", "pressure")
    exact = Filters(identity="a,b", signal="s")
    assert exact.server_side() == {"identity": ["a", "b"], "signal": ["s"]}
    tagged = Filters(identities={"a"})
    assert tagged.match("a", "x") and not tagged.match("b", "x")


def test_live_table_sends_each_row_once_as_added_then_as_changed() -> None:
    t = LiveTable()
    item = {"identity": "i", "signal": "s", "value": True, "quality": 0, "timestamp": "T"}
    t.take(item)
    t.take({**item, "value": 2.5})
    added, changed = t.drain()
    assert [r["value"] for r in added] == ["2.5"] and changed == []
    t.take({**item, "quality": 3})
    added, changed = t.drain()
    assert added == [] and changed[0]["quality"] == "bad (3)"
    assert t.received == 3 and t.drain() == ([], [])
    for n in range(MAX_ROWS + 5):
        t.take({**item, "signal": f"s{n}"})
    assert len(t.rows) == MAX_ROWS


def test_quality_and_values_as_text() -> None:
    assert quality_text(0) == "good" and quality_text(None) == "unknown"
    row = row_of(
        {"identity": "i", "signal": "s", "value": False, "timestamp": "2026-01-01T00:00:00.123456Z"}
    )
    assert row["value"] == "false" and row["timestamp"] == "2026-01-01 00:00:00.123"


def test_a_keys_permissions_are_its_roles_and_a_users_are_listed() -> None:
    key = Session("k")
    key.apply_me({"key_id": "x", "name": "ci", "role": "operator"})
    assert key.permissions == BUILTIN_ROLES["operator"] and key.can("pipeline:control")
    user = Session("t", "r")
    user.apply_me({"name": "u", "username": "u", "role": "custom", "permissions": ["a:b"]})
    assert user.can("a:b") and not user.can("a:b", "status:read") and user.name == "u"
