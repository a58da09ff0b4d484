"""A replay after retention deleted log segments reads them back from the archive
(``pipeline.log.archive_backed``): the rebuilt projection holds the whole history. And
a replay crashed before each of its steps in turn."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.log.archive_backed import ArchiveBackedLog
from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.topics import TELEMETRY
from millrace.projections import shadow
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
    spoil,
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
        spoil(store, "readings")

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


async def test_a_crash_at_any_step_leaves_all_old_or_all_new_tables(
    clean: ChdbStore, tmp_path: Path
) -> None:
    """Crash before each step of a replay in turn (create, every fold, mark, swap,
    drop), as the engine would restart: recover, then the task resumes; the named
    tables are never a mix of old and new, and the end equals what was sent."""
    store = clean
    log = LocalEventLog(tmp_path / "log")
    named = ["readings", "latest", "agg_1m"]
    try:
        sent = Sent()
        live = EmbeddedRuntime(log, ProjectionWriter(store), processors(), max_records=10)
        await ingest(log, sent, 0, 40, live)
        await drain(live)
        crash_at = 1
        while True:
            crash = CrashAt(crash_at)

            replay = Replay(ReplayParts(log, store, live, max_records=10), f"c{crash_at}", named)
            replay.before = crash
            try:
                await replay.run(_quiet, asyncio.Event())
            except Crash:
                shadow.recover(store)  # the engine's start
                marks = {shadow.comments(store)[t].startswith("swap:") for t in named}
                assert len(marks) == 1, (crash_at, shadow.comments(store))  # never a mix
                await ingest(log, sent, 1000 + 2 * crash_at, 2, live)  # ingest goes on
                await drain(live)
                again = Replay(ReplayParts(log, store, live, max_records=10), f"c{crash_at}", named)
                assert await again.run(_quiet, asyncio.Event()) is not None
                check_equal_to_sent(store, sent)
                assert not [n for n in shadow.comments(store) if n.endswith(shadow.SUFFIX)]
                crash_at += 1
                continue
            break  # ran to the end: every step has had its crash
        assert crash_at > 5
    finally:
        await log.close()


class Crash(Exception):
    pass


class CrashAt:
    """A ``Replay.before`` hook that raises at its n-th call."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, phase: str) -> None:
        self.calls += 1
        if self.calls == self.n:
            raise Crash(phase)


async def test_archive_backed_reads_equal_the_log_before_retention(tmp_path: Path) -> None:
    """Reads in steps, backwards and at random offsets and sizes through the archive
    and on into the log give the records the log held before retention."""
    keep = LocalLogConfig(partitions=1, segment_bytes=1500, fsync="never")
    first_log = LocalEventLog(tmp_path / "log", keep)
    try:
        await ingest(first_log, Sent(), 0, 80, None)
        before = await first_log.read(TELEMETRY, 0, 0, 10_000)
        archive = ArchiveStore(str(tmp_path / "archive"))
        # two windows, as an archiver closing a window makes them
        archive.write_window(before[:30], 0, 1)
        archive.write_window(before[30:], 1, 2)
    finally:
        await first_log.close()
    log = LocalEventLog(tmp_path / "log", keep.model_copy(update={"retention_bytes": 1}))
    try:
        assert log.enforce_retention() > 0
        retained = (await log.offsets(TELEMETRY, 0))[0]
        assert 30 < retained < len(before)
        backed = ArchiveBackedLog(log, archive)
        want = [(r.offset, r.key, r.value) for r in before]

        async def read(offset: int, n: int) -> list[tuple[int, bytes | None, bytes]]:
            got = await backed.read(TELEMETRY, 0, offset, n)
            return [(r.offset, r.key, r.value) for r in got]

        offset, seen = 0, []
        while chunk := await read(offset, 7):  # a fold's steps
            seen += chunk
            offset = chunk[-1][0] + 1
        assert seen == want
        rng = random.Random(7)
        for _ in range(60):
            at, n = rng.randrange(len(before) + 2), rng.randrange(1, 40)
            got = await read(at, n)
            assert got == [w for w in want if w[0] >= at][: len(got)]
            # short only at the end of a window, of the archived range or of the log
            ends = (29, retained - 1, len(before) - 1)
            assert len(got) == n or (got and got[-1][0] in ends) or at >= len(before)
    finally:
        await log.close()
