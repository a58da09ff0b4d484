"""Restore in the distributed deployment: a restore task created through ``millrace
api`` is run by the task runner of ``millrace process`` (librdkafka's mock cluster, the
session's chDB as their ClickHouse: ``tests/distributed.py``) and lands exactly once.

Readings are ingested through the API and archived (``POST /archive/flush``: the
archiver of ``millrace process``). A restore by time over the whole range while the
projections hold it adds nothing; after the readings and the applied batch ids are
lost (truncated behind the pipeline's back) the same restore brings back every
reading, each once; a third restore doubles nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from millrace.projections.store.chdb import ChdbStore
from tests.distributed import Deployment, cluster  # noqa: F401
from tests.test_distributed_replay import Sender, serving, stored

pytest.importorskip("faust")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IDS = ("rs-0", "rs-1")


@pytest.fixture(scope="module")
def deployed(
    cluster: str,  # noqa: F811
    chdb_store: ChdbStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Deployment, httpx.Client]]:
    tmp = tmp_path_factory.mktemp("restore")
    config = f"archive: {{url: '{tmp / 'archive'}', poll_ms: 100}}\n"
    with serving(cluster, chdb_store, tmp, config) as deployed:
        yield deployed


def test_a_restore_through_the_api_is_run_by_the_process_role_exactly_once(
    deployed: tuple[Deployment, httpx.Client], chdb_store: ChdbStore
) -> None:
    d, client = deployed
    start_s = int(time.time()) - 60
    sender = Sender(client, IDS)
    for _ in range(12):
        sender.batch()
    d.wait(lambda: stored(chdb_store, "rs-") == sender.sent, "the readings folded", 120)
    r = client.post("/archive/flush", params={"wait_s": 120})
    assert r.status_code == 200, r.text + d.logs()
    windows = client.get("/archive", params={"topic": "telemetry", "limit": 1000}).json()["data"]
    assert sum(w["readings"] for w in windows) == sum(sender.sent.values())

    def restore() -> dict[str, Any]:
        body = {"start_time": start_s, "end_time": int(time.time()) + 60}
        r = client.post("/restore/time", json=body)
        assert r.status_code == 202, r.text
        task_id = r.json()["data"]["task_id"]

        def ended() -> dict[str, Any] | None:
            got = client.get(f"/restore/{task_id}")
            assert got.status_code == 200, got.text
            task: dict[str, Any] = got.json()["data"]
            return task if task["status"] in ("completed", "failed") else None

        task: dict[str, Any] = d.wait(ended, f"restore {task_id} to end", 120)
        assert task["status"] == "completed", f"{task}{d.logs()}"
        return task

    # the projections hold the range: nothing is added
    held = restore()
    assert held["progress"]["readings"] == 0 and held["progress"]["skipped"] > 0
    assert stored(chdb_store, "rs-") == sender.sent
    # lost behind the pipeline's back: the restore brings each reading back once
    for table in ("readings", "applied_batches"):
        chdb_store.execute(f"TRUNCATE TABLE millrace.{table}")
    assert not stored(chdb_store, "rs-")
    back = restore()
    assert back["progress"]["readings"] == sum(sender.sent.values())
    assert stored(chdb_store, "rs-") == sender.sent
    again = restore()
    assert again["progress"]["readings"] == 0
    assert stored(chdb_store, "rs-") == sender.sent
    # the API role has no task runner: the process role ran them
    process, api = d.roles
    assert process.leads("tasks") and not api.leads("tasks"), d.logs()
    # and left no sink progress rows behind
    for task in (held, back, again):
        left = chdb_store.execute(
            "SELECT count() FROM millrace.progress WHERE startsWith(consumer, {p:String})",
            params={"p": f"restore/{task['task_id']}/"},
        )
        assert int(left.rows[0][0]) == 0
