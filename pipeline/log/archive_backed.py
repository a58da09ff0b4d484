"""ArchiveBackedLog: a log whose history goes on below its first retained offset, read
from the archive.

A replay (``projections.replay``) folds "the log" from its beginning; once retention
has deleted segments, the records below the first retained offset are only in the
archive (``pipeline.archive``: every record with its original offset, timestamp, key
and headers; retention deletes a segment only after it is archived). This adapter
reads them from there, so the fold sees one continuous partition with the same offsets
as the live log had: progress positions, batch ranges and deduplication tokens stay
meaningful across the two. Reads at or above the first retained offset, appends and
commits go to the log itself. A read below it takes the archive windows of that
topic-partition holding the offset, decoded as it is read (a fold reads on where it
stopped, so the open window's reader is kept; a window is never held decoded whole); if
the archive holds nothing there, the read starts at the first retained record, as the
port says of any log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence

from millrace.pipeline.archive.format import ArchivedRecord
from millrace.pipeline.archive.layout import Manifest
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.log.base import AppendResult, EventLog, Message, Record, TopicPartition

_EXHAUSTED = 1 << 62


class ArchiveBackedLog(EventLog):
    """``log``, with its deleted history read back from ``archive`` (read-only below
    the first retained offset)."""

    def __init__(
        self, log: EventLog, archive: ArchiveStore, codec: AvroCodec | None = None
    ) -> None:
        self.log = log
        self.archive = archive
        self.codec = codec
        self._windows: dict[TopicPartition, list[Manifest]] = {}
        # the window being read: its path, its records from here on, and the offset the
        # next of them has (a fold reads on where it stopped; anything else reopens)
        self._open: tuple[str, Iterator[ArchivedRecord], int] | None = None

    async def _manifests(self, tp: TopicPartition) -> list[Manifest]:
        if tp not in self._windows:
            found = await asyncio.to_thread(self.archive.list_windows, tp.topic, tp.partition)
            self._windows[tp] = sorted(found, key=lambda m: m.first_offset)
        return self._windows[tp]

    def _take(self, manifest: Manifest, offset: int, limit: int, below: int) -> list[Record]:
        """Up to ``limit`` records of ``manifest`` from ``offset`` on, below ``below``
        (decoded as they are read: a window is never held in memory whole)."""
        if self._open is None or self._open[0] != manifest.path or self._open[2] > offset:
            self._open = (manifest.path, self.archive.open_records(manifest, self.codec), -1)
        path, records, after = self._open
        out: list[Record] = []
        for rec in records:
            after = rec.offset + 1  # taken from the reader, returned or not
            if rec.offset >= below:
                break
            if rec.offset >= offset:
                out.append(rec.to_record(self.codec))
                if len(out) >= limit:
                    break
        else:
            after = _EXHAUSTED  # a later read of this window opens it again
        self._open = (path, records, after)
        return out

    async def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        first, end = await self.log.offsets(topic, partition)
        windows = await self._manifests(TopicPartition(topic, partition))
        if windows:
            first = min(first, windows[0].first_offset)
        return first, end

    async def read(
        self, topic: str, partition: int, offset: int, max_records: int = 1000
    ) -> list[Record]:
        retained, _ = await self.log.offsets(topic, partition)
        if offset < retained:
            for manifest in await self._manifests(TopicPartition(topic, partition)):
                if manifest.end_offset <= offset or manifest.first_offset >= retained:
                    continue
                out = await asyncio.to_thread(self._take, manifest, offset, max_records, retained)
                if out:
                    return out
        return await self.log.read(topic, partition, max(offset, retained), max_records)

    def partitions(self, topic: str) -> int:
        return self.log.partitions(topic)

    async def append(self, topic: str, messages: Sequence[Message]) -> list[AppendResult]:
        return await self.log.append(topic, messages)

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        await self.log.commit(group, offsets)

    async def committed(self, group: str, tp: TopicPartition) -> int | None:
        return await self.log.committed(group, tp)
