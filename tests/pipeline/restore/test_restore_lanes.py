"""Files of different partitions folded at the same time (``task.file_queues``, the
worker handler's two lanes): how files are shared out (hypothesis), and a restore whose
two partitions' files provably fold together (a write of one partition's file waits
until the other partition's file wrote a chunk: folded one at a time, it would never
come) equals one clean pass computed in the test, exactly once under a redo."""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.archive.format import HOUR_US, Manifest
from millrace.pipeline.restore import KIND, RestoreParams
from millrace.pipeline.restore.offload import OffloadedRestoreTask, RestoreWorkers
from millrace.pipeline.restore.sources import RestoreFile
from millrace.pipeline.restore.task import file_queues
from millrace.pipeline.sink import SinkBatch
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.replay import forget
from millrace.projections.restore import held_readings
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.pipeline.restore.helpers import T0, Runner, archive, check, telemetry_log


def _file(n: int, topic: str | None, partition: int, readings: int) -> RestoreFile:
    if topic is None:  # by URL: no manifest
        return RestoreFile(f"https://x/{n}.avro")
    m = Manifest(
        1, topic, partition, f"{topic}/{partition}/{n}.avro", 0, 0, 1, readings,
        0, 0, 0, 0, 0, "", "zstd", "", 0,
    )  # fmt: skip
    return RestoreFile(m.path, m, None, 0, readings, 1, ident=m.path)


_files = st.lists(
    st.tuples(
        st.sampled_from([None, "telemetry", "telemetry", "identity", "status"]),
        st.integers(0, 4),
        st.integers(0, 1000),
    ),
    max_size=24,
).map(lambda xs: [_file(n, t, p, r) for n, (t, p, r) in enumerate(xs)])


def _lane_key(f: RestoreFile) -> tuple[str, int]:
    m = f.manifest
    if m is None:
        return ("", -1)
    return (m.topic, m.partition if m.topic == "telemetry" else -1)


@settings(max_examples=300, deadline=None)
@given(_files, st.integers(1, 4))
def test_file_queues_keep_each_partition_whole_and_in_order(
    files: list[RestoreFile], lanes: int
) -> None:
    queues = file_queues(files, lanes)
    # every file once
    assert sorted(f.name for q in queues for f in q) == sorted(f.name for f in files)
    where: dict[tuple[str, int], int] = {}
    for i, q in enumerate(queues):
        # in the order given
        positions = [files.index(f) for f in q]
        assert positions == sorted(positions)
        for f in q:
            # a telemetry partition, another topic, or the URL files: one queue each
            assert where.setdefault(_lane_key(f), i) == i
    if lanes == 1:
        assert queues == [files]
    groups = {_lane_key(f) for f in files}
    assert len(queues) == (1 if lanes == 1 or len(files) <= 1 else min(lanes, len(groups)))


class _MeetingSink(ProjectionWriter):
    """Partition 0's first write waits until a chunk of partition 1 is written."""

    def __init__(self, store: ChdbStore) -> None:
        super().__init__(store)
        self.other_wrote = threading.Event()
        self.waited = False
        self.met = False

    def write(self, consumer: str, batch: SinkBatch, fence: Any = None) -> None:
        parts = {tp.partition for tp in batch.ranges}
        if 0 in parts and not self.waited:  # one at a time: the wait ends unmet
            self.waited = True
            self.met = self.other_wrote.wait(timeout=60)
        super().write(consumer, batch, fence)
        if 1 in parts:
            self.other_wrote.set()


def test_two_partitions_fold_at_the_same_time_and_equal_a_clean_pass(
    store: ChdbStore, tmp_path: Path
) -> None:
    log, samples = telemetry_log()  # two partitions, two hours: four files
    archive_store, manifests = archive(log, tmp_path / "archive")
    assert {m.partition for m in manifests} == {0, 1}
    drop_projections(store)
    migrate(store)
    workers = RestoreWorkers()
    sink = _MeetingSink(store)
    params = RestoreParams(start_us=T0, end_us=T0 + 3 * HOUR_US).to_json()

    async def go() -> None:
        runner = Runner(store, archive_store)
        handler = OffloadedRestoreTask(
            sink,
            archive_store,
            runner.publisher,
            chunk=7,
            held=held_readings(store),
            forget=partial(forget, store),
            workers=workers,
        )
        runner.kinds.register(KIND, handler)
        state = await runner.run(await runner.create(params))
        assert state["status"] == "completed", state
        assert set(state["files_done"]) == {m.path for m in manifests}
        assert state["counts"]["readings"] == 2 * len(samples)  # two signals a sample
        # restored again, both partitions at once: nothing doubles
        again = await runner.run(await runner.create(params))
        assert again["status"] == "completed" and again["counts"]["readings"] == 0

    try:
        asyncio.run(go())
    finally:
        workers.close()
    assert sink.met  # partition 0 wrote while partition 1's file was folding
    check(store, samples)
