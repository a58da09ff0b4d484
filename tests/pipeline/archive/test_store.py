"""The archive store: windows visible only with their manifest, a crash between data
and manifest leaves nothing visible, a rerun writes the same bytes, listing by time
from the manifests, verification naming a bad file."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from millrace.pipeline.archive.errors import ArchiveFormatError
from millrace.pipeline.archive.format import HOUR_US, manifest_path
from millrace.pipeline.archive.store import ArchiveStore
from tests.pipeline.archive.helpers import telemetry

T0 = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z


class CrashAfterData(MemoryFileSystem):
    """A filesystem that dies right after a data file is put (before its manifest)."""

    crash = True

    def pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        if self.crash and str(path).endswith(".manifest.json"):
            raise ConnectionResetError("killed between data and manifest")
        super().pipe_file(path, value, *args, **kwargs)


@pytest.fixture
def memory_url() -> Iterator[str]:
    root = f"/archive-{uuid.uuid4().hex}"
    yield f"memory://{root}"
    fs = MemoryFileSystem()
    if fs.exists(root):
        fs.rm(root, recursive=True)


def records(first: int, n: int, t: int = T0) -> list:
    return [telemetry(first + i, t + i * 1000) for i in range(n)]


def test_local_store_round_trip(tmp_path: Path) -> None:
    store = ArchiveStore(str(tmp_path / "a"))
    m = store.write_window(records(0, 5), T0, T0 + HOUR_US)
    assert (m.first_offset, m.last_offset, m.records, m.readings) == (0, 4, 5, 15)
    assert m.path == "telemetry/2025/11/24/16/0-00000000000000000000.avro"
    assert (tmp_path / "a" / m.path).read_bytes()
    # a new store (no cache) lists it from the manifest alone
    fresh = ArchiveStore(str(tmp_path / "a"))
    assert fresh.list_windows() == [m]
    assert [r.offset for r in fresh.open_records(m)] == [0, 1, 2, 3, 4]
    assert fresh.positions() == {("telemetry", 0): 5}
    assert fresh.verify() == []
    assert not list((tmp_path / "a").rglob("*.tmp"))


def test_listing_filters_by_time_topic_and_partition(tmp_path: Path) -> None:
    store = ArchiveStore(str(tmp_path))
    a = store.write_window(records(0, 3, T0), T0, T0 + HOUR_US)
    b = store.write_window(records(3, 3, T0 + HOUR_US), T0 + HOUR_US, T0 + 2 * HOUR_US)
    assert store.list_windows() == [a, b]
    assert store.list_windows(start_us=T0 + HOUR_US) == [b]
    assert store.list_windows(end_us=T0 + HOUR_US) == [a]
    assert store.list_windows(start_us=T0 + 2 * HOUR_US) == []
    assert store.list_windows(topic="alarms") == []
    assert store.list_windows(topic="telemetry", partition=0) == [a, b]
    assert store.list_windows(partition=1) == []


def test_crash_between_data_and_manifest_leaves_nothing_visible(memory_url: str) -> None:
    fs = CrashAfterData(skip_instance_cache=True)
    fs.crash = True
    store = ArchiveStore(memory_url, fs=fs)
    with pytest.raises(Exception, match="killed between"):
        store.write_window(records(0, 4), T0, T0 + HOUR_US)
    data_files = [p for p in fs.find(store.root) if p.endswith(".avro")]
    assert len(data_files) == 1  # the data file landed ...
    first_bytes = fs.cat_file(data_files[0])
    assert ArchiveStore(memory_url, fs=MemoryFileSystem()).list_windows() == []  # ... unseen
    fs.crash = False
    rerun = ArchiveStore(memory_url, fs=fs)
    assert rerun.positions() == {}
    m = rerun.write_window(records(0, 4), T0, T0 + HOUR_US)
    assert fs.cat_file(data_files[0]) == first_bytes
    assert ArchiveStore(memory_url, fs=MemoryFileSystem()).list_windows() == [m]


def test_verify_names_a_corrupt_and_a_missing_file(tmp_path: Path) -> None:
    store = ArchiveStore(str(tmp_path))
    a = store.write_window(records(0, 3), T0, T0 + HOUR_US)
    b = store.write_window(records(3, 3, T0 + HOUR_US), T0 + HOUR_US, T0 + 2 * HOUR_US)
    c = store.write_window(records(6, 3, T0 + 2 * HOUR_US), T0 + 2 * HOUR_US, T0 + 3 * HOUR_US)
    raw = bytearray((tmp_path / a.path).read_bytes())
    raw[-20] ^= 0xFF
    (tmp_path / a.path).write_bytes(bytes(raw))
    (tmp_path / b.path).unlink()
    problems = {p.path: p.reason for p in store.verify()}
    assert set(problems) == {a.path, b.path}
    assert "checksum" in problems[a.path] and "missing" in problems[b.path]
    with pytest.raises(ArchiveFormatError, match="checksum"):
        list(store.open_records(a))
    assert [r.offset for r in store.open_records(c)] == [6, 7, 8]


def test_an_unreadable_manifest_is_skipped(tmp_path: Path) -> None:
    store = ArchiveStore(str(tmp_path))
    a = store.write_window(records(0, 3), T0, T0 + HOUR_US)
    (tmp_path / manifest_path(a.path)).write_text("{half a manif")
    assert ArchiveStore(str(tmp_path)).list_windows() == []


def test_a_password_in_the_url_is_never_shown(tmp_path: Path) -> None:
    from millrace.pipeline.archive.archiver import Archiver
    from millrace.pipeline.log.memory import MemoryEventLog

    store = ArchiveStore(str(tmp_path))
    store.url = "sftp://millrace:hunter2@backup.example/archive"
    assert store.display_url == "sftp://millrace:***@backup.example/archive"
    assert "hunter2" not in repr(store)
    assert "hunter2" not in str(Archiver(MemoryEventLog(), store).health())
    assert ArchiveStore(str(tmp_path)).display_url == str(tmp_path)
