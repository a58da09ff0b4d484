"""Replay while running on a ClickHouse cluster (``projections.replay_cluster``).

No ClickHouse cluster can run on this machine, so, as for the rest of the cluster code:

* the replay's state machine runs on chDB seen as a one-node cluster
  (``cluster_doubles.OneNodeCluster``): real tables, real data, compared with sums
  computed here, and the exact statements sent to the cluster checked;
* the swap's failure paths run against several nodes kept as dicts
  (``cluster_doubles.Nodes``): a node failing the exchange, a node not answering, a
  node missing a table;
* the contract test at the end runs a replay on a real cluster when
  ``MILLRACE_CLICKHOUSE_URL`` and ``MILLRACE_CLICKHOUSE_CLUSTER`` are set, and says why
  it skips otherwise.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.projections import shadow
from millrace.projections.replay import Replay, ReplayParts
from millrace.projections.replay_cluster import ClusterShadows
from millrace.projections.replay_cluster_sql import ClusterSwapError
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.projections.cluster_doubles import CLUSTER, Nodes, OneNodeCluster
from tests.projections.test_replay import Sent, check_equal_to_sent, drain, ingest, spoil

ON = f"ON CLUSTER '{CLUSTER}'"


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[LocalEventLog]:
    log = LocalEventLog(tmp_path / "log")
    yield log
    await log.close()


async def _quiet(counts: dict[str, int]) -> None:
    pass


async def test_a_replay_on_a_cluster_rebuilds_through_the_shadow_fronts_and_swaps_locals(
    store: ChdbStore, log: LocalEventLog
) -> None:
    shadow.drop_all(store)
    sent = Sent()
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors(), max_records=50)
    await ingest(log, sent, 0, 60, live)
    await drain(live)
    for table in ("readings", "latest"):
        spoil(store, table)
    cluster = OneNodeCluster(store)
    shadows = ClusterShadows(cluster, CLUSTER, cluster.connect, poll_s=0.0)
    parts = ReplayParts(log, store, live, max_records=40, shadows=shadows)
    counts = await Replay(parts, "r1", ["readings", "latest"]).run(_quiet, asyncio.Event())
    assert counts is not None and counts["readings"] == sum(sent.count.values())
    check_equal_to_sent(store, sent)

    ddl = [s for s in cluster.sql if not s.startswith("SELECT")]
    (tag,) = {m for s in ddl for m in re.findall(r"COMMENT 'build:(r1\.[0-9a-f]+)'", s)}
    built = ["readings", "latest", "alarms", "applied_batches", "identities"]
    built += ["resource_states", "tasks"]
    for t in built:  # shadows of the built tables, on every node, with their fronts
        assert f"DROP TABLE IF EXISTS millrace.{t}__shadow_local {ON} SYNC" in ddl
        create = [s for s in ddl if s.startswith(f"CREATE TABLE millrace.{t}__shadow_local ")]
        assert len(create) == 1 and create[0].startswith(
            f"CREATE TABLE millrace.{t}__shadow_local {ON} AS millrace.{t}_local ENGINE = "
        )
        assert create[0].endswith(f" COMMENT 'build:{tag}'")
        assert (
            f"CREATE TABLE millrace.{t}__shadow {ON} AS millrace.{t}__shadow_local ENGINE = "
            f"Distributed('{CLUSTER}', 'millrace', '{t}__shadow_local', rand())" in ddl
        )
    # the named ones marked on every node, then one exchange of the local tables
    swap = ddl.index(
        "EXCHANGE TABLES millrace.readings_local AND millrace.readings__shadow_local, "
        f"millrace.latest_local AND millrace.latest__shadow_local {ON}"
    )
    marks = [
        f"ALTER TABLE millrace.readings_local {ON} MODIFY COMMENT ''",
        f"ALTER TABLE millrace.latest_local {ON} MODIFY COMMENT ''",
        f"ALTER TABLE millrace.readings__shadow_local {ON} MODIFY COMMENT 'swap:{tag}'",
        f"ALTER TABLE millrace.latest__shadow_local {ON} MODIFY COMMENT 'swap:{tag}'",
    ]
    assert ddl[swap - 4 : swap] == marks
    assert cluster.settings[cluster.sql.index(ddl[swap])] == {
        "distributed_ddl_output_mode": "never_throw",
        "distributed_ddl_task_timeout": 60,
    }
    # then the old tables (and every other shadow) dropped on every node
    after = ddl[swap + 1 :]
    for t in built:
        assert f"DROP TABLE IF EXISTS millrace.{t}__shadow {ON} SYNC" in after
        assert f"DROP TABLE IF EXISTS millrace.{t}__shadow_local {ON} SYNC" in after
    assert after[-1] == (
        f"DELETE FROM millrace.progress_local {ON} WHERE consumer = 'replay:{tag}'"
    )
    # every DDL statement went to the whole cluster
    assert all(ON in s for s in ddl), [s for s in ddl if ON not in s]
    names = shadow.comments(store)
    assert names["readings"] == f"swap:{tag}"
    assert not [n for n in names if n.endswith(shadow.SUFFIX)]


async def test_a_crash_after_the_exchange_is_finished_by_the_rerun_on_the_cluster(
    store: ChdbStore, log: LocalEventLog
) -> None:
    """Killed after the exchange ran on the node, before the drop: the rerun finds the
    swap begun, and only drops (the node swapped already; nothing exchanged twice)."""
    shadow.drop_all(store)
    sent = Sent()
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors())
    await ingest(log, sent, 0, 20, live)
    await drain(live)
    spoil(store, "readings")
    cluster = OneNodeCluster(store)
    shadows = ClusterShadows(cluster, CLUSTER, cluster.connect)
    replay = Replay(ReplayParts(log, store, live, shadows=shadows), "r2", ["readings"])

    def crash(phase: str) -> None:
        if phase == "drop":
            raise RuntimeError("killed after the swap")

    replay.before = crash
    with pytest.raises(RuntimeError, match="killed"):
        await replay.run(_quiet, asyncio.Event())
    check_equal_to_sent(store, sent)  # swapped
    cluster.sql.clear()
    again = Replay(ReplayParts(log, store, live, shadows=shadows), "r2", ["readings"])
    assert await again.run(_quiet, asyncio.Event()) == {"records": 0}
    assert not [s for s in cluster.sql if s.startswith("EXCHANGE")]
    check_equal_to_sent(store, sent)
    assert not [n for n in shadow.comments(store) if n.endswith(shadow.SUFFIX)]


# --- the swap on several nodes ------------------------------------------------------

TAG = "r9.00ff"
TABLES = ["readings", "latest"]


def marked() -> dict[str, str]:
    """A node's tables after ``mark``: live comments cleared, shadows ``swap:<tag>``."""
    out = {}
    for t in TABLES:
        out[f"{t}_local"] = ""
        out[f"{t}__shadow_local"] = f"swap:{TAG}"
    return out


