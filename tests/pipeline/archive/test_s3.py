"""The archive on an S3 protocol server (moto's server mode on 127.0.0.1): the
archiver writes, a fresh store lists and reads, verify names a bad file, credentials
and endpoint from configuration or from the environment."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from millrace.pipeline.archive.archiver import Archiver
from millrace.pipeline.archive.config import ArchiveConfig
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig
from tests.pipeline.archive.test_archiver import T0, messages
from tests.s3_mock import MotoS3


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with MotoS3() as server:
        yield server


async def test_archiver_on_s3(s3: MotoS3, tmp_path: Path) -> None:
    url = s3.bucket(f"archive-{uuid.uuid4().hex[:8]}") + "/millrace"
    log = LocalEventLog(tmp_path / "log", LocalLogConfig(partitions=1, fsync="never"))
    try:
        await log.append("telemetry", messages(6, T0, 30 * 60_000_000))
        cfg = ArchiveConfig(url=url, storage_options=s3.storage_options, idle_close_s=10**9)
        store = ArchiveStore(url, cfg.storage_options)
        await Archiver(log, store, cfg, topics=("telemetry",)).step(flush=True)
        fresh = ArchiveStore(url, s3.storage_options)
        windows = fresh.list_windows()
        assert [(m.first_offset, m.last_offset) for m in windows] == [(0, 1), (2, 3), (4, 5)]
        assert [r.offset for m in windows for r in fresh.open_records(m)] == list(range(6))
        assert fresh.verify() == []
        # a second runner finds everything archived and writes nothing
        again = Archiver(log, fresh, cfg, topics=("telemetry",))
        again.positions = fresh.positions()
        await again.step(flush=True)
        assert again.stats.windows == 0
        # a changed object is named
        fresh.fs.pipe_file(f"{fresh.root}/{windows[1].path}", b"Obj\x01 not the same")
        assert [p.path for p in ArchiveStore(url, s3.storage_options).verify()] == [windows[1].path]
    finally:
        await log.close()


def test_credentials_and_endpoint_from_the_environment(
    s3: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = s3.bucket(f"env-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from tests.pipeline.archive.helpers import telemetry

    store = ArchiveStore(url, {"skip_instance_cache": True})
    m = store.write_window([telemetry(0, T0), telemetry(1, T0 + 1)], T0, T0 + 3_600_000_000)
    assert ArchiveStore(url, {"skip_instance_cache": True}).list_windows() == [m]


def test_an_unreachable_store_is_a_store_error(tmp_path: Path) -> None:
    from millrace.pipeline.archive.errors import ArchiveStoreError

    store = ArchiveStore(
        "s3://nowhere/x",
        {"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s",
         "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}},
    )  # fmt: skip
    with pytest.raises(ArchiveStoreError):
        store.list_windows()
