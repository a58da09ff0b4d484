"""Checkpoints in the store: positions and state of a stage saved in one row."""

from __future__ import annotations

import json

import pyarrow as pa

from millrace.pipeline.alarms.runner import Checkpoint, Checkpoints
from millrace.pipeline.log.base import TopicPartition
from millrace.projections.store.base import ProjectionStore
from millrace.projections.tables import TABLES


class StoreCheckpoints(Checkpoints):
    """:class:`Checkpoints` on ``millrace.checkpoints`` (one row per save; the highest
    version wins, so a save is atomic: a crash mid-insert leaves the previous one)."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    def load(self, name: str) -> Checkpoint | None:
        rows = self.store.execute(
            "SELECT version, positions, state, outbox FROM millrace.checkpoints FINAL "
            "WHERE name = {n:String}",
            {"n": name},
        ).rows
        if not rows:
            return None
        version, positions, state, outbox = rows[0]
        return Checkpoint(
            version=int(version),
            positions={
                TopicPartition(t, int(p)): int(o)
                for t, p, o in json.loads(positions)  # [[topic, partition, offset], ...]
            },
            state=str(state),
            outbox=str(outbox),
        )

    def save(self, name: str, checkpoint: Checkpoint, now_us: int) -> None:
        positions = json.dumps(
            sorted([tp.topic, tp.partition, off] for tp, off in checkpoint.positions.items())
        )
        table = pa.Table.from_pydict(
            {
                "name": [name],
                "version": pa.array([checkpoint.version], pa.uint64()),
                "positions": [positions],
                "state": [checkpoint.state],
                "outbox": [checkpoint.outbox],
                "updated_us": pa.array([now_us], pa.int64()),
            },
            schema=TABLES["checkpoints"].rows.schema,
        )
        self.store.insert_arrow(
            TABLES["checkpoints"].insert,
            table,
            settings={"insert_deduplication_token": f"{name}:{checkpoint.version}"},
        )
