"""The archiver stage over the local log and the mock Kafka cluster: files per window,
positions from the manifests (a restart writes nothing twice), a crash between data
and manifest, flush through a task, an unreachable store, retention that waits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from millrace.pipeline.archive.archiver import FLUSH_KIND, GROUP, Archiver
from millrace.pipeline.archive.config import ArchiveConfig
from millrace.pipeline.archive.errors import ArchiveStoreError
from millrace.pipeline.archive.format import HOUR_US
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import EventLog, Message, TopicPartition
from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.tasks import TaskKinds, TaskRunner, create_task
from tests.pipeline.archive.helpers import batch
from tests.pipeline.archive.test_store import CrashAfterData

T0 = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z
CFG = ArchiveConfig(url="unused", window="1h", idle_close_s=10**9, poll_ms=10)


def messages(n: int, start_us: int, step_us: int, identity: str = "dev-1") -> list[Message]:
    codec = default_codec()
    return [
        Message(
            codec.encode("telemetry", batch(identity, start_us + i * step_us)),
            identity.encode(),
            start_us + i * step_us,
        )
        for i in range(n)
    ]


@pytest.fixture
async def local_log(tmp_path: Path) -> AsyncIterator[LocalEventLog]:
    log = LocalEventLog(tmp_path / "log", LocalLogConfig(partitions=1, fsync="never"))
    yield log
    await log.close()


def archived(store: ArchiveStore) -> list[tuple[int, int, bytes | None, dict[str, Any] | None]]:
    out = []
    for m in store.list_windows(topic="telemetry"):
        out += [(r.offset, r.timestamp_us, r.key, r.value) for r in store.open_records(m)]
    return sorted(out, key=lambda t: t[0])


async def test_windows_close_on_a_later_record_and_on_flush(
    local_log: LocalEventLog, tmp_path: Path
) -> None:
    # 3 records per 20 minutes over 2.5 hours: windows 16h, 17h, and 18h still open
    await local_log.append("telemetry", messages(8, T0, 20 * 60_000_000))
    store = ArchiveStore(str(tmp_path / "archive"))
    arch = Archiver(local_log, store, CFG, topics=("telemetry",))
    await arch.step()
    windows = store.list_windows()
    assert [(m.first_offset, m.last_offset, m.window_start_us) for m in windows] == [
        (0, 2, T0), (3, 5, T0 + HOUR_US)
    ]  # fmt: skip
    assert arch.archived_end("telemetry", 0) == 6 and arch.stats.behind_records == 2
    await arch.step(flush=True)
    assert [m.first_offset for m in store.list_windows()] == [0, 3, 6]
    assert [m.readings for m in store.list_windows()] == [9, 9, 6]
    # what the files hold is what the log holds, record for record
    log_records = await local_log.read("telemetry", 0, 0, 100)
    codec = default_codec()
    assert archived(store) == [
        (r.offset, r.timestamp_us, r.key, codec.decode("telemetry", r.value)) for r in log_records
    ]
    assert await local_log.committed(GROUP, TopicPartition("telemetry", 0)) == 8


async def test_a_restart_resumes_from_the_manifests_and_writes_nothing_twice(
    local_log: LocalEventLog, tmp_path: Path
) -> None:
    await local_log.append("telemetry", messages(4, T0, 60_000_000))
    url = str(tmp_path / "archive")
    await Archiver(local_log, ArchiveStore(url), CFG, topics=("telemetry",)).step(flush=True)
    files = sorted(p.name for p in (tmp_path / "archive").rglob("*"))
    again = Archiver(local_log, ArchiveStore(url), CFG, topics=("telemetry",))
    again.positions = ArchiveStore(url).positions()
    await again.step(flush=True)
    assert sorted(p.name for p in (tmp_path / "archive").rglob("*")) == files
    await local_log.append("telemetry", messages(2, T0 + 10 * 60_000_000, 1000))
    await again.step(flush=True)
    assert [(m.first_offset, m.last_offset) for m in ArchiveStore(url).list_windows()] == [
        (0, 3), (4, 5)
    ]  # fmt: skip


async def test_a_crash_between_data_and_manifest_is_redone_with_the_same_bytes(
    local_log: LocalEventLog,
) -> None:
    await local_log.append("telemetry", messages(5, T0, 1_000_000))
    url = f"memory:///archive-{uuid.uuid4().hex}"
    fs = CrashAfterData(skip_instance_cache=True)
    fs.crash = True
    with pytest.raises(ArchiveStoreError):
        await Archiver(local_log, ArchiveStore(url, fs=fs), CFG, topics=("telemetry",)).step(
            flush=True
        )
    root = fs._strip_protocol(url)
    (data_file,) = [p for p in fs.find(root) if p.endswith(".avro")]
    crashed = fs.cat_file(data_file)
    assert ArchiveStore(url, fs=MemoryFileSystem()).list_windows() == []
    fs.crash = False
    store = ArchiveStore(url, fs=fs)
    rerun = Archiver(local_log, store, CFG, topics=("telemetry",))
    rerun.positions = store.positions()
    await rerun.step(flush=True)
    assert fs.cat_file(data_file) == crashed
    (m,) = ArchiveStore(url, fs=MemoryFileSystem()).list_windows()
    assert (m.first_offset, m.last_offset) == (0, 4)
    fs.rm(root, recursive=True)


class Unreachable(MemoryFileSystem):
    def pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("store down")


async def test_flush_through_a_task_and_an_unreachable_store(local_log: LocalEventLog) -> None:
    await local_log.append("telemetry", messages(3, T0, 1000))
    url = f"memory:///archive-{uuid.uuid4().hex}"
    publisher = LogPublisher(local_log, default_codec())
    down = Archiver(local_log, ArchiveStore(url, fs=Unreachable()), CFG, publisher=publisher)
    stop = asyncio.Event()
    run = asyncio.create_task(down.run(stop))
    task_id = await create_task(publisher, FLUSH_KIND, {}, actor="test")
    while down.stats.failures < 2:
        await asyncio.sleep(0.01)
    assert "store down" in (down.health()["error"] or "")
    assert down.archived_end("telemetry", 0) == 0
    stop.set()
    await run
    # the store is back: the next leader runs the pending flush task
    up = Archiver(local_log, ArchiveStore(url), CFG, publisher=publisher)
    stop = asyncio.Event()
    run = asyncio.create_task(up.run(stop))
    watcher = TaskRunner(local_log, publisher, TaskKinds())
    while watcher.states.get(task_id, {}).get("status") != "completed":
        await asyncio.sleep(0.01)
        await watcher.catch_up()
    stop.set()
    await run
    assert [m.records for m in ArchiveStore(url).list_windows(topic="telemetry")] == [3]
    assert up.health()["error"] is None
    MemoryFileSystem().rm(url.removeprefix("memory://"), recursive=True)


async def test_retention_deletes_only_archived_segments(tmp_path: Path) -> None:
    cfg = LocalLogConfig(partitions=1, fsync="never", segment_bytes=2000, retention_ms=0)
    log = LocalEventLog(tmp_path / "log", cfg)
    store = ArchiveStore(str(tmp_path / "archive"))
    arch = Archiver(log, store, CFG, topics=("telemetry",))
    log.hold_retention(arch.archived_end)
    try:
        await log.append("telemetry", messages(40, T0, 1000))  # many segments
        for _ in range(2):
            await log.append("telemetry", messages(1, T0 + 40_000, 1000))
        log.enforce_retention()
        assert (await log.offsets("telemetry", 0))[0] == 0  # nothing archived: all kept
        await arch.step(flush=True)
        end = arch.archived_end("telemetry", 0)
        assert end == 42
        await log.append("telemetry", messages(5, T0 + 50_000, 1000))
        log.enforce_retention()
        first, _ = await log.offsets("telemetry", 0)
        assert 0 < first <= end  # archived segments went, the unarchived tail stayed
        records = await log.read("telemetry", 0, first, 100)
        assert [r.offset for r in records] == list(range(first, 47))
    finally:
        await log.close()


async def test_archiver_over_the_mock_kafka_cluster(kafka_bootstrap: str, tmp_path: Path) -> None:
    from millrace.pipeline.log.kafka import KafkaEventLog
    from tests.pipeline.log.test_kafka_log import make_config

    log: EventLog = KafkaEventLog(make_config(kafka_bootstrap))
    await log.start(("telemetry",))  # type: ignore[attr-defined]
    try:
        ms = 1000
        msgs = [m for i in range(6) for m in messages(1, T0 + i * 30 * 60_000 * ms, ms, f"d{i}")]
        await log.append("telemetry", msgs)
        store = ArchiveStore(str(tmp_path))
        arch = Archiver(log, store, CFG, topics=("telemetry",))
        await arch.step(flush=True)
        got = archived(store)
        want = []
        for p in range(log.partitions("telemetry")):
            for r in await log.read("telemetry", p, 0, 100):
                want.append((r.partition, r.offset, r.timestamp_us))
        files = [(m.partition, r.offset, r.timestamp_us) for m in store.list_windows()
                 for r in store.open_records(m)]  # fmt: skip
        assert sorted(files) == sorted(want) and len(got) == 6
        # a second runner over the same store finds everything archived
        again = Archiver(log, ArchiveStore(str(tmp_path)), CFG, topics=("telemetry",))
        again.positions = again.store.positions()
        before = sorted(p for p in tmp_path.rglob("*.avro"))
        await again.step(flush=True)
        assert sorted(p for p in tmp_path.rglob("*.avro")) == before
        assert again.stats.windows == 0
    finally:
        await log.close()


async def test_only_records_made_durable_by_sync_are_archived(
    local_log: LocalEventLog, tmp_path: Path
) -> None:
    await local_log.append("telemetry", messages(3, T0, 1000))
    synced: list[int] = []

    async def sync() -> None:  # an fsync; meanwhile a producer appends two more
        synced.append(1)
        if len(synced) == 1:
            await local_log.append("telemetry", messages(2, T0 + 5000, 1000))

    store = ArchiveStore(str(tmp_path / "archive"))
    arch = Archiver(local_log, store, CFG, topics=("telemetry",), sync=sync)
    await arch.step(flush=True)
    assert [(m.first_offset, m.last_offset) for m in store.list_windows()] == [(0, 2)]
    await arch.step(flush=True)
    assert [(m.first_offset, m.last_offset) for m in store.list_windows()] == [(0, 2), (3, 4)]
    assert len(synced) == 2
