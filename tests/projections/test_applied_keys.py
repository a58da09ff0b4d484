"""ProjectionWriter.applied_keys on chDB: a partition's unexpired ids in pages, in id
order, every row of an id in one page (the batch ledger streams a partition's ids into
its filter with it, pipeline/batch_ledger.py)."""

from __future__ import annotations

import pyarrow as pa

from millrace.pipeline.batches import Applied
from millrace.pipeline.tables import APPLIED_BATCHES_SCHEMA
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.tables import TABLES
from millrace.projections.writer import ProjectionWriter


def rows(*items: tuple[int, str, str, int]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "partition": p,
                "batch_key": k,
                "origin": o,
                "identity": "dev",
                "applied_us": 1,
                "expires_us": e,
            }
            for p, k, o, e in items
        ],
        schema=APPLIED_BATCHES_SCHEMA,
    )


def test_pages_hold_every_row_of_their_last_id(store: ChdbStore) -> None:
    # two inserts: "b" has two rows until a merge (a restore's row and the fold's)
    store.execute("SYSTEM STOP MERGES millrace.applied_batches")
    try:
        pages(store)
    finally:
        store.execute("SYSTEM START MERGES millrace.applied_batches")


def pages(store: ChdbStore) -> None:
    insert = TABLES["applied_batches"].insert
    store.insert_arrow(
        insert,
        rows(
            (0, "a", "telemetry/0/1", 100),
            (0, "b", "telemetry/0/2", 100),
            (0, "c", "telemetry/0/3", 100),
            (0, "d", "telemetry/0/4", 5),  # expired at 10
            (1, "e", "telemetry/1/1", 100),  # another partition
        ),
    )
    store.insert_arrow(insert, rows((0, "b", "restore:t/x", 200)))
    writer = ProjectionWriter(store)
    first = writer.applied_keys(0, 10, None, 2)
    assert sorted(first) == [("a", 100), ("b", 100), ("b", 200)]
    assert writer.applied_keys(0, 10, "b", 2) == [("c", 100)]
    assert writer.applied_keys(0, 10, "c", 2) == []
    assert sorted(writer.applied_keys(0, 0, None, 10)) == sorted(
        [("a", 100), ("b", 100), ("b", 200), ("c", 100), ("d", 5)]
    )


def test_an_id_applied_again_reads_as_its_first_application(store: ChdbStore) -> None:
    """Applied at offset 1 until 100, again (its window over) at offset 9 until 250, in
    two inserts: read from 10, the first application with its own expiry (a step redone
    over the moment it expired applies it again at offset 9, pipeline/batch_ledger.py).
    Merges stopped: the ReplacingMergeTree keeps the last row of an id once it merges
    (or within one insert), and then the first application is not known any more."""
    store.execute("SYSTEM STOP MERGES millrace.applied_batches")
    try:
        insert = TABLES["applied_batches"].insert
        store.insert_arrow(insert, rows((0, "x", "telemetry/0/1", 100)))
        again = rows((0, "x", "telemetry/0/9", 250))
        applied = pa.array([150], pa.int64())
        again = again.set_column(again.schema.get_field_index("applied_us"), "applied_us", applied)
        store.insert_arrow(insert, again)
        writer = ProjectionWriter(store)
        assert writer.applied_batches(0, 10) == {"x": Applied("telemetry/0/1", 100)}
        assert writer.applied_batches(0, 100, ["x"]) == {"x": Applied("telemetry/0/9", 250)}
    finally:
        store.execute("SYSTEM START MERGES millrace.applied_batches")
