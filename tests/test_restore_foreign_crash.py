"""A real ``millrace run`` killed with SIGKILL while it restores FOREIGN archive files
(written outside its archive store: another site's archive), restarted: the task
resumes, the files' records are on the log once (``pipeline.restore.republish``), the
live fold folds them, and a replay (``POST /replay``: the projections rebuilt from the
log) brings back exactly what this test computes from the files — nothing lost,
nothing doubled, and nothing dropped by the rebuild."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from millrace.pipeline.archive.store import ArchiveStore
from tests.test_crash_recovery import Engine
from tests.test_restore_crash import task, write_archive

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _agg(engine: Engine) -> dict[tuple[str, str, int], tuple[int, float, float, float]]:
    rows = engine.sql(
        "SELECT identity, signal, toUnixTimestamp(bucket), sum(count), sum(sum), min(min), "
        "max(max) FROM millrace.agg_1m GROUP BY identity, signal, bucket"
    )
    return {
        (i, s, int(b)): (int(c), float(t), float(lo), float(hi)) for i, s, b, c, t, lo, hi in rows
    }


def _wait_task(engine: Engine, path: str, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        r = httpx.get(f"{engine.url}/{path}/{task_id}", headers=engine.headers, timeout=10)
        assert r.status_code == 200, r.text
        t = dict(r.json()["data"])
        if t["status"] in ("completed", "failed"):
            return t
        time.sleep(0.2)
    raise AssertionError(f"{path} task {task_id} did not finish")


def test_kill9_mid_foreign_restore_then_replay_doubles_and_loses_nothing(
    tmp_path: Path, engines: list[Engine]
) -> None:
    exports = tmp_path / "exports"
    expected = write_archive(exports)  # not the engine's archive store: foreign files
    urls = [f"file://{exports}/{m.path}" for m in ArchiveStore(str(exports)).list_windows()]
    config = tmp_path / "millrace.yaml"
    config.write_text(
        "simulator:\n  devices: 0\n"
        f"archive:\n  url: {tmp_path / 'archive'}\n"
        f"restore:\n  chunk_records: 40\n  allowed_url_prefixes: ['file://{exports}/']\n"
    )
    engine = Engine(tmp_path / "data", config)
    engines.append(engine)
    engine.start()
    r = httpx.post(
        f"{engine.url}/restore/url", headers=engine.headers, json={"urls": urls}, timeout=10
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
    engine.kill9()  # mid-file, mid-chunk very likely
    engine.start()
    t = _wait_task(engine, "restore", task_id)
    assert t["status"] == "completed", t
    engine.wait_caught_up()
    want = {k: (len(v), sum(v), min(v), max(v)) for k, v in expected.items()}
    readings = sum(len(v) for v in expected.values())
    assert _agg(engine) == want
    assert int(engine.sql("SELECT count() FROM millrace.readings")[0][0]) == readings

    # rebuilt from the log: the restored readings are on it, once
    r = httpx.post(
        f"{engine.url}/replay",
        headers=engine.headers,
        json={"projections": ["readings", "agg_1m", "agg_5m", "agg_1h", "latest"]},
        timeout=10,
    )
    assert r.status_code == 202, r.text
    replay = _wait_task(engine, "replay", r.json()["data"]["task_id"])
    assert replay["status"] == "completed", replay
    assert _agg(engine) == want
    assert int(engine.sql("SELECT count() FROM millrace.readings")[0][0]) == readings
    engine.stop()
