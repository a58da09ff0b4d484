"""Isolation under a real ``millrace run`` (issue 12): seven slow analyst queries at once
must not stall ingest or the API.

The simulator ingests 1000 devices x 25 signals every 200 ms = 125,000 readings/s, about
half of what this 2-core machine sustains with the connector on the engine's loop
(~264k readings/s, bench/RESULTS.md). Measured for 8 s idle, then for 8 s while seven
viewer keys each send a query that runs into its 10 s limit. Before the isolation work,
seven such queries held an ingest POST for 50 s and GET latest for 10 s and the
simulator skipped 165 ticks.

Analyst queries run at the lowest OS priority where chDB may renice threads
(CAP_SYS_NICE); without it they compete with the pipeline at equal priority, and on 2
cores — where ingest at this rate takes 1.5 of them — only one analyst query on one
thread at a time leaves ingest its share. Without the capability the test therefore
runs with the configuration the engine's warning recommends (api.sql_sessions: 1,
api.sql_max_threads: 1) and at a quarter of the maximum rate (500 devices): measured
at half, the loaded ingest-to-queryable latency came out at 1.1x and 2.06x idle in two
runs — at the limit, so the test would fail by chance.

The comparison is generous on purpose (a shared machine): loaded figures must stay
within max(2 x idle, idle + 200 ms) — a floor so that a 15 ms idle p90 does not make a
40 ms loaded one a failure — and not one simulator tick may be skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.isolation import Run, run
from millrace.projections.store.chdb import can_renice_threads

# solo: it compares ingest-to-queryable under analyst load with the same run's idle
# figure; a test running beside it on the other core (pytest-xdist) skews the two
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.solo]

SQL_TIMEOUT_S = 10.0


def _within(loaded: float, idle: float, floor_s: float) -> bool:
    return loaded <= max(2 * idle, idle + floor_s)


def _report(r: Run) -> str:
    figs = r.figures()
    return "\n".join(f"{k}: {v:.4g} {u}" for k, (v, u) in figs.items()) + (
        f"\nanalyst answers (status, code, s): {r.analysts.answers}"
    )


def test_seven_slow_analyst_queries_do_not_stall_ingest_or_reads(tmp_path: Path) -> None:
    renice = can_renice_threads()
    # 75,000 readings/s (500 devices x 25 signals at 200 ms): 125,000 left the engine at
    # 1.4 of the 2 cores when idle, so the analysts' queries had no core to run on and
    # ingest-to-queryable doubled from saturation, not from the analysts (a quiet
    # machine, 2026-12-07); isolation is what this test checks, throughput is bench's
    r = run(
        tmp_path,
        devices=500,
        signals=25,
        interval_ms=200,
        seconds=8.0,
        warmup_s=3.0,
        queries=7,
        sql_timeout_s=SQL_TIMEOUT_S,
        api=None if renice else {"sql_sessions": 1, "sql_max_threads": 1},
    )
    report = _report(r)
    idle, load = r.idle, r.load
    # the load was real: analyst queries ran into their time limit (others may be
    # refused by the concurrency limit with 429 — never a server error)
    ran = [a for a in r.analysts.answers if a[2] >= SQL_TIMEOUT_S / 2]
    assert len(ran) >= 2, report
    assert all(status < 500 for status, _, _ in r.analysts.answers), report
    # the machine sustains the rate when idle (else the comparison says nothing)
    assert idle.skipped_ticks == 0, report
    # no reading lost to the analysts
    assert load.skipped_ticks == 0, report
    assert load.unseen_probes == 0 and load.queryable_s, report
    # ingest-to-queryable of an HTTP ingest, and GET latest's p90: a phase sends 30-60
    # GET latest, so its p99 is its one slowest request, which one scheduler hiccup decides
    # (a CI run: idle p99 191 ms, loaded 393 ms — one request — while p50 was 68 vs 95 ms);
    # the 90th percentile is the tail that several requests make
    idle_q = sorted(idle.queryable_s)[len(idle.queryable_s) // 2]
    load_q = sorted(load.queryable_s)[len(load.queryable_s) // 2]
    assert _within(load_q, idle_q, 0.2), report
    idle_p90 = r.figures()["isolation_idle_latest_1000_p90_ms"][0] / 1000
    load_p90 = r.figures()["isolation_load_latest_1000_p90_ms"][0] / 1000
    assert _within(load_p90, idle_p90, 0.2), report
    # an ingest POST is answered about as fast as idle (it was held 50 s)
    idle_post = sorted(idle.ingest_ms)[len(idle.ingest_ms) // 2] / 1000
    load_post = sorted(load.ingest_ms)[len(load.ingest_ms) // 2] / 1000
    assert _within(load_post, idle_post, 0.2), report
