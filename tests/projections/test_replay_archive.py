"""A replay after retention deleted log segments reads them back from the archive
(``pipeline.log.archive_backed``): the rebuilt projection holds the whole history."""

from __future__ import annotations

import asyncio
from pathlib import Path

from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.log.archive_backed import ArchiveBackedLog
from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.replay import Replay, ReplayParts
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.projections.test_replay import (
    Sent,
    _quiet,
    check_equal_to_sent,
    clean,
    drain,
    ingest,
    readings_by_series,
)

__all__ = ["clean"]  # the fixture


async def archive_everything(log: LocalEventLog, archive: ArchiveStore) -> int:
    windows = 0
    for p in range(log.partitions(TELEMETRY)):
        first, end = await log.offsets(TELEMETRY, p)
        records = await log.read(TELEMETRY, p, first, end - first)
        if records:
            archive.write_window(records, 0, 2**62)
            windows += 1
    return windows


async def test_replay_reads_the_deleted_history_from_the_archive(
    clean: ChdbStore, tmp_path: Path
) -> None:
    store = clean
    keep = LocalLogConfig(partitions=2, segment_bytes=2000, fsync="never")
    first_log = LocalEventLog(tmp_path / "log", keep)
    sent = Sent()
    try:
        await ingest(first_log, sent, 0, 60, None)
        archive = ArchiveStore(str(tmp_path / "archive"))
        assert await archive_everything(first_log, archive) >= 1
    finally:
        await first_log.close()
    # the same log, now with a retention that keeps only the newest segment
    log = LocalEventLog(tmp_path / "log", keep.model_copy(update={"retention_bytes": 1}))
    try:
        live = EmbeddedRuntime(log, ProjectionWriter(store), processors())
        await drain(live)
        assert log.enforce_retention() > 0
        firsts = [(await log.offsets(TELEMETRY, p))[0] for p in range(2)]
        assert max(firsts) > 0  # the log no longer holds its beginning
        backed = ArchiveBackedLog(log, archive)
        assert all([(await backed.offsets(TELEMETRY, p))[0] == 0 for p in range(2)])
        store.execute(
            "ALTER TABLE millrace.readings UPDATE value = -1 WHERE 1 SETTINGS mutations_sync = 1"
        )

        # without the archive, what retention deleted is gone from the rebuilt readings
        await Replay(ReplayParts(log, store, live), "t8", ["readings"]).run(_quiet, asyncio.Event())
        assert sum(n for n, _ in readings_by_series(store).values()) < sum(sent.count.values())
        counts = await Replay(
            ReplayParts(log, store, live, archive=archive), "t9", ["readings"]
        ).run(_quiet, asyncio.Event())
        assert counts is not None
        check_equal_to_sent(store, sent)
    finally:
        await log.close()
