"""`millrace run` with the fold worker (``runtime.worker.enabled``): the worker killed
mid-ingest, several times, then the engine itself killed, loses and doubles nothing;
the projections equal what the log implies (the same check as
``tests/test_crash_recovery.py``)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.test_crash_recovery import (
    Engine,
    Ingester,
    assert_matches_log,
    projections_of,
)


def fold_workers(pid: int) -> list[int]:
    """The engine's fold worker processes (spawned children running spawn_main; the
    resource tracker runs another module)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry))
    return found


def wait_for_worker(engine: Engine, other_than: set[int]) -> int:
    assert engine.proc is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = [p for p in fold_workers(engine.proc.pid) if p not in other_than]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no fold worker started")


def test_worker_and_engine_killed_mid_ingest_lose_and_double_nothing(
    tmp_path: Path, engines: list[Engine]
) -> None:
    config = tmp_path / "millrace.yaml"
    config.write_text(
        "simulator:\n  devices: 0\nruntime:\n  max_records: 50\n  worker:\n    enabled: true\n"
    )
    engine = Engine(tmp_path / "data", config)
    engines.append(engine)
    total = 500
    acked: set[int] = set()
    killed: set[int] = set()
    engine.start()
    ingester = Ingester(engine, 0, total)
    ingester.start()
    for kill_after_acks in (40, 80, 120):
        deadline = time.monotonic() + 60
        while len(ingester.acked) < kill_after_acks and time.monotonic() < deadline:
            time.sleep(0.01)
        worker = wait_for_worker(engine, killed)
        os.kill(worker, signal.SIGKILL)  # mid-fold or between folds: either is a death
        killed.add(worker)
    deadline = time.monotonic() + 60
    while len(ingester.acked) < 160 and time.monotonic() < deadline:
        time.sleep(0.01)
    wait_for_worker(engine, killed)  # the runtime started another one
    engine.kill9()  # and now the engine, mid-ingest (its worker ends with its pipe)
    ingester.join(15)
    acked.update(ingester.acked)
    engine.start()
    ingester = Ingester(engine, ingester.next, total)
    ingester.run()
    acked.update(ingester.acked)
    engine.wait_caught_up()
    got = projections_of(engine)
    engine.stop()
    assert engine.proc is not None
    assert fold_workers(engine.proc.pid) == []  # the stopped engine ended its worker
    assert_matches_log(got, tmp_path / "data" / "log", acked, total)
