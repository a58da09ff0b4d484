"""The ``millrace`` command line, as a user runs it (separate processes, so each has
its own chDB)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]


def millrace(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "millrace.pipeline.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_replay_rebuilds_the_same_projections_and_sql_reads_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "c.yaml"
    config.write_text(
        "simulator:\n  devices: 20\n  signals: 6\n  interval_ms: 60000\n"
        "  realtime: false\n  max_ticks: 30\n  start_us: 1767225600000000\n"
        "api:\n  port: 0\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "millrace.pipeline.cli.main",
            "run",
            "--data-dir",
            str(data),
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(8)  # 30 ticks x 20 devices, produced as fast as possible
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "admin API key" in out  # printed once, on first start

    query = "SELECT count(), round(sum(value), 3) FROM millrace.readings; "
    before = millrace("sql", query, "--data-dir", str(data), "--format", "json")
    assert before.returncode == 0, before.stderr
    rows_before = json.loads(before.stdout)
    assert rows_before[0]["count()"] == 30 * 20 * 6

    aggs = "SELECT signal, sum(count) AS n FROM millrace.agg_1h GROUP BY signal ORDER BY signal"
    agg_before = json.loads(
        millrace("sql", aggs, "--data-dir", str(data), "--format", "json").stdout
    )

    replay = millrace("replay", "--data-dir", str(data))
    assert replay.returncode == 0, replay.stderr
    assert "replayed" in replay.stdout

    after = json.loads(millrace("sql", query, "--data-dir", str(data), "--format", "json").stdout)
    assert after == rows_before
    agg_after = json.loads(
        millrace("sql", aggs, "--data-dir", str(data), "--format", "json").stdout
    )
    assert agg_after == agg_before


def test_sql_refuses_writes(tmp_path: Path) -> None:
    r = millrace("sql", "DROP DATABASE millrace", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 1
    assert "read-only" in r.stderr


def test_bench_prints_one_figure_per_line(tmp_path: Path) -> None:
    r = millrace("bench", "--seconds", "2", "--devices", "50", "--signals", "5", timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert lines
    for line in lines:
        assert re.fullmatch(r"[a-z0-9_]+: -?[0-9.e+]+ \S+", line), line
    names = {ln.split(":")[0] for ln in lines}
    assert "e2e_readings_per_s" in names
