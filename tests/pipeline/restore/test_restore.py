"""Restore by time and by URL against chDB (issue 14, item 6): archive -> drop the
projections -> restore -> the projections equal one clean pass computed here; restoring
twice, or a range the projections still hold, doubles nothing; a corrupt and a missing
file fail the task naming each while the others are restored; a retry after fixing
them completes; completed files leave no sink progress rows."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from millrace.pipeline.archive.format import HOUR_US, window_start
from millrace.pipeline.log.base import partition_for
from millrace.pipeline.restore import RestoreError, RestoreForbiddenError, RestoreParams, check_url
from millrace.pipeline.tasks import retry_task
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.store.chdb import ChdbStore
from tests.pipeline.restore.helpers import (
    T0,
    Runner,
    Sample,
    archive,
    check,
    live_fold,
    progress_rows,
    telemetry_log,
)


def place(sample: Sample) -> tuple[int, int]:
    """The archive file (partition, window) a sample's batch is in."""
    return partition_for(sample[0].encode(), 2), window_start(T0 + sample[1], HOUR_US)


def fresh(store: ChdbStore) -> None:
    drop_projections(store)
    migrate(store)


def by_time(start: int = T0, end: int = T0 + 3 * HOUR_US) -> dict[str, int]:
    return RestoreParams(start_us=start, end_us=end).to_json()


def test_restore_by_time_equals_a_clean_pass_and_twice_doubles_nothing(
    store: ChdbStore, tmp_path: Path
) -> None:
    log, samples = telemetry_log()
    asyncio.run(live_fold(log, store))
    check(store, samples)  # the live fold itself: resends dropped
    archive_store, manifests = archive(log, tmp_path / "archive")
    assert len(manifests) >= 4  # two partitions, two hours

    async def go() -> None:
        runner = Runner(store, archive_store, chunk=7)
        # the projections still hold the range: nothing doubles
        t1 = await runner.create(by_time())
        s1 = await runner.run(t1)
        assert s1["status"] == "completed", s1
        assert s1["counts"]["readings"] == 0 and s1["counts"]["skipped"] > 0
        check(store, samples)
        # the log range and the projections gone: the restore rebuilds them
        fresh(store)
        t2 = await runner.create(by_time())
        s2 = await runner.run(t2)
        assert s2["status"] == "completed", s2
        assert set(s2["files_done"]) == {m.path for m in manifests}
        check(store, samples)
        assert s2["counts"]["readings"] == 2 * len(samples)
        # and again: nothing doubles
        t3 = await runner.create(by_time())
        assert (await runner.run(t3))["status"] == "completed"
        check(store, samples)

    asyncio.run(go())


@pytest.mark.parametrize("held", [True, False])
def test_ids_forgotten_the_held_readings_still_double_nothing(
    store: ChdbStore, tmp_path: Path, held: bool
) -> None:
    """The live fold applied the range longer ago than the idempotency window (its ids
    are gone from applied_batches): the readings the projection holds name the batches.
    Without them (held=False) the restore would double the range."""
    log, samples = telemetry_log()
    asyncio.run(live_fold(log, store))
    archive_store, _ = archive(log, tmp_path / "archive")
    store.execute("TRUNCATE TABLE millrace.applied_batches")

    async def go() -> dict[str, Any]:
        runner = Runner(store, archive_store, chunk=9, held=held)
        return await runner.run(await runner.create(by_time()))

    s = asyncio.run(go())
    assert s["status"] == "completed", s
    if held:
        assert s["counts"]["readings"] == 0
        check(store, samples)
    else:
        with pytest.raises(AssertionError):
            check(store, samples)


def test_restore_by_time_leaves_out_records_outside_the_range(
    store: ChdbStore, tmp_path: Path
) -> None:
    log, samples = telemetry_log()
    archive_store, _ = archive(log, tmp_path / "archive")
    half = T0 + HOUR_US // 2

    async def go() -> None:
        runner = Runner(store, archive_store)
        tid = await runner.create(
            RestoreParams(start_us=T0, end_us=half, identities=("dev-1",)).to_json()
        )
        assert (await runner.run(tid))["status"] == "completed"

    asyncio.run(go())
    want = [s for s in samples if s[0] == "dev-1" and T0 + s[1] < half]
    check(store, want)


def test_corrupt_and_missing_files_fail_by_name_and_retry_completes(
    store: ChdbStore, tmp_path: Path
) -> None:
    log, samples = telemetry_log()
    root = tmp_path / "archive"
    archive_store, manifests = archive(log, root)
    corrupt, missing = manifests[0], manifests[-1]
    good = {p: (root / p).read_bytes() for p in (corrupt.path, missing.path)}
    data = bytearray(good[corrupt.path])
    data[len(data) // 2] ^= 0xFF
    (root / corrupt.path).write_bytes(bytes(data))
    (root / missing.path).unlink()

    async def go() -> None:
        runner = Runner(store, archive_store, chunk=5)
        tid = await runner.create(by_time())
        s = await runner.run(tid)
        assert s["status"] == "failed"
        assert set(s["files_failed"]) == {corrupt.path, missing.path}
        assert "checksum" in s["files_failed"][corrupt.path]
        assert "missing" in s["files_failed"][missing.path]
        assert corrupt.path in s["error"] and missing.path in s["error"]
        assert len(s["files_done"]) == len(manifests) - 2
        # the completed files' progress rows are gone; nothing else wrote any
        assert progress_rows(store, tid) == 0
        # the others were restored: every sample not in the two bad files
        bad = {(m.partition, m.window_start_us) for m in (corrupt, missing)}
        check(store, [x for x in samples if place(x) not in bad])
        for path, content in good.items():
            (root / path).write_bytes(content)
        await retry_task(runner.publisher, tid, "restore", actor="test")
        s = await runner.run(tid)
        assert s["status"] == "completed", s
        assert s["attempts"] == 2 and not s["files_failed"]
        check(store, samples)
        assert progress_rows(store, tid) == 0  # a completed task leaves none

    asyncio.run(go())


def test_bad_parameters_are_named() -> None:
    with pytest.raises(RestoreError, match="start_time"):
        RestoreParams(start_us=5, end_us=5).check()
    with pytest.raises(RestoreError, match="topics"):
        RestoreParams(topics=("nope",)).check()
    check_url("telemetry/2026/01/01/00/0-00000000000000000000.avro", (), None)
    check_url("s3://bucket/archive/x.avro", ("s3://bucket/archive/",), None)
    check_url("file:///srv/archive/x.avro", (), "file:///srv/archive")
    for url in (
        "s3://other/x.avro",
        "file:///etc/passwd",
        "ftp://h/x.avro",
        "s3://bucket/archive/../secret.avro",
        "/etc/passwd",
        "../x.avro",
    ):
        with pytest.raises(RestoreForbiddenError):
            check_url(url, ("s3://bucket/archive/",), None)
