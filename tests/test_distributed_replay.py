"""Replay while running in the distributed deployment: real ``millrace process`` (a
faust worker, the task runner) and ``millrace api`` on librdkafka's mock cluster, the
session's chDB served as their ClickHouse (``tests/distributed.py``).

Readings are ingested through the API, the live ``readings`` table is damaged (rows
deleted behind the pipeline's back), and ``POST /api/v1/replay`` is asked of
``millrace api`` while ingest goes on. The task runner of ``millrace process`` folds
the log into shadow tables, holds the worker through the log (the pipeline pause,
answered by the worker: ``pipeline.runtime.hold``) and swaps them in. Afterwards the
readings are exactly those the test sent, each once (the deleted ones back, nothing
doubled), ``latest`` is each identity's newest value, and the audit trail shows the
hold: pause, the worker's answer, resume.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.store.chdb import ChdbStore
from tests.connectors.test_run_config_e2e import free_port
from tests.distributed import Deployment, cluster, rows  # noqa: F401
from tests.store_server import StoreServer

pytest.importorskip("faust")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_767_225_600_000_000  # 2026-01-01, in µs
IDS = ("rp-0", "rp-1", "rp-2")


@contextmanager
def serving(
    bootstrap: str, store: ChdbStore, tmp: Path, config: str = ""
) -> Iterator[tuple[Deployment, httpx.Client]]:
    """One ``millrace process`` and one ``millrace api`` (both given ``config``) on
    emptied projections, and a client of the API (also used by
    tests/test_distributed_restore.py)."""
    drop_projections(store)
    migrate(store)
    store.execute("TRUNCATE TABLE IF EXISTS millrace.checkpoints")
    with StoreServer(store) as server:
        d = Deployment(bootstrap, server.url, tmp)
        port = free_port()
        try:
            d.start("process", "process", config)
            d.start("api", "api", f"api:\n  port: {port}\n{config}")
            with d.api(port) as client:
                yield d, client
        finally:
            d.stop_all()


@pytest.fixture(scope="module")
def deployed(
    cluster: str,  # noqa: F811
    chdb_store: ChdbStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Deployment, httpx.Client]]:
    """One ``millrace process`` and one ``millrace api`` for the module."""
    with serving(cluster, chdb_store, tmp_path_factory.mktemp("replay")) as deployed:
        yield deployed


class Sender:
    """Ingests batches through the API and remembers every reading it sent (also used
    by tests/test_distributed_restore.py)."""

    def __init__(self, client: httpx.Client, ids: tuple[str, ...] = IDS) -> None:
        self.client = client
        self.ids = ids
        self.sent: Counter[tuple[str, int, float]] = Counter()
        self.n = 0

    def batch(self, size: int = 5) -> None:
        identity = self.ids[self.n % len(self.ids)]
        samples = []
        for _ in range(size):
            ts, value = T0 + self.n * 1_000_000, float(self.n)
            samples.append({"timestamp": ts, "values": {"x": value}})
            self.sent[(identity, ts, value)] += 1
            self.n += 1
        r = self.client.post(f"/identities/{identity}/data", json=samples)
        assert r.status_code == 202, r.text


def stored(store: ChdbStore, prefix: str = "rp-") -> Counter[tuple[str, int, float]]:
    """(identity, ts, value) of each stored reading of identities named ``prefix``…"""
    found = rows(
        store,
        "SELECT identity, toUnixTimestamp64Micro(ts), value FROM millrace.readings "
        f"WHERE startsWith(identity, '{prefix}')",
    )
    return Counter((str(i), int(ts), float(v)) for i, ts, v in found)


def test_replay_through_the_api_rebuilds_while_ingest_goes_on(
    deployed: tuple[Deployment, httpx.Client], chdb_store: ChdbStore
) -> None:
    d, client = deployed
    sender = Sender(client)
    for _ in range(24):
        sender.batch()
    d.wait(lambda: stored(chdb_store) == sender.sent, "the first readings folded", 120)

    # damage the live table behind the pipeline's back: only a rebuild brings them back
    chdb_store.execute("DELETE FROM millrace.readings WHERE identity = 'rp-1'")
    assert sum(stored(chdb_store).values()) < sum(sender.sent.values())

    r = client.post("/replay", json={})
    assert r.status_code == 202, r.text
    task_id = r.json()["data"]["task_id"]

    def task() -> dict[str, Any]:
        got = client.get(f"/replay/{task_id}")
        assert got.status_code == 200, got.text
        data: dict[str, Any] = got.json()["data"]
        return data

    # ingest goes on while the task runs
    deadline = time.monotonic() + 180
    while (t := task())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, f"replay never ended: {t}{d.logs()}"
        sender.batch()
        time.sleep(0.2)
    assert t["status"] == "completed", f"{t}{d.logs()}"
    assert t["progress"]["records"] > 0
    for _ in range(3):
        sender.batch()

    newest: dict[str, tuple[int, float]] = {}
    for identity, ts, value in sender.sent:
        newest[identity] = max(newest.get(identity, (0, 0.0)), (ts, value))

    def latest() -> dict[str, tuple[int, float]]:
        found = rows(
            chdb_store,
            "SELECT identity, toUnixTimestamp64Micro(ts), value FROM millrace.latest FINAL "
            "WHERE identity LIKE 'rp-%' AND signal = 'x'",
        )
        return {str(i): (int(ts), float(v)) for i, ts, v in found}

    # the sink inserts a batch's tables one after the other (readings before latest):
    # both are waited for, so a batch caught between its two inserts is not a failure
    d.wait(
        lambda: stored(chdb_store) == sender.sent and latest() == newest,
        "every reading exactly once, and each identity's newest value in latest",
        120,
        lambda: (
            f"missing {sender.sent - stored(chdb_store)}, extra {stored(chdb_store) - sender.sent}"
            f", latest {latest()} != {newest}"
        ),
    )

    # the hold, in the audit trail: the replay's pause, the worker's answer, its resume
    holds = rows(
        chdb_store,
        "SELECT action, actor FROM millrace.audits FINAL WHERE target_type = 'pipeline' "
        "ORDER BY ts",
    )
    actions = [a for a, actor in holds if actor == f"replay:{task_id}"]
    assert actions[0] == "pause" and actions[-1] == "resume", holds
    assert "held" in [a for a, _ in holds], holds
    # no shadow left behind
    assert not rows(
        chdb_store,
        "SELECT name FROM system.tables WHERE database = 'millrace' AND name LIKE '%shadow'",
    )
