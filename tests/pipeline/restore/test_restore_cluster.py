"""A restore's progress rows on a ClickHouse cluster (``distributed.clickhouse_cluster``):
``progress`` is a Distributed table there, which refuses a DELETE; the rows of a
finished file go from every node's ``progress_local`` ON CLUSTER instead
(``process.progress_forget`` picks ``ClusterShadows.forget``). On the doubles the
cluster tests use (``tests/projections/cluster_doubles``: chDB as a one-node cluster),
with the front refusing the DELETE as a server does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from millrace.pipeline.archive.format import HOUR_US
from millrace.pipeline.cli.assembly.process import progress_forget
from millrace.pipeline.errors import StoreError
from millrace.pipeline.restore import RestoreParams
from millrace.projections.replay_cluster import ClusterShadows
from millrace.projections.shadow import ServerShadows
from millrace.projections.store.base import QueryResult
from millrace.projections.store.chdb import ChdbStore
from tests.pipeline.restore.helpers import T0, Runner, archive, check, progress_rows, telemetry_log
from tests.projections.cluster_doubles import CLUSTER, OneNodeCluster

ON = f"ON CLUSTER '{CLUSTER}'"


class DistributedProgress(OneNodeCluster):
    """The one-node cluster whose ``millrace.progress`` is a Distributed front: a
    DELETE through it fails as on a server."""

    def execute(self, sql: str, params: Any = None, settings: Any = None) -> QueryResult:
        if sql.startswith("DELETE FROM millrace.progress "):
            self.sql.append(sql)
            raise StoreError("Table engine Distributed doesn't support lightweight delete")
        return super().execute(sql, params, settings)


def _restore(store: ChdbStore, tmp_path: Path, forget: Any) -> tuple[str, dict[str, Any]]:
    log, samples = telemetry_log(n=30)
    archive_store, _ = archive(log, tmp_path / "archive")
    runner = Runner(store, archive_store)
    runner.handler.forget = forget

    async def go() -> tuple[str, dict[str, Any]]:
        params = RestoreParams(start_us=T0, end_us=T0 + 3 * HOUR_US).to_json()
        tid = await runner.create(params)
        return tid, await runner.run(tid)

    tid, state = asyncio.run(go())
    assert state["status"] == "completed", state
    check(store, samples)
    return tid, state


def test_a_completed_restore_forgets_its_progress_on_every_node(
    store: ChdbStore, tmp_path: Path
) -> None:
    cluster = DistributedProgress(store)
    shadows = ClusterShadows(cluster, CLUSTER, cluster.connect)
    tid, state = _restore(store, tmp_path, shadows.forget)
    deletes = [s for s in cluster.sql if s.startswith("DELETE")]
    assert len(deletes) == len(state["files_done"]) > 0
    for name in state["files_done"]:
        where = f"WHERE consumer = 'restore/{tid}/{name}'"
        assert f"DELETE FROM millrace.progress_local {ON} {where}" in deletes
    assert progress_rows(store, tid) == 0


def test_the_plain_delete_fails_on_the_front_and_leaves_the_rows(
    store: ChdbStore, tmp_path: Path
) -> None:
    """What the single-server forget does on a cluster: the task completes (the rows
    are harmless), but they stay: why the cluster's forget is needed."""
    cluster = DistributedProgress(store)
    tid, state = _restore(store, tmp_path, ServerShadows(cluster).forget)
    tried = [s for s in cluster.sql if s.startswith("DELETE FROM millrace.progress ")]
    assert len(tried) == len(state["files_done"])
    assert progress_rows(store, tid) > 0


def test_the_process_role_picks_the_cluster_forget_on_a_cluster(store: ChdbStore) -> None:
    def asm(url: str | None, cluster: str | None) -> Any:
        dist = SimpleNamespace(clickhouse_url=url, clickhouse_cluster=cluster)
        return SimpleNamespace(config=SimpleNamespace(distributed=dist))

    on_cluster = progress_forget(asm("clickhouse://ch-1:9000/millrace", CLUSTER), store)
    assert isinstance(on_cluster.__self__, ClusterShadows)  # type: ignore[attr-defined]
    for plain in (asm(None, None), asm("clickhouse://ch-1:9000/millrace", None)):
        chosen = progress_forget(plain, store)
        assert isinstance(chosen.__self__, ServerShadows)  # type: ignore[attr-defined]
