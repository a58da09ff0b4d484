"""Ordered SQL migrations in ``projections/sql/NNNN_name.sql``, applied idempotently.

Every statement is written to be re-runnable (``IF NOT EXISTS``) and the ledger table
``millrace.schema_migrations`` records what ran, so applying at every start is cheap
and safe. The same files run on chDB and on a ClickHouse server.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from millrace.pipeline.errors import StoreError
from millrace.projections.store.base import ProjectionStore

SQL_DIR = Path(__file__).parent / "sql"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

#: tables holding projections (dropped and rebuilt by replay); progress goes with them
PROJECTION_TABLES = (
    "readings",
    "agg_1m",
    "agg_5m",
    "agg_1h",
    "latest",
    "deadletter",
    "identities",
    "identity_seen",
    "resource_defs",
    "device_metrics",
    "audits",
    "resource_states",
    "resource_runners",
    "alarms",
    "alarm_annotations",
    "alarm_rules",
    # the telemetry fold's applied batch ids go with the readings they describe: a
    # rebuild (or a restore into dropped projections) must not find stale ids
    "applied_batches",
    "tasks",
    "services",
    "progress",
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str


def split_statements(sql: str) -> list[str]:
    """Split on ``;`` at line ends, dropping ``--`` comment lines."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    text = "\n".join(lines)
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", text) if s.strip()]


def load_migrations(directory: Path = SQL_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise StoreError(f"migration file name must be NNNN_name.sql: {path.name}")
        text = path.read_text()
        found.append(
            Migration(
                version=int(m.group(1)),
                name=m.group(2),
                statements=tuple(split_statements(text)),
                checksum=hashlib.sha256(text.encode()).hexdigest()[:16],
            )
        )
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"duplicate migration versions in {directory}")
    return found


def applied_versions(store: ProjectionStore) -> set[int]:
    try:
        res = store.execute("SELECT version FROM millrace.schema_migrations FINAL")
    except StoreError:
        return set()
    return {int(r[0]) for r in res.rows}


def migrate(
    store: ProjectionStore, directory: Path = SQL_DIR, cluster: str | None = None
) -> list[int]:
    """Apply the migrations not yet applied; return the versions applied now.

    With ``cluster``, each migration runs as its cluster variant (``projections.cluster``:
    replicated ``_local`` tables and Distributed tables over them, ``ON CLUSTER``),
    generated from the same files; the ledger is then a Distributed table too.
    """
    done = applied_versions(store)
    variants: dict[int, list[str]] = {}
    if cluster is not None:
        from millrace.projections.cluster import cluster_statements

        variants = {v: stmts for v, _, stmts in cluster_statements(cluster, directory)}
    ran = []
    for mig in load_migrations(directory):
        if mig.version in done:
            continue
        for stmt in variants.get(mig.version, mig.statements):
            store.execute(stmt)
        store.execute(
            "INSERT INTO millrace.schema_migrations (version, name, checksum) "
            "VALUES ({v:UInt32}, {n:String}, {c:String})",
            params={"v": mig.version, "n": mig.name, "c": mig.checksum},
        )
        ran.append(mig.version)
    return ran


def drop_projections(store: ProjectionStore, cluster: str | None = None) -> None:
    """Drop every projection table and forget their migrations (replay rebuilds).

    With ``cluster``, the Distributed tables and their ``_local`` tables on every node.
    """
    names = [f"millrace.{t}" for t in (*PROJECTION_TABLES, "schema_migrations")]
    if cluster is not None:
        from millrace.projections.cluster import on_cluster

        on = f" {on_cluster(cluster)}"
        names = [f"{n}{suffix}{on}" for n in names for suffix in ("", "_local")]
    for name in names:
        store.execute(f"DROP TABLE IF EXISTS {name} SYNC")
