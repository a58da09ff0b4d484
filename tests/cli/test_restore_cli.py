"""``millrace restore`` on the command line: offline on a stopped engine's data
directory (then read back with ``millrace sql``), and through a running engine's API
(``--api``), each restoring an archive into projections equal to what the test
computes; the second run through the API doubles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from millrace.pipeline.archive.format import HOUR_US, window_start
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Record
from tests.test_crash_recovery import KEY, Engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = window_start(now_us() - 3 * HOUR_US, HOUR_US)
MINUTE = 60_000_000


def write_archive(root: Path) -> dict[str, float]:
    """One file of 200 batches; the sum of readings per signal."""
    codec = default_codec()
    records, sums = [], defaultdict(float)
    for i in range(200):
        ts = T0 + i * MINUTE // 4
        values = {"a": float(i), "b": float(i % 9)}
        event = {
            "identity": "cli-dev",
            "source": "t",
            "received_us": ts,
            "samples": [{"ts_us": ts, "values": values}],
            "batch_id": f"cli:{i}",
        }
        records.append(Record("telemetry", 0, i, ts, b"cli-dev", codec.encode("telemetry", event)))
        for k, v in values.items():
            sums[k] += v
    ArchiveStore(str(root)).write_window(records, T0, T0 + HOUR_US)
    return dict(sums)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "millrace.pipeline.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def config(tmp_path: Path) -> Path:
    path = tmp_path / "millrace.yaml"
    path.write_text(f"simulator:\n  devices: 0\narchive:\n  url: {tmp_path / 'archive'}\n")
    return path


def window() -> list[str]:
    return ["--start", str(T0 // 1_000_000), "--end", str((T0 + HOUR_US) // 1_000_000)]


def test_offline_restore(tmp_path: Path) -> None:
    sums = write_archive(tmp_path / "archive")
    data = tmp_path / "data"
    done = cli(
        "restore",
        "--offline",
        "--config",
        str(config(tmp_path)),
        "--data-dir",
        str(data),
        *window(),
    )
    assert done.returncode == 0, done.stderr
    assert "restored 400 readings" in done.stdout, done.stdout
    q = "SELECT signal, sum(value) AS total, count() AS n FROM millrace.readings GROUP BY signal"
    out = cli("sql", "--data-dir", str(data), "--format", "json", q)
    assert out.returncode == 0, out.stderr
    got = {r["signal"]: (float(r["total"]), int(r["n"])) for r in json.loads(out.stdout)}
    assert got == {k: (v, 200) for k, v in sums.items()}


def test_restore_through_the_running_engine(tmp_path: Path, engines: list[Engine]) -> None:
    sums = write_archive(tmp_path / "archive")
    engine = Engine(tmp_path / "data", config(tmp_path))
    engines.append(engine)
    engine.start()
    for run in range(2):
        done = cli("restore", "--api", engine.url, *window(), env={"MILLRACE_API_KEY": KEY})
        assert done.returncode == 0, done.stderr
        want = "restored 400 readings" if run == 0 else "restored 0 readings"
        assert want in done.stdout, done.stdout
        rows = engine.sql(
            "SELECT signal, sum(value), count() FROM millrace.readings "
            "WHERE identity = 'cli-dev' GROUP BY signal ORDER BY signal"
        )
        assert {r[0]: (float(r[1]), int(r[2])) for r in rows} == {
            k: (v, 200) for k, v in sums.items()
        }
    failed = cli(
        "restore", "--api", engine.url, "--url", "file:///etc/passwd", env={"MILLRACE_API_KEY": KEY}
    )
    assert failed.returncode == 1 and "403" in failed.stderr, failed.stderr
    engine.stop()
