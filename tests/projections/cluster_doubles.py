"""Store doubles for a replay on a ClickHouse cluster (no cluster can run here).

* :class:`OneNodeCluster`: chDB as a cluster of one node. ``t_local`` and the front
  ``t`` are the same chDB table (so are ``t__shadow_local`` and ``t__shadow``): the
  statements ``ClusterShadows`` sends are recorded, then run with ``ON CLUSTER`` and
  ``_local`` taken out; a Distributed front's creation is already done by its local
  table's; ``clusterAllReplicas`` reads this node's ``system.tables``. So the replay's
  state machine runs on real tables with real data.
* :class:`Nodes`: several nodes as Python dicts of table -> comment, answering the
  statements ``ClusterShadows`` sends (the exchange swaps comments, as a table's
  comment moves with it), with failures scripted per node: for the swap's failure
  paths, which need more than one node.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from millrace.pipeline.errors import StoreError
from millrace.projections.replay_cluster_sql import Node
from millrace.projections.store.base import ProjectionStore, QueryResult

CLUSTER = "c1"
_ON = re.compile(r" ON CLUSTER '[^']*'")
_LOCAL = re.compile(r"\bmillrace\.(\w+?)_local\b")
DDL_COLUMNS = ["host", "port", "status", "error", "num_hosts_remaining", "num_hosts_active"]


class OneNodeCluster(ProjectionStore):
    """chDB seen as a one-node cluster (see the module doc)."""

    node = Node("node-1", 9000)

    def __init__(self, store: ProjectionStore) -> None:
        self.inner = store
        self.sql: list[str] = []
        self.settings: list[Mapping[str, Any] | None] = []

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        self.sql.append(sql)
        self.settings.append(settings)
        if "FROM system.clusters" in sql:
            return QueryResult(["host_name", "port"], [], [[self.node.host, self.node.port]])
        if "engine_full" in sql and params is not None:
            name = str(params["n"])
            if not name.endswith("_local"):  # a front: what the server would show
                return QueryResult(["engine_full"], [], [[_front(name)]])
            params = {**params, "n": name.removesuffix("_local")}
        if "ENGINE = Distributed(" in sql:
            return QueryResult([], [], [])  # the front is its local table here
        on = _ON.search(sql) is not None
        text = _LOCAL.sub(r"millrace.\1", _ON.sub("", sql))
        text = text.replace(
            f"clusterAllReplicas('{CLUSTER}', system.tables)", "system.tables"
        ).replace("concat(hostName(), ':', toString(tcpPort()))", f"'{self.node}'")
        res = self.inner.execute(text, params)
        if "comment" in res.columns:  # each table is a front and a local one
            rows = []
            for row in res.rows:
                *node, name, comment = row
                rows += [[*node, name, ""], [*node, f"{name}_local", comment]]
            return QueryResult(res.columns, res.types, rows)
        if on and sql.startswith("EXCHANGE"):
            return QueryResult(DDL_COLUMNS, [], [[self.node.host, self.node.port, 0, "", 0, 0]])
        return res

    def connect(self, node: Node) -> ProjectionStore:
        assert node == self.node
        return _Unclosed(self)

    def query_arrow(self, sql: str, params: Any = None, settings: Any = None) -> Any:
        return self.inner.query_arrow(sql, params, settings)

    def insert_arrow(self, sql: str, table: Any, settings: Any = None) -> None:
        self.inner.insert_arrow(sql, table, settings)


def _front(name: str) -> str:
    return f"Distributed('{CLUSTER}', 'millrace', '{name}_local', rand())"


class _Unclosed(ProjectionStore):
    """A node connection over the shared double: closing it leaves the session open."""

    def __init__(self, inner: ProjectionStore) -> None:
        self.inner = inner

    def execute(self, sql: str, params: Any = None, settings: Any = None) -> QueryResult:
        return self.inner.execute(sql, params, settings)

    def query_arrow(self, sql: str, params: Any = None, settings: Any = None) -> Any:
        raise NotImplementedError

    def insert_arrow(self, sql: str, table: Any, settings: Any = None) -> None:
        raise NotImplementedError


_PAIR = re.compile(r"millrace\.(\w+) AND millrace\.(\w+)")
_COMMENT = re.compile(r"^ALTER TABLE millrace\.(\w+) ON CLUSTER '[^']*' MODIFY COMMENT '(.*)'$")


class Nodes:
    """Several nodes as dicts of table -> comment (see the module doc).

    ``fail_after[node] = k``: that node's exchange ON CLUSTER swaps ``k`` pairs, then
    fails (``error`` text); ``late[node] = k``: that node does not answer the exchange
    in time and runs it on the ``k``-th look at it afterwards (0: never); ``unlisted``:
    late nodes missing from the answer; ``refuse``: the statement fails as a whole."""

    def __init__(self, names: list[str], tables: dict[str, str]) -> None:
        self.tables = {Node(n, 9000): dict(tables) for n in names}
        self.fail_after: dict[Node, int] = {}
        self.error = "Code: 57. DB::Exception: Table millrace.latest_local already exists"
        self.late: dict[Node, int] = {}
        self.unlisted: set[Node] = set()  # late nodes the answer leaves out
        self.refuse = False  # the EXCHANGE statement fails as a whole
        self.looks: dict[Node, int] = {}
        self.sql: list[str] = []  # on the cluster
        self.pending = ""  # the last exchange, run by a late node when it comes back
        self.direct: list[tuple[str, str]] = []  # (node, statement) over a node connection

    def node(self, name: str) -> Node:
        return Node(name, 9000)

    def _exchange(self, node: Node, sql: str, limit: int | None = None) -> None:
        for i, (a, b) in enumerate(_PAIR.findall(sql)):
            if limit is not None and i >= limit:
                raise StoreError(self.error)
            t = self.tables[node]
            if a not in t or b not in t:
                raise StoreError(
                    f"Code: 60. Table millrace.{a if a not in t else b} does not exist"
                )
            t[a], t[b] = t[b], t[a]

    def cluster(self) -> ProjectionStore:
        return _Fn(self._on_cluster)

    def connect(self, node: Node) -> ProjectionStore:
        return _Fn(lambda sql, settings: self._on_node(node, sql))

    def _on_cluster(self, sql: str, settings: Mapping[str, Any] | None) -> QueryResult:
        self.sql.append(sql)
        if "FROM system.clusters" in sql:
            return QueryResult(["host_name", "port"], [], [[n.host, n.port] for n in self.tables])
        if "clusterAllReplicas" in sql:
            found = [[str(n), t, c] for n, ts in self.tables.items() for t, c in ts.items()]
            return QueryResult(["node", "name", "comment"], [], found)
        if (m := _COMMENT.match(sql)) is not None:
            for ts in self.tables.values():
                ts[m.group(1)] = m.group(2)
            return QueryResult([], [], [])
        if sql.startswith("EXCHANGE"):
            if self.refuse:
                raise StoreError("Code: 210. Connection reset by peer (initiator)")
            rows: list[list[Any]] = []
            for node in self.tables:
                if node in self.late:
                    if node not in self.unlisted:
                        rows.append([node.host, node.port, None, None, 1, 0])
                    continue
                try:
                    self._exchange(node, sql, self.fail_after.get(node))
                    rows.append([node.host, node.port, 0, "", 0, 0])
                except StoreError as exc:
                    rows.append([node.host, node.port, 57, str(exc), 0, 0])
            self.pending = sql
            return QueryResult(DDL_COLUMNS, [], rows)
        return QueryResult([], [], [])

    def _on_node(self, node: Node, sql: str) -> QueryResult:
        self.direct.append((str(node), sql))
        if "FROM system.tables" in sql:
            if node in self.late:  # the queued exchange runs on the k-th look
                self.looks[node] = self.looks.get(node, 0) + 1
                if self.late[node] and self.looks[node] >= self.late[node]:
                    del self.late[node]
                    self._exchange(node, self.pending)
            return QueryResult(
                ["name", "comment"], [], [list(x) for x in self.tables[node].items()]
            )
        if sql.startswith("EXCHANGE"):
            self._exchange(node, sql)
        return QueryResult([], [], [])


class _Fn(ProjectionStore):
    def __init__(self, fn: Callable[[str, Mapping[str, Any] | None], QueryResult]) -> None:
        self.fn = fn

    def execute(self, sql: str, params: Any = None, settings: Any = None) -> QueryResult:
        return self.fn(sql, settings)

    def query_arrow(self, sql: str, params: Any = None, settings: Any = None) -> Any:
        raise NotImplementedError

    def insert_arrow(self, sql: str, table: Any, settings: Any = None) -> None:
        raise NotImplementedError
