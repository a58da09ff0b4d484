"""What analyst SQL may reach, and within which limits: the allow-lists of tables and
functions, the catalog of the session a parse tree is checked against, the limits set
on every query and the error a refusal raises. The checks themselves are in
``projections.sandbox``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from millrace.pipeline.errors import MillraceError
from millrace.projections.store.base import ProjectionStore

#: what every analyst may query (``millrace.<table>``); the secrets stay out:
#: ``identities`` (credential hashes) is reached through ``identities_public`` and
#: ``deadletter`` (payloads of rejected identity events) through ``deadletter_public``
#: (``projections/sql/0012_analyst_views.sql``); ``checkpoints`` and
#: ``schema_migrations`` are the engine's own
ANALYST_TABLES: frozenset[str] = frozenset(
    f"millrace.{t}"
    for t in (
        "readings",
        "agg_1m",
        "agg_5m",
        "agg_1h",
        "latest",
        "identities_public",
        "identity_seen",
        "resource_defs",
        "device_metrics",
        "resource_states",
        "resource_runners",
        "alarms",
        "alarm_annotations",
        "alarm_rules",
        "deadletter_public",
        "progress",
    )
)
#: what only roles allowed to read audits (operator, admin) may query besides
AUDIT_TABLES: frozenset[str] = frozenset({"millrace.audits"})

#: functions that read files, the network, dictionaries, Join tables, settings or the
#: server's machine, or only burn a thread (lower-cased; ``dict*`` by prefix)
DENIED_FUNCTIONS: frozenset[str] = frozenset(
    {
        "file",
        "joinget",
        "joingetornull",
        "hascolumnintable",
        "getsetting",
        "getsettingordefault",
        "getserversetting",
        "getmergetreesetting",
        "getmacro",
        "catboostevaluate",
        "modelevaluate",
        "sleep",
        "sleepeachrow",
        "showcertificate",
        "generateserialid",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "addresstoline",
        "addresstolinewithinlines",
        "addresstosymbol",
        "demangle",
        "logtrace",
        "getclienthttpheader",
    }
)
#: function name prefixes denied like DENIED_FUNCTIONS
DENIED_PREFIXES = ("dict", "__")


def allowed_tables(read_audits: bool) -> frozenset[str]:
    """The allow-list of a caller; ``read_audits`` for roles that may read audits."""
    return ANALYST_TABLES | AUDIT_TABLES if read_audits else ANALYST_TABLES


@dataclass(frozen=True)
class SqlLimits:
    """The server's limits on one analyst query (ClickHouse settings)."""

    max_execution_time: float = 10.0
    max_memory_usage: int = 1 << 30
    max_rows_to_read: int = 1_000_000_000
    max_bytes_to_read: int = 10 << 30
    max_result_rows: int = 100_000
    max_result_bytes: int = 32 << 20
    max_threads: int = 1

    def settings(self) -> dict[str, Any]:
        return {
            "readonly": 1,
            "max_threads": self.max_threads,
            "max_execution_time": self.max_execution_time,
            "timeout_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_usage,
            "max_rows_to_read": self.max_rows_to_read,
            "max_bytes_to_read": self.max_bytes_to_read,
            "read_overflow_mode": "throw",
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
        }


class QueryRejectedError(MillraceError, ValueError):
    """Analyst SQL refused before it ran, or stopped by a limit. ``status``: 400 (the
    query is malformed, failed or hit a limit) or 403 (it reaches for something the
    sandbox does not allow); ``code``: the API's error code; the message names the
    offender."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Catalog:
    """What the session's ClickHouse holds that a tree is checked against."""

    database: str = "default"
    #: tables (and temporary tables) of the current database
    local_tables: frozenset[str] = frozenset()
    databases: frozenset[str] = frozenset({"default", "system", "millrace"})
    #: lower-cased names of the table functions, and of those that are also functions
    table_functions: frozenset[str] = frozenset()
    also_functions: frozenset[str] = frozenset()
    #: user-defined functions (SQL, executable)
    udfs: frozenset[str] = frozenset()


_CATALOG_SQL = (
    "WITH (SELECT groupArray(lower(name)) FROM system.table_functions) AS tf "
    "SELECT currentDatabase(), "
    "(SELECT groupArray(name) FROM system.tables "
    "WHERE database = currentDatabase() OR is_temporary), "
    "(SELECT groupArray(name) FROM system.databases), tf, "
    "groupArrayIf(lower(name), has(tf, lower(name))), "
    "groupArrayIf(name, origin != 'System') "
    "FROM system.functions"
)


def load_catalog(store: ProjectionStore) -> Catalog:
    """The catalog, in one query (one pass over ``system.functions``, ~15 ms)."""
    db, local, dbs, tfs, both, udfs = store.execute(_CATALOG_SQL).rows[0]
    return Catalog(
        db, frozenset(local), frozenset(dbs), frozenset(tfs), frozenset(both), frozenset(udfs)
    )