def shadows_on(nodes: Nodes, queued_wait_s: float = 300.0) -> ClusterShadows:
    return ClusterShadows(
        nodes.cluster(), CLUSTER, nodes.connect, queued_wait_s=queued_wait_s, poll_s=0.0
    )


def test_every_node_swaps() -> None:
    nodes = Nodes(["a", "b", "c"], marked())
    shadows_on(nodes).exchange(TABLES)
    for tables in nodes.tables.values():
        assert tables["readings_local"] == tables["latest_local"] == f"swap:{TAG}"
    assert nodes.direct == []  # no node needed a connection of its own


def test_a_node_failing_the_swap_is_swapped_back_everywhere_and_named() -> None:
    nodes = Nodes(["a", "b", "c"], marked())
    nodes.fail_after[nodes.node("b")] = 1  # b swaps readings, then fails on latest
    before = {n: dict(t) for n, t in nodes.tables.items()}
    with pytest.raises(ClusterSwapError) as err:
        shadows_on(nodes).exchange(TABLES)
    message = str(err.value)
    assert "node b:9000: Code: 57" in message and "latest_local already exists" in message
    assert "node a:9000" not in message.split("; swapped back")[0]
    assert nodes.tables == before  # the live tables as before, on every node
    back = [(n, s) for n, s in nodes.direct if s.startswith("EXCHANGE")]
    assert back == [
        (
            "a:9000",
            "EXCHANGE TABLES millrace.readings_local AND millrace.readings__shadow_local"
            ", millrace.latest_local AND millrace.latest__shadow_local",
        ),
        ("b:9000", "EXCHANGE TABLES millrace.readings_local AND millrace.readings__shadow_local"),
        (
            "c:9000",
            "EXCHANGE TABLES millrace.readings_local AND millrace.readings__shadow_local"
            ", millrace.latest_local AND millrace.latest__shadow_local",
        ),
    ]
    assert "swapped back on a:9000 (readings_local, latest_local), b:9000 (readings_local)" in (
        message
    )


