"""Exactly once, as a property: records appended in any chunks, with clocks that jump
and go back, archived with flushes at any points and the store failing at any put
(data or manifest; the archiver then "crashes" and a new one starts from the store):
in the end every record is in exactly one visible window, windows do not overlap, each
file verifies, and a file's first record lies in its window."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from millrace.pipeline.archive.archiver import Archiver
from millrace.pipeline.archive.config import ArchiveConfig
from millrace.pipeline.archive.errors import ArchiveStoreError
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.memory import MemoryEventLog
from tests.pipeline.archive.helpers import batch

T0 = 1_764_000_000_000_000
MINUTE = 60_000_000
CFG = ArchiveConfig(url="unused", window="15m", idle_close_s=10**9)


class FailingPuts(MemoryFileSystem):
    """Fails the puts whose numbers are in ``fail`` (counting every put)."""

    def __init__(self, fail: set[int], **kw: Any) -> None:
        super().__init__(**kw)
        self.fail, self.puts = fail, 0

    def pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        self.puts += 1
        if self.puts in self.fail:
            raise ConnectionResetError(f"put {self.puts} lost")
        super().pipe_file(path, value, *args, **kwargs)


steps = st.lists(
    st.tuples(
        st.lists(st.integers(-5 * MINUTE, 40 * MINUTE), min_size=0, max_size=12),  # clock moves
        st.booleans(),  # flush after this chunk
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps, st.sets(st.integers(1, 30), max_size=6))
def test_every_record_archived_exactly_once(
    chunks: list[tuple[list[int], bool]], fail: set[int]
) -> None:
    asyncio.run(_scenario(chunks, fail))


async def _scenario(chunks: list[tuple[list[int], bool]], fail: set[int]) -> None:
    log = MemoryEventLog(partitions=1)
    url = f"memory:///eo-{uuid.uuid4().hex}"
    fs = FailingPuts(fail, skip_instance_cache=True)
    codec = default_codec()
    archiver = Archiver(log, ArchiveStore(url, fs=fs), CFG, topics=("telemetry",))
    ts, appended = T0, 0
    crashes = 0

    async def step(flush: bool) -> None:
        nonlocal archiver, crashes
        try:
            await archiver.step(flush=flush)
        except ArchiveStoreError:
            crashes += 1  # the process dies: a new archiver starts from the store
            store = ArchiveStore(url, fs=fs)
            archiver = Archiver(log, store, CFG, topics=("telemetry",))
            archiver.positions = store.positions()

    for deltas, flush in chunks:
        msgs = []
        for d in deltas:
            ts = max(T0, ts + d)
            msgs.append(Message(codec.encode("telemetry", batch("d", ts)), b"d", ts))
        if msgs:
            await log.append("telemetry", msgs)
            appended += len(msgs)
        await step(flush)
    fs.fail = set()
    await step(True)
    await step(True)  # a crash in the last one is redone here

    store = ArchiveStore(url, fs=MemoryFileSystem())
    windows = store.list_windows("telemetry")
    offsets: list[int] = []
    for m in windows:
        got = [r.offset for r in store.open_records(m)]
        assert got == list(range(m.first_offset, m.last_offset + 1))
        offsets += got
    assert sorted(offsets) == list(range(appended)), (crashes, offsets)
    assert store.verify(windows) == []
    records = await log.read("telemetry", 0, 0, 10_000)
    for m in windows:  # a file starts with a record of its window
        first = records[m.first_offset]
        assert m.window_start_us <= first.timestamp_us < m.window_end_us
    event(f"crashes: {min(crashes, 3)}")
    if windows:
        MemoryFileSystem().rm(url.removeprefix("memory://"), recursive=True)
