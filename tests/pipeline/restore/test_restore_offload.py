"""Restore with the files folded by worker processes (``restore.offload``) against chDB:
the projections equal one clean pass computed here, restoring twice (or a range the
projections hold) doubles nothing, a corrupt file fails naming it while the others are
restored, and a worker killed mid-restore (kill -9) loses and doubles nothing."""

from __future__ import annotations

import asyncio
import os
import signal
from functools import partial
from pathlib import Path

from millrace.pipeline.archive.format import HOUR_US
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.restore import KIND, RestoreParams
from millrace.pipeline.restore.offload import OffloadedRestoreTask, RestoreWorkers
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.replay import forget
from millrace.projections.restore import held_readings
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.pipeline.restore.helpers import (
    MINUTE,
    T0,
    Runner,
    Sample,
    archive,
    check,
    live_fold,
    progress_rows,
    telemetry_log,
)


def offloaded(runner: Runner, store: ChdbStore, workers: RestoreWorkers, **kw: object) -> None:
    """The runner's restore kind folded by ``workers``."""
    handler = OffloadedRestoreTask(
        ProjectionWriter(store),
        runner.handler.store,
        runner.publisher,
        chunk=7,
        held=held_readings(store),
        forget=partial(forget, store),
        workers=workers,
        **kw,
    )
    runner.handler = handler
    runner.kinds.register(KIND, handler)


def by_time() -> dict[str, int]:
    return RestoreParams(start_us=T0, end_us=T0 + 3 * HOUR_US).to_json()


def fresh(store: ChdbStore) -> None:
    drop_projections(store)
    migrate(store)


def test_offloaded_restore_equals_a_clean_pass_and_twice_doubles_nothing(
    store: ChdbStore, tmp_path: Path
) -> None:
    log, samples = telemetry_log()
    asyncio.run(live_fold(log, store))
    archive_store, manifests = archive(log, tmp_path / "archive")
    workers = RestoreWorkers()

    async def go() -> None:
        runner = Runner(store, archive_store)
        offloaded(runner, store, workers)
        # the projections still hold the range: nothing doubles
        s1 = await runner.run(await runner.create(by_time()))
        assert s1["status"] == "completed", s1
        assert s1["counts"]["readings"] == 0 and s1["counts"]["skipped"] > 0
        check(store, samples)
        fresh(store)
        t2 = await runner.create(by_time())
        s2 = await runner.run(t2)
        assert s2["status"] == "completed", s2
        assert set(s2["files_done"]) == {m.path for m in manifests}
        assert s2["counts"]["readings"] == 2 * len(samples)
        check(store, samples)
        assert progress_rows(store, t2) == 0
        # again: nothing doubles
        s3 = await runner.run(await runner.create(by_time()))
        assert s3["status"] == "completed" and s3["counts"]["readings"] == 0
        check(store, samples)

    try:
        asyncio.run(go())
        # kept from file to file (per lane of files: one folding, one ahead)
        assert workers.starts <= 2 * OffloadedRestoreTask.lanes
    finally:
        workers.close()


def test_offloaded_corrupt_file_fails_naming_it_the_others_restored(
    store: ChdbStore, tmp_path: Path
) -> None:
    log, samples = telemetry_log()
    archive_store, manifests = archive(log, tmp_path / "archive")
    bad = manifests[0]
    path = tmp_path / "archive" / bad.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # zeros over its blocks
    path.write_bytes(bytes(data))
    fresh(store)
    workers = RestoreWorkers()

    async def go() -> None:
        runner = Runner(store, archive_store)
        offloaded(runner, store, workers)
        state = await runner.run(await runner.create(by_time()))
        assert state["status"] == "failed", state
        assert set(state["files_failed"]) == {bad.path}
        assert set(state["files_done"]) == {m.path for m in manifests[1:]}

    try:
        asyncio.run(go())
    finally:
        workers.close()
    readings = int(store.execute("SELECT count() FROM millrace.readings").rows[0][0])
    assert 0 < readings < 2 * len(samples)


def test_worker_killed_mid_restore_loses_and_doubles_nothing(
    store: ChdbStore, tmp_path: Path
) -> None:
    log, samples = telemetry_log(n=240)
    archive_store, _ = archive(log, tmp_path / "archive")
    fresh(store)
    workers = RestoreWorkers()
    chunks = 0
    killed: list[int] = []

    def kill_after_some_chunks() -> None:
        nonlocal chunks
        chunks += 1
        if chunks in (2, 9):  # twice: once in the first file, once later
            for child in list(workers.busy):
                if child.process.is_alive():  # one killed earlier may still be listed
                    os.kill(child.process.pid, signal.SIGKILL)
                    killed.append(child.process.pid)

    async def go() -> None:
        runner = Runner(store, archive_store)
        offloaded(runner, store, workers, on_chunk=kill_after_some_chunks)
        state = await runner.run(await runner.create(by_time()))
        assert state["status"] == "completed", state
        assert state["counts"]["readings"] == 2 * len(samples)

    try:
        asyncio.run(go())
    finally:
        workers.close()
    # killed, and new workers went on (two lanes: four started without a death)
    assert killed and workers.starts > 2 * OffloadedRestoreTask.lanes
    check(store, samples)


def test_an_id_resent_in_the_next_file_is_applied_once(store: ChdbStore, tmp_path: Path) -> None:
    """A batch at the end of one hour's file, resent (same id) into the next hour's file
    of the partition: the next file, opened and decoded ahead, asks about its ids only
    once the file before it is written, so the resend is dropped."""
    codec = default_codec()
    log = MemoryEventLog(partitions=1)
    samples: list[Sample] = []
    messages = []
    for i in range(40):
        at = i * 90 * MINUTE // 40  # 0 .. 1.5 h
        values = {"t": float(i)}
        event = {
            "identity": "dev-0",
            "source": "test",
            "received_us": T0 + at,
            "samples": [{"ts_us": T0 + at, "values": values, "quality": 0}],
            "batch_id": f"resent:{i}",
        }
        msg = Message(codec.encode("telemetry", event), b"dev-0", T0 + at)
        messages.append(msg)
        samples.append(("dev-0", at, values))
        if at < HOUR_US and (i + 1) * 90 * MINUTE // 40 >= HOUR_US:
            # the hour's last batch, resent in the next hour (a client retry)
            messages.append(Message(msg.value, msg.key, T0 + HOUR_US + 1))
    asyncio.run(log.append("telemetry", messages))
    archive_store, manifests = archive(log, tmp_path / "archive")
    assert len(manifests) == 2
    fresh(store)
    workers = RestoreWorkers()

    async def go() -> None:
        runner = Runner(store, archive_store)
        offloaded(runner, store, workers)
        state = await runner.run(await runner.create(by_time()))
        assert state["status"] == "completed", state
        assert state["counts"]["skipped"] == 1

    try:
        asyncio.run(go())
    finally:
        workers.close()
    check(store, samples)