def test_a_node_missing_a_table_stops_the_swap_before_it_begins() -> None:
    nodes = Nodes(["a", "b"], marked())
    del nodes.tables[nodes.node("b")]["latest__shadow_local"]
    before = {n: dict(t) for n, t in nodes.tables.items()}
    with pytest.raises(
        ClusterSwapError,
        match=r"node b:9000: millrace\.latest__shadow_local "
        "does not exist",
    ):
        shadows_on(nodes).exchange(TABLES)
    assert not [s for s in nodes.sql if s.startswith("EXCHANGE")]
    assert nodes.tables == before


def test_a_node_not_answering_is_waited_for_while_its_queued_exchange_runs() -> None:
    nodes = Nodes(["a", "b"], marked())
    nodes.late[nodes.node("b")] = 3  # its DDL worker runs the exchange a little later
    shadows_on(nodes).exchange(TABLES)
    for tables in nodes.tables.values():
        assert tables["latest_local"] == f"swap:{TAG}"
    assert nodes.looks[nodes.node("b")] == 3


def test_a_node_that_never_answers_fails_the_swap_saying_what_follows() -> None:
    nodes = Nodes(["a", "b"], marked())
    nodes.late[nodes.node("b")] = 0
    with pytest.raises(ClusterSwapError) as err:
        shadows_on(nodes, queued_wait_s=0.0).exchange(TABLES)
    message = str(err.value)
    assert "b:9000 did not swap" in message and "cannot be cancelled" in message
    assert "replay readings, latest again" in message
    # nothing swapped back: b's queued exchange would undo a rollback
    assert not [s for _, s in nodes.direct if s.startswith("EXCHANGE")]


def test_a_node_missing_from_the_answer_is_waited_for_too() -> None:
    nodes = Nodes(["a", "b"], marked())
    nodes.late[nodes.node("b")] = 2
    nodes.unlisted.add(nodes.node("b"))
    shadows_on(nodes).exchange(TABLES)
    assert nodes.tables[nodes.node("b")]["readings_local"] == f"swap:{TAG}"


def test_a_failure_beside_a_late_node_waits_for_it_then_swaps_every_node_back() -> None:
    nodes = Nodes(["a", "b", "c"], marked())
    before = {n: dict(t) for n, t in nodes.tables.items()}
    nodes.fail_after[nodes.node("a")] = 0
    nodes.late[nodes.node("c")] = 2  # its queued exchange runs during the wait
    with pytest.raises(ClusterSwapError, match="node a:9000: Code: 57") as err:
        shadows_on(nodes).exchange(TABLES)
    assert nodes.tables == before  # c swapped late, then back like b
    assert "did not swap" not in str(err.value)
    assert [n for n, s in nodes.direct if s.startswith("EXCHANGE")] == ["b:9000", "c:9000"]


