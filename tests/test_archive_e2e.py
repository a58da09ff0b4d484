"""``millrace run`` with an archive: the simulator's readings reach the archive through
the archiver stage, ``POST /api/v1/archive/flush`` answers once they are there, ``GET
/api/v1/archive`` and ``/status`` show them, and ``millrace archive verify|export`` read
the store the engine wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from tests.connectors.test_run_config_e2e import free_port
from tests.millrace_process import ROOT, millrace_run
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration]

KEY = "archive-e2e-admin-key-0123456789"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "millrace.pipeline.cli.main", "archive", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_run_archives_and_the_cli_reads_it(tmp_path: Path) -> None:
    port = free_port()
    archive = tmp_path / "archive"
    cfg = tmp_path / "millrace.yaml"
    cfg.write_text(
        "simulator: {devices: 5, signals: 3, interval_ms: 100}\n"
        f"api: {{port: {port}}}\n"
        f"archive: {{url: '{archive}', window: 1h, poll_ms: 100}}\n"
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    base = f"http://127.0.0.1:{port}/api/v1"
    with (
        millrace_run(cfg, tmp_path / "data", KEY),
        httpx.Client(base_url=base, headers=headers, timeout=90) as client,
    ):

        def up() -> bool:
            try:
                return client.get("/status").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, "the API")
        wait_until(
            lambda: client.get("/status").json()["data"]["archive"]["behind_records"] > 20, "data"
        )
        r = client.post("/archive/flush")
        assert r.status_code == 200, r.text
        assert r.json()["data"]["status"] == "completed"
        windows = client.get("/archive", params={"topic": "telemetry", "limit": 1000}).json()
        archived = sum(w["readings"] for w in windows["data"])
        assert archived > 0 and archived % 3 == 0  # 3 signals per batch
        status = client.get("/status").json()["data"]["archive"]
        assert status["error"] is None and status["windows"] >= len(windows["data"])
    # the engine is stopped: the store is complete and readable by the CLI
    verify = _cli("verify", "--url", str(archive))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    out = tmp_path / "readings.parquet"
    exp = _cli("export", "--url", str(archive), "--start", "2000-01-01", "--end", "2100-01-01",
               str(out))  # fmt: skip
    assert exp.returncode == 0, exp.stdout + exp.stderr
    summary = json.loads(exp.stdout.strip().splitlines()[-1])
    listing = _cli("list", "--url", str(archive), "--topic", "telemetry", "--json")
    total = sum(json.loads(line)["readings"] for line in listing.stdout.splitlines())
    assert total >= archived
    assert pq.read_table(out).num_rows == summary["readings"] == total
