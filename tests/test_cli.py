"""The ``millrace`` command line, as a user runs it (separate processes, so each has
its own chDB)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration]


def millrace(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "millrace.pipeline.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


COUNTS = "SELECT (SELECT count() FROM millrace.readings), (SELECT sum(count) FROM millrace.agg_1h)"


def _until_ingested(proc: subprocess.Popen[bytes], output: Path, port: int, want: int) -> None:
    """Until the API of ``millrace run`` counts ``want`` readings, in the readings and
    in the hourly aggregates (written after them; asked with the admin key the run
    prints), instead of a fixed wait long enough for a slow start-up."""
    deadline = time.monotonic() + 120
    count = None
    while True:
        out = output.read_text(errors="replace")
        assert proc.poll() is None, f"millrace run exited {proc.returncode}: {out[-3000:]}"
        assert time.monotonic() < deadline, f"{count} readings of {want}: {out[-3000:]}"
        key = re.search(r"^\s+(mr_\S+)\s*$", out, re.MULTILINE)
        if key is not None:
            try:
                r = httpx.post(
                    f"http://127.0.0.1:{port}/api/v1/sql",
                    json={"query": COUNTS},
                    headers={"Authorization": f"Bearer {key.group(1)}"},
                    timeout=10,
                )
                count = r.json()["rows"][0] if r.status_code == 200 else None
            except httpx.TransportError:
                count = None  # not serving yet
            if count == [want, want]:
                return
        time.sleep(0.2)


def test_replay_rebuilds_the_same_projections_and_sql_reads_them(tmp_path: Path) -> None:
    from tests.connectors.test_run_config_e2e import free_port

    data = tmp_path / "data"
    config = tmp_path / "c.yaml"
    port = free_port()
    config.write_text(
        "simulator:\n  devices: 20\n  signals: 6\n  interval_ms: 60000\n"
        "  realtime: false\n  max_ticks: 30\n  start_us: 1767225600000000\n"
        f"api:\n  port: {port}\n"
    )
    output = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k != "MILLRACE_API_KEY"}
    with open(output, "wb") as out_file:
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
            env=env,
            stdout=out_file,
            stderr=subprocess.STDOUT,
        )
    try:
        # 30 ticks x 20 devices x 6 signals, produced as fast as possible
        _until_ingested(proc, output, port, 30 * 20 * 6)
    finally:
        proc.terminate()
        proc.wait(60)
    out = output.read_text(errors="replace")
    assert proc.returncode == 0, out
    assert "admin API key" in out  # printed once, on first start

    # the readings' count and sum, and the hourly count of each signal, in one
    # statement (one `millrace sql` process each time, not two)
    query = (
        "SELECT signal, sum(count) AS n, (SELECT count() FROM millrace.readings) AS readings,"
        " (SELECT round(sum(value), 3) FROM millrace.readings) AS total"
        " FROM millrace.agg_1h GROUP BY signal ORDER BY signal"
    )
    before = millrace("sql", query, "--data-dir", str(data), "--format", "json")
    assert before.returncode == 0, before.stderr
    rows_before = json.loads(before.stdout)
    assert len(rows_before) == 6 and {r["readings"] for r in rows_before} == {30 * 20 * 6}
    assert [r["n"] for r in rows_before] == [30 * 20] * 6

    replay = millrace("replay", "--data-dir", str(data))
    assert replay.returncode == 0, replay.stderr
    assert "replayed" in replay.stdout

    after = millrace("sql", query, "--data-dir", str(data), "--format", "json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == rows_before


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