def test_an_exchange_statement_failing_as_a_whole_leaves_every_node_as_it_was() -> None:
    nodes = Nodes(["a", "b"], marked())
    nodes.refuse = True
    before = {n: dict(t) for n, t in nodes.tables.items()}
    with pytest.raises(ClusterSwapError, match=r"not swapped .*Connection reset"):
        shadows_on(nodes).exchange(TABLES)
    assert nodes.tables == before


def test_recover_exchanges_only_where_the_swap_did_not_run() -> None:
    nodes = Nodes(["a", "b"], marked())
    a = nodes.node("a")
    for t in TABLES:  # a swapped before the crash, b did not
        pair = nodes.tables[a]
        pair[f"{t}_local"], pair[f"{t}__shadow_local"] = (
            pair[f"{t}__shadow_local"],
            pair[f"{t}_local"],
        )
    shadows = shadows_on(nodes)
    assert shadows.swapped(TABLES, "r9.") == TAG
    assert shadows.recover() == ["b:9000/latest", "b:9000/readings"]
    for tables in nodes.tables.values():
        assert tables["readings_local"] == tables["latest_local"] == f"swap:{TAG}"
    assert [n for n, s in nodes.direct if s.startswith("EXCHANGE")] == ["b:9000"]


def test_building_needs_every_node_under_one_tag() -> None:
    tables = {f"{t}{s}": "" for t in TABLES for s in ("_local", "__shadow")}
    tables |= {f"{t}__shadow_local": f"build:{TAG}" for t in TABLES}
    nodes = Nodes(["a", "b"], tables)
    assert shadows_on(nodes).building(TABLES) == TAG
    nodes.tables[nodes.node("b")]["latest__shadow_local"] = "build:other"
    assert shadows_on(nodes).building(TABLES) is None
    del nodes.tables[nodes.node("b")]["latest__shadow"]
    assert shadows_on(nodes).building(TABLES) is None


# --- a real cluster ---------------------------------------------------------------

SERVER_URL = os.environ.get("MILLRACE_CLICKHOUSE_URL")
SERVER_CLUSTER = os.environ.get("MILLRACE_CLICKHOUSE_CLUSTER")
NO_CLUSTER = (
    "MILLRACE_CLICKHOUSE_URL and MILLRACE_CLICKHOUSE_CLUSTER not both set: no ClickHouse "
    "cluster to replay on (none can run on this machine; the doubles above stand in)"
)


@pytest.mark.integration
@pytest.mark.skipif(not (SERVER_URL and SERVER_CLUSTER), reason=NO_CLUSTER)
async def test_replay_on_a_real_cluster(log: LocalEventLog) -> None:
    from millrace.projections.migrations import drop_projections, migrate
    from millrace.projections.replay_cluster import server_nodes
    from millrace.projections.store.clickhouse import ClickHouseServerStore

    assert SERVER_URL and SERVER_CLUSTER
    server = ClickHouseServerStore(SERVER_URL, cluster=SERVER_CLUSTER)
    try:
        drop_projections(server, cluster=SERVER_CLUSTER)
        migrate(server, cluster=SERVER_CLUSTER)
        sent = Sent()
        live = EmbeddedRuntime(log, ProjectionWriter(server), processors())
        await ingest(log, sent, 0, 30, live)
        await drain(live)
        server.execute(
            f"ALTER TABLE millrace.readings_local ON CLUSTER '{SERVER_CLUSTER}' "
            "DELETE WHERE signal = 's0' SETTINGS mutations_sync = 2"
        )
        shadows = ClusterShadows(server, SERVER_CLUSTER, server_nodes(SERVER_URL))
        parts = ReplayParts(log, server, live, shadows=shadows)
        assert await Replay(parts, "it1", ["readings", "latest"]).run(_quiet, asyncio.Event())
        check_equal_to_sent(server, sent)  # type: ignore[arg-type]
        for node, names in shadows.comments().items():
            assert names["readings_local"].startswith("swap:it1."), node
            assert not [n for n in names if "__shadow" in n], node
    finally:
        server.close()
