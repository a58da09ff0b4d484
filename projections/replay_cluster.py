"""Replay while running on a ClickHouse cluster: shadows on every node, EXCHANGE ON CLUSTER.

On a cluster (``distributed.clickhouse_cluster``, ``projections.cluster``) a projection
``t`` is a Distributed table ``millrace.t`` over each node's replicated
``millrace.t_local``. :class:`ClusterShadows` is the replay's :class:`~millrace.
projections.shadow.Shadows` there; the steps of ``projections.replay`` stay as they are:

* **create** (ON CLUSTER): ``t__shadow_local`` on every node ``AS t_local`` with the
  live table's engine (read from ``system.tables.engine_full``: same ordering, TTL,
  settings) but its own Keeper path ``/clickhouse/tables/{shard}/millrace/
  t__replay_<tag>`` (``EXCHANGE`` and ``RENAME`` run on one server and do not move a
  replicated table's Keeper path: the shadow must not be a replica of the live table),
  commented ``build:<tag>``, and the front ``t__shadow``, a Distributed table with the
  live front's sharding key, through which the shadow fold writes and reads;
* **mark** (ON CLUSTER): comments on every node's local tables (``ALTER … MODIFY
  COMMENT`` applies to one replica only, so it goes to every node; ClickHouse ≥ 23.9);
* **exchange**, under the hold: a check that every node of ``system.clusters`` holds
  every live and shadow local table with the expected comments (through
  ``clusterAllReplicas``), then one ``EXCHANGE TABLES t_local AND t__shadow_local, …
  ON CLUSTER`` (``distributed_ddl_output_mode = 'never_throw'``: a status per node).
  The Distributed fronts are not exchanged: they name ``t_local``, which each node
  resolves at query time, so they read the new tables as soon as the node swapped.
  The hold lasts until every node answered and its comments show the swap;
* **drop** (ON CLUSTER) of the old tables, now the shadows, and of the shadow fronts.

What it guarantees: on each node the swap is atomic per table (``EXCHANGE`` of one
pair on the Atomic database engine); every node swaps while the live fold is held, so
old and new tables on every node are at the same log position and no reading is lost
or doubled. What it does not: the nodes do not swap at one instant; while the
``EXCHANGE`` runs, a query spanning shards may read the new table on one shard and the
old one on another (both complete, at the same position: it sees either projection per
shard, never a half-built one). Several pairs on one node are exchanged one after the
other (ClickHouse's multi-pair ``EXCHANGE`` is sequential), as on a single server.

A failed swap: nodes that have not answered within ``swap_timeout_s`` (or that the
answer does not list) keep the ``EXCHANGE`` in their distributed DDL queue and run it
when they can; it cannot be cancelled, so the replay first waits for them, holding the
live fold, up to ``queued_wait_s``, looking at each over a direct connection. Then, when
a node reported an error, the pairs swapped anywhere (a failing node may have swapped
some pairs before its error) are swapped back, each over a direct connection to its
node (``system.clusters`` host and port, the store's credentials) and only where that
node's comments show the swap, and the replay fails naming each node, its error and
what was swapped back: the live tables are as before. A node still not swapped after
the wait is named too, with what follows: its queued exchange will swap in tables that
lack the rows folded after the hold (replay those projections again). An
``EXCHANGE`` statement that fails as a whole (the connection to the initiator lost)
with no node swapped fails the replay with the live tables untouched; were it queued
nonetheless and run later, those tables would lack the rows folded since (not
detected: a known limit).
A crash of the replaying process after the exchange was queued: the queue runs it on
every node; the task's rerun (``Replay._finish``) exchanges, per node, the pairs still
marked and not swapped, when the live fold has not moved, else drops the shadows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from urllib.parse import urlsplit, urlunsplit

from millrace.pipeline.errors import MillraceError, StoreError
from millrace.projections.cluster import on_cluster
from millrace.projections.replay_cluster_sql import (
    DB,
    NODE_EXPR,
    SHADOW_LOCAL,
    ClusterSwapError,
    Node,
    NodeStatus,
    comment_sql,
    create_sql,
    drop_sql,
    exchange_sql,
    local,
    quote,
    shadow_local,
    statuses_of,
)
from millrace.projections.shadow import BUILD, SWAP, shadow_name
from millrace.projections.store.base import ProjectionStore

log = logging.getLogger("millrace.replay")


#: a connection to one node (a rollback or a recovery runs there alone)
NodeStore = Callable[[Node], ProjectionStore]


def server_nodes(url: str, pool_size: int = 1) -> NodeStore:
    """A :data:`NodeStore` over ClickHouse servers: ``url`` (the cluster store's URL,
    with its credentials and settings) pointed at each node's host and port."""

    def connect(node: Node) -> ProjectionStore:
        from millrace.projections.store.clickhouse import ClickHouseServerStore

        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        host = f"[{node.host}]" if ":" in node.host else node.host
        netloc = f"{user}@{host}:{node.port}" if user else f"{host}:{node.port}"
        return ClickHouseServerStore(urlunsplit(parts._replace(netloc=netloc)), pool_size)

    return connect


