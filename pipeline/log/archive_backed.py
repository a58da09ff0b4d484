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
topic-partition holding the offset (the last window read is kept decoded, since a fold
reads it in steps); if the archive holds nothing there, the read starts at the first
retained record, as the port says of any log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from millrace.pipeline.archive.layout import Manifest
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.log.base import AppendResult, EventLog, Message, Record, TopicPartition


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
        self._cached: tuple[str, list[Record]] | None = None

    async def _manifests(self, tp: TopicPartition) -> list[Manifest]:
        if tp not in self._windows:
            found = await asyncio.to_thread(self.archive.list_windows, tp.topic, tp.partition)
            self._windows[tp] = sorted(found, key=lambda m: m.first_offset)
        return self._windows[tp]

    async def _records(self, manifest: Manifest) -> list[Record]:
        if self._cached is None or self._cached[0] != manifest.path:

            def load() -> list[Record]:
                got = self.archive.open_records(manifest, self.codec)
                return [r.to_record(self.codec) for r in got]

            self._cached = (manifest.path, await asyncio.to_thread(load))
        return self._cached[1]

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
                records = await self._records(manifest)
                out = [r for r in records if offset <= r.offset < retained][:max_records]
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
