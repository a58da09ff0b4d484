"""Restore from files other tools wrote and from other stores: a plain fastavro writer
following the documented schema (an older TelemetryBatch version among them) restores
by URL; a file that is not an archive, or names an unknown topic, fails with the
reason while the good one is restored; an S3-protocol archive store (moto's server
mode on 127.0.0.1) restores by time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from millrace.pipeline.archive.format import HOUR_US, archive_schema
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.restore import RestoreParams
from millrace.projections.store.chdb import ChdbStore
from millrace.schemas import HISTORY_DIR, SCHEMA_DIR
from tests.pipeline.restore.helpers import T0, Runner, archive, check, telemetry_log
from tests.s3_mock import MotoS3


def plain_file(path: Path, rows: list[dict[str, Any]], event_schema: dict[str, Any]) -> None:
    """An archive written by fastavro alone, following the documented schema."""
    with path.open("wb") as out:
        fastavro.writer(
            out,
            fastavro.parse_schema(archive_schema(event_schema)),
            rows,
            codec="deflate",
            metadata={
                "millrace.format": "1",
                "millrace.topic": "telemetry",
                "millrace.partition": "0",
            },
        )


def row(offset: int, identity: str, at: int, values: dict[str, float]) -> dict[str, Any]:
    event = {
        "identity": identity,
        "source": "other-tool",
        "received_us": T0 + at,
        "samples": [{"ts_us": T0 + at, "values": values, "quality": 0}],
    }
    return {
        "offset": offset,
        "timestamp_us": T0 + at,
        "key": identity.encode(),
        "headers": [],
        "value": event,
        "raw": None,
    }


def test_plain_fastavro_files_restore_by_url_and_bad_files_fail_by_name(
    store: ChdbStore, tmp_path: Path
) -> None:
    v2 = json.loads((HISTORY_DIR / "TelemetryBatch.v2.avsc").read_text())
    current = json.loads((SCHEMA_DIR / "telemetry.avsc").read_text())
    old = tmp_path / "old.avro"
    new = tmp_path / "new.avro"
    plain_file(old, [row(i, "plain-a", i * 60_000_000, {"x": float(i)}) for i in range(5)], v2)
    plain_file(
        new, [row(i, "plain-b", i * 60_000_000, {"y": float(-i)}) for i in range(4)], current
    )
    junk = tmp_path / "junk.avro"
    junk.write_bytes(b"not an archive at all")
    unknown = tmp_path / "unknown.avro"
    with unknown.open("wb") as out:
        fastavro.writer(
            out,
            fastavro.parse_schema(archive_schema(current)),
            [],
            metadata={"millrace.format": "1", "millrace.topic": "nope", "millrace.partition": "0"},
        )
    urls = [f"file://{p}" for p in (old, new, junk, unknown)]

    async def go() -> dict[str, Any]:
        runner = Runner(store, None, allowed=(f"file://{tmp_path}/",))
        tid = await runner.create(RestoreParams(urls=tuple(urls)).to_json())
        return await runner.run(tid)

    s = asyncio.run(go())
    assert s["status"] == "failed"
    assert set(s["files_failed"]) == {urls[2], urls[3]}
    assert "not an Avro container" in s["files_failed"][urls[2]]
    assert "unknown topic" in s["files_failed"][urls[3]]
    assert set(s["files_done"]) == {urls[0], urls[1]}
    samples = [("plain-a", i * 60_000_000, {"x": float(i)}) for i in range(5)]
    samples += [("plain-b", i * 60_000_000, {"y": float(-i)}) for i in range(4)]
    check(store, samples)


def test_a_url_outside_the_allow_list_fails_the_task(store: ChdbStore, tmp_path: Path) -> None:
    async def go() -> dict[str, Any]:
        runner = Runner(store, None, allowed=("s3://elsewhere/",))
        tid = await runner.create(RestoreParams(urls=(f"file://{tmp_path}/x.avro",)).to_json())
        return await runner.run(tid)

    s = asyncio.run(go())
    assert s["status"] == "failed" and "allowed" in s["error"]


@pytest.fixture
def s3() -> Iterator[MotoS3]:
    with MotoS3() as server:
        yield server


def test_restore_by_time_from_an_s3_archive(store: ChdbStore, s3: MotoS3) -> None:
    log, samples = telemetry_log(n=40)
    url = s3.bucket("restore-archive") + "/millrace"
    staging, manifests = archive(log, "memory://restore-staging")
    s3_store = ArchiveStore(url, s3.storage_options)
    for m in manifests:
        s3_store.put_window(staging.read_file(m), m)

    async def go() -> dict[str, Any]:
        runner = Runner(store, s3_store)
        tid = await runner.create(RestoreParams(start_us=T0, end_us=T0 + 3 * HOUR_US).to_json())
        return await runner.run(tid)

    s = asyncio.run(go())
    assert s["status"] == "completed", s
    assert set(s["files_done"]) == {m.path for m in manifests}
    check(store, samples)


def test_the_restore_payload_names_batches_as_the_log_does() -> None:
    """An id-less batch restored from an archive gets the content id the live fold
    gave it from the log's bytes (batch_key over fastavro's re-encoding)."""
    from millrace.pipeline.batches import batch_key
    from millrace.pipeline.codec import default_codec
    from millrace.pipeline.restore.admit import log_payload

    codec = default_codec()
    log, _ = telemetry_log(n=30)
    for p in range(log.partitions("telemetry")):
        for rec in asyncio.run(log.read("telemetry", p, 0, 100)):
            event = codec.decode("telemetry", rec.value)
            assert batch_key(event, log_payload(event)) == batch_key(event, rec.value)
            assert batch_key(event, log_payload(event)) == batch_key(event)
