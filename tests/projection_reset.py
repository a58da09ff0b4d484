"""Empty the projections of the session's chDB store between tests, fast.

``drop_projections`` + ``migrate`` takes one to two seconds on chDB (twenty-odd tables
dropped and every migration run again); a hundred tests and several hypothesis tests do
it per test or per example. ``TRUNCATE`` leaves the same state in milliseconds whenever
the schema is still exactly what a drop and migrate would build: the same tables with
the same definitions and the same migrations recorded. TRUNCATE also clears a
MergeTree's insert-deduplication log, so a batch inserted again with an earlier
deduplication token is stored, as after a drop. Whenever anything differs (a test
dropped, altered or half-migrated a table), the projections are dropped and migrated as
before, and that state becomes the reference.

Tests whose subject is a rebuild from dropped projections (a replay, a restore into
dropped tables) keep calling ``drop_projections`` themselves.
"""

from __future__ import annotations

from millrace.pipeline.errors import StoreError
from millrace.projections.migrations import PROJECTION_TABLES, drop_projections, migrate
from millrace.projections.store.base import ProjectionStore

Schema = tuple[tuple[tuple[str, str], ...], tuple[tuple[int, str], ...]]

# per store object: the schema a drop and migrate left last
_reference: dict[int, Schema] = {}


def schema_of(store: ProjectionStore) -> Schema:
    """Every table and view of the ``millrace`` database with its definition, and the
    migrations recorded (the hidden inner tables of materialized views are named anew
    on each creation and left out)."""
    tables = store.execute(
        "SELECT name, create_table_query FROM system.tables "
        "WHERE database = 'millrace' AND NOT startsWith(name, '.inner') ORDER BY name"
    ).rows
    try:
        ledger = store.execute(
            "SELECT version, checksum FROM millrace.schema_migrations FINAL ORDER BY version"
        ).rows
    except StoreError:  # no ledger: the reference cannot match
        ledger = []
    return (
        tuple((str(n), str(q)) for n, q in tables),
        tuple((int(v), str(c)) for v, c in ledger),
    )


def empty_projections(store: ProjectionStore) -> None:
    """Leave every projection table empty and the schema fully migrated, exactly as
    ``drop_projections`` then ``migrate`` would (tables outside the projections, such as
    checkpoints, keep their rows either way)."""
    reference = _reference.get(id(store))
    if reference is not None and schema_of(store) == reference:
        for name in PROJECTION_TABLES:
            store.execute(f"TRUNCATE TABLE millrace.{name} SYNC")
        return
    drop_projections(store)
    migrate(store)
    _reference[id(store)] = schema_of(store)