class ClusterShadows:
    """:class:`~millrace.projections.shadow.Shadows` on every node of ``cluster`` (see
    the module doc). ``store`` reaches the cluster (any node); ``nodes`` connects to
    one node, for the rollback and the recovery that must run on chosen nodes only."""

    def __init__(
        self,
        store: ProjectionStore,
        cluster: str,
        nodes: NodeStore,
        swap_timeout_s: int = 60,
        queued_wait_s: float = 300.0,
        poll_s: float = 1.0,
    ) -> None:
        on_cluster(cluster)  # checks the name
        self.store = store
        self.cluster = cluster
        self.nodes = nodes
        self.swap_timeout_s = swap_timeout_s
        self.queued_wait_s = queued_wait_s
        self.poll_s = poll_s

    # --- what the nodes hold -------------------------------------------------------

    def members(self) -> list[Node]:
        res = self.store.execute(
            "SELECT host_name, port FROM system.clusters WHERE cluster = {c:String} "
            "ORDER BY shard_num, replica_num",
            params={"c": self.cluster},
        )
        return [Node(str(h), int(p)) for h, p in res.rows]

    def comments(self) -> dict[str, dict[str, str]]:
        """Every node (``host:port`` as the node names itself) -> its millrace tables'
        comments (a node that cannot be reached fails the query, naming it)."""
        res = self.store.execute(
            f"SELECT {NODE_EXPR} AS node, name, comment "
            f"FROM clusterAllReplicas({quote(self.cluster)}, system.tables) "
            f"WHERE database = '{DB}' AND NOT is_temporary"
        )
        out: dict[str, dict[str, str]] = {}
        for node, name, comment in res.rows:
            out.setdefault(str(node), {})[str(name)] = str(comment)
        return out

    def _engine(self, name: str) -> str:
        res = self.store.execute(
            "SELECT engine_full FROM system.tables WHERE database = {d:String} "
            "AND name = {n:String}",
            params={"d": DB, "n": name},
        )
        if not res.rows:
            raise ClusterSwapError(f"{DB}.{name} does not exist (is the cluster migrated?)")
        return str(res.rows[0][0])

    # --- the Shadows port --------------------------------------------------------

    def create(self, tables: Sequence[str], tag: str) -> None:
        for table in tables:
            engines = self._engine(local(table)), self._engine(table)
            for sql in create_sql(table, tag, self.cluster, *engines):
                self.store.execute(sql)

    def building(self, tables: Sequence[str]) -> str | None:
        """The tag every node's shadows carry, if every node has them all (with their
        fronts) under one tag; else None (start afresh)."""
        found = self.comments()
        if len(found) < len(self.members()):
            return None
        tags = set()
        for names in found.values():
            for table in tables:
                comment = names.get(shadow_local(table))
                if comment is None or shadow_name(table) not in names:
                    return None
                prefix = next((p for p in (BUILD, SWAP) if comment.startswith(p)), None)
                if prefix is None:
                    return None
                tags.add(comment[len(prefix) :])
        return tags.pop() if len(tags) == 1 else None

    def swapped(self, tables: Sequence[str], prefix: str) -> str | None:
        """The tag starting with ``prefix`` whose exchange began on some node."""
        for names in self.comments().values():
            for table in tables:
                comment = names.get(local(table), "")
                if comment.startswith(f"{SWAP}{prefix}"):
                    return comment[len(SWAP) :]
        return None

    def mark(self, tables: Sequence[str], tag: str) -> None:
        for table in tables:
            self.store.execute(comment_sql(local(table), "", self.cluster))
        for table in tables:
            self.store.execute(comment_sql(shadow_local(table), SWAP + tag, self.cluster))

    def exchange(self, tables: Sequence[str]) -> None:
        """Swap every pair on every node, or on none (see the module doc)."""
        names = list(tables)
        tag = self._ready(names)
        members = self.members()
        try:
            res = self.store.execute(
                exchange_sql(names, self.cluster),
                settings={
                    "distributed_ddl_output_mode": "never_throw",
                    "distributed_ddl_task_timeout": self.swap_timeout_s,
                },
            )
        except StoreError as exc:
            if not self._any_swapped(names, tag):
                raise ClusterSwapError(
                    f"not swapped (the live tables are untouched): {exc}"
                ) from exc
            # the exchange was queued and ran somewhere: the others are late
            statuses = [NodeStatus(m, None, "") for m in members]
        else:
            statuses = statuses_of(res.columns, res.rows)
        answered = {s.node for s in statuses}
        # a node the answer does not list has not run it yet: late as well
        late = [s.node for s in statuses if s.status is None]
        late += [m for m in members if m not in answered]
        stuck = self._await(late, names, tag) if late else []
        failed = [s for s in statuses if s.status not in (0, None)]
        if failed:
            undone = self._roll_back(names, tag, sorted(answered | set(members)))
            raise ClusterSwapError(
                "the swap failed on "
                + "; ".join(f"node {s.node}: {s.error.strip()[:300]}" for s in failed)
                + f"; swapped back on {', '.join(undone) or 'no node'}: the live tables"
                f" {', '.join(local(t) for t in names)} are as before on every node"
                + (f" but {self._stuck(stuck, names)}" if stuck else "")
            )
        if stuck:
            raise ClusterSwapError(
                f"the other nodes keep the new tables and the live fold resumes, but "
                f"{self._stuck(stuck, names)}"
            )
        missing = self._not_swapped(names, tag)
        if missing:
            raise ClusterSwapError(f"the swap is not visible on every node: {missing}")

    def drop(self, tables: Sequence[str]) -> None:
        for table in tables:
            for sql in drop_sql(table, self.cluster):
                self.store.execute(sql)

    def recover(self) -> list[str]:
        """After a crash during the swap (the live fold did not move since): on each
        node, exchange the pairs still marked and not swapped there."""
        done: list[str] = []
        # tags some node's live table carries: their exchange began
        begun = {
            c
            for names in self.comments().values()
            for n, c in names.items()
            if c.startswith(SWAP) and not n.endswith(SHADOW_LOCAL)
        }
        if not begun:
            return done
        for node in self.members():
            with closing(self.nodes(node)) as one:
                here = _local_comments(one)
                pending = [
                    n[: -len(SHADOW_LOCAL)]
                    for n, c in here.items()
                    if n.endswith(SHADOW_LOCAL) and c in begun
                ]
                if pending:
                    one.execute(exchange_sql(sorted(pending), None))
                    log.warning("replay: finished an interrupted swap on %s of %s", node, pending)
                    done.extend(f"{node}/{t}" for t in sorted(pending))
        return done

    def forget(self, consumer: str) -> None:
        self.store.execute(
            f"DELETE FROM {DB}.{local('progress')} {on_cluster(self.cluster)} "
            f"WHERE consumer = {quote(consumer)}"
        )

    # --- the swap's checks ------------------------------------------------------

    def _ready(self, tables: list[str]) -> str:
        """The tag of the marked shadows, once every node holds every pair with the
        marks (else :class:`ClusterSwapError` naming node and table: nothing swapped)."""
        found = self.comments()
        members = self.members()
        problems: list[str] = []
        if len(found) < len(members):
            problems.append(
                f"{len(found)} of {len(members)} nodes answered ({', '.join(sorted(found))})"
            )
        tags = set()
        for node, names in sorted(found.items()):
            for table in tables:
                live, sh = names.get(local(table)), names.get(shadow_local(table))
                if live is None or sh is None:
                    absent = local(table) if live is None else shadow_local(table)
                    problems.append(f"node {node}: {DB}.{absent} does not exist")
                elif not sh.startswith(SWAP) or live.startswith(SWAP):
                    problems.append(f"node {node}: {DB}.{shadow_local(table)} is not marked")
                else:
                    tags.add(sh[len(SWAP) :])
        if len(tags) > 1:
            problems.append(f"the shadows carry different tags {sorted(tags)}")
        if problems or not tags:
            raise ClusterSwapError(
                "not swapped (the live tables are untouched): " + "; ".join(problems)
            )
        return tags.pop()

    def _not_swapped(self, tables: list[str], tag: str) -> list[str]:
        found = self.comments()
        return [
            f"{node}/{local(t)}"
            for node, names in sorted(found.items())
            for t in tables
            if names.get(local(t)) != SWAP + tag
        ]

    def _roll_back(self, tables: list[str], tag: str, nodes: list[Node]) -> list[str]:
        """Swap back, on each node, the pairs its comments show swapped."""
        undone = []
        for node in sorted(set(nodes)):
            with closing(self.nodes(node)) as one:
                here = _local_comments(one)
                back = [t for t in tables if here.get(local(t)) == SWAP + tag]
                if back:
                    one.execute(exchange_sql(back, None))
                    undone.append(f"{node} ({', '.join(local(t) for t in back)})")
        return undone

    def _any_swapped(self, tables: list[str], tag: str) -> bool:
        return any(
            names.get(local(t)) == SWAP + tag for names in self.comments().values() for t in tables
        )

    def _stuck(self, nodes: list[Node], tables: list[str]) -> str:
        return (
            f"node(s) {', '.join(map(str, nodes))} did not swap within "
            f"{self.swap_timeout_s + self.queued_wait_s:.0f} s: the EXCHANGE stays in "
            "their distributed DDL queue and runs when they are back (it cannot be "
            "cancelled), and their tables will then lack the rows folded from now on: "
            f"replay {', '.join(tables)} again once they are back"
        )

    def _await(self, late: list[Node], tables: list[str], tag: str) -> list[Node]:
        """Wait (holding the live fold) for nodes whose queued exchange has not run;
        the nodes still not swapped after ``queued_wait_s``."""
        deadline = time.monotonic() + self.queued_wait_s
        waiting = sorted(set(late))
        while waiting:
            still = []
            for node in waiting:
                try:
                    with closing(self.nodes(node)) as one:
                        here = _local_comments(one)
                except MillraceError:
                    still.append(node)
                    continue
                if any(here.get(local(t)) != SWAP + tag for t in tables):
                    still.append(node)
            waiting = still
            if waiting and time.monotonic() >= deadline:
                break
            if waiting:
                time.sleep(self.poll_s)
        return waiting


def _local_comments(store: ProjectionStore) -> dict[str, str]:
    res = store.execute(
        f"SELECT name, comment FROM system.tables WHERE database = '{DB}' AND NOT is_temporary"
    )
    return {str(n): str(c) for n, c in res.rows}
