"""A real ``millrace run`` killed with SIGKILL in the middle of a restore, restarted:
the task resumes where its events and the sink's progress say it was, and the restored
projections equal what this test computes from the archived events (nothing lost,
nothing doubled)."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from millrace.pipeline.archive.format import HOUR_US, window_start
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Record
from tests.test_crash_recovery import Engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MINUTE = 60_000_000
T0 = window_start(time.time_ns() // 1000 - 4 * HOUR_US, HOUR_US)
#: over two hours: two archive files (hour windows) per partition, ~780 records each
#: (~20 chunks); the kill comes after 400 of ~3,140 events, files still to go (it was
#: 6,000: twice the restore work for the same claims)
BATCHES = 3000


def write_archive(root: Path) -> dict[tuple[str, str, int], list[float]]:
    """Archive files of telemetry batches (half with batch ids, some resent); the
    per-minute values that one clean pass holds."""
    codec = default_codec()
    store = ArchiveStore(str(root))
    per_part: dict[int, list[Record]] = defaultdict(list)
    agg: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for i in range(BATCHES):
        identity, part = f"dev-{i % 4}", i % 2
        ts = T0 + i * (2 * HOUR_US // BATCHES)
        values = {"t": float(i % 13), "u": float(i % 5) / 2}
        event: dict[str, Any] = {
            "identity": identity,
            "source": "archive",
            "received_us": ts,
            "samples": [{"ts_us": ts, "values": values}],
        }
        if i % 2:
            event["batch_id"] = f"b{i}"
        copies = 2 if i % 2 and i % 11 == 0 else 1  # a resend in the archive
        for _ in range(copies):
            recs = per_part[part]
            recs.append(
                Record(
                    "telemetry",
                    part,
                    len(recs),
                    ts,
                    identity.encode(),
                    codec.encode("telemetry", event),
                )
            )
        for sig, v in values.items():
            agg[(identity, sig, (ts - ts % MINUTE) // 1_000_000)].append(v)
    for recs in per_part.values():
        by_window: dict[int, list[Record]] = defaultdict(list)
        for r in recs:
            by_window[window_start(r.timestamp_us, HOUR_US)].append(r)
        for ws, rs in by_window.items():
            store.write_window(rs, ws, ws + HOUR_US)
    return agg


def task(engine: Engine, task_id: str) -> dict[str, Any]:
    r = httpx.get(f"{engine.url}/restore/{task_id}", headers=engine.headers, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def test_kill9_mid_restore_resumes_and_doubles_nothing(
    tmp_path: Path, engines: list[Engine]
) -> None:
    expected = write_archive(tmp_path / "archive")
    config = tmp_path / "millrace.yaml"
    config.write_text(
        "simulator:\n  devices: 0\n"
        f"archive:\n  url: {tmp_path / 'archive'}\n"
        "restore:\n  chunk_records: 40\n"
    )
    engine = Engine(tmp_path / "data", config)
    engines.append(engine)
    engine.start()
    r = httpx.post(
        f"{engine.url}/restore/time",
        headers=engine.headers,
        json={"start_time": T0 // 1_000_000, "end_time": (T0 + 2 * HOUR_US) // 1_000_000},
        timeout=10,
    )
    assert r.status_code == 202, r.text
    task_id = r.json()["data"]["task_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        t = task(engine, task_id)
        if t["status"] == "running" and t["progress"].get("events", 0) >= 400:
            break
        assert t["status"] in ("pending", "running"), t
        time.sleep(0.05)
    before = t
    engine.kill9()  # mid-file, mid-chunk very likely
    engine.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        t = task(engine, task_id)
        if t["status"] in ("completed", "failed"):
            break
        time.sleep(0.2)
    assert t["status"] == "completed", t
    # resumed after the restart (a resume is a new start of the same attempt), with
    # the files completed before the kill kept
    assert t["started"] != before["started"] and t["attempts"] == 1
    assert {f["file"] for f in before["files"]} <= {f["file"] for f in t["files"]}
    rows = engine.sql(
        "SELECT identity, signal, toUnixTimestamp(bucket), sum(count), sum(sum), min(min), "
        "max(max) FROM millrace.agg_1m GROUP BY identity, signal, bucket"
    )
    got = {
        (i, s, int(b)): (int(c), float(t_), float(lo), float(hi)) for i, s, b, c, t_, lo, hi in rows
    }
    want = {k: (len(v), sum(v), min(v), max(v)) for k, v in expected.items()}
    assert got == want
    count = engine.sql("SELECT count() FROM millrace.readings")[0][0]
    assert int(count) == sum(len(v) for v in expected.values())
    engine.stop()
