"""The overview's ingest rate (:mod:`millrace.api.console.rate`), without a browser:
polled counters (``millrace run``) and heartbeat counters that repeat between two
heartbeats (``millrace api``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from millrace.api.console.rate import IngestRate, sampled_at


def test_polled_counter_over_the_window() -> None:
    r = IngestRate(10.0)
    assert r.add(0.0, 0) is None
    assert r.add(2.0, 200) == 100.0
    for t in range(4, 24, 2):
        got = r.add(float(t), 100.0 * t)
    assert got == 100.0
    assert r.samples[-1][0] - r.samples[0][0] >= 10.0  # the rate spans the window


def test_repeated_heartbeats_keep_the_last_rate() -> None:
    r = IngestRate(10.0)
    assert r.add(100.0, 0) is None
    assert r.add(100.0, 0) is None  # the same heartbeat polled again
    assert r.add(110.0, 5000) == 500.0
    for _ in range(4):  # polls between two heartbeats: not zero
        assert r.add(110.0, 5000) == 500.0
    assert r.add(120.0, 6000) == 100.0  # the window moved to the last two heartbeats


@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 10_000)), min_size=1, max_size=60))
def test_the_rate_is_the_counters_growth_over_the_time_it_spans(
    steps: list[tuple[float, int]],
) -> None:
    r, t, c = IngestRate(10.0), 0.0, 0
    for dt, dc in steps:
        t, c = t + dt, c + dc
        got = r.add(t, c)
        (t0, c0), (t1, c1) = r.samples[0], r.samples[-1]
        assert got is None if t1 <= t0 else got == (c1 - c0) / (t1 - t0)


def test_sampled_at_the_newest_heartbeat_when_distributed() -> None:
    workers = [{"ts_us": 5_000_000}, {"ts_us": 7_000_000}]
    assert sampled_at({"mode": "distributed", "workers": workers}, 99.0) == 7.0
    assert sampled_at({"mode": "distributed", "workers": []}, 99.0) == 99.0
    assert sampled_at({"runtime": {}}, 99.0) == 99.0
