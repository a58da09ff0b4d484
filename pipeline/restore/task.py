"""The ``restore`` task kind: every file of the restore folded once, each on its own.

A file that is missing, not an archive, has a wrong checksum or an unknown schema fails
with the reason (``TaskContext.file_failed``); the task goes on with the others and
ends failed naming them. A retry runs the task again: completed files are skipped (the
task's events say which), failed ones are redone, and a file a crash left half-folded
goes on from its sink consumer's committed position.

A completed file's sink progress rows are deleted (``forget``): a completed task leaves
none, a failed file keeps its rows for the retry. URL passwords are masked in file
names, reasons and logs (``urls.masked_url``); a URL's credentials are ``${ENV}``
references, resolved from ``env`` (this process's environment) only when its file is
fetched: an unset variable fails that file, naming the variable, and a retry after
setting it goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from millrace.pipeline.archive.errors import ArchiveError
from millrace.pipeline.archive.format import ArchivedRecord
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.errors import DecodeError
from millrace.pipeline.restore.admit import HeldReadings
from millrace.pipeline.restore.fold import ChunkResult, FileFold, consumer_name, restore_processors
from millrace.pipeline.restore.sources import (
    RestoreError,
    RestoreFile,
    RestoreParams,
    files_by_time,
    files_by_url,
    masked_url,
    open_file,
)
from millrace.pipeline.sink import ProjectionSink
from millrace.pipeline.tasks import TaskContext
from millrace.pipeline.topics import DEADLETTER

KIND = "restore"
log = logging.getLogger("millrace.restore")


class RestoreTask:
    """The handler of ``restore`` tasks (``register_kind(KIND, RestoreTask(...))``).

    ``sink`` is the projection sink (a ``ProjectionWriter`` on its own store session:
    its writes block, they run in a thread); ``store`` the archive store (None: only
    URL restores); ``allowed_prefixes`` the URL allow-list; ``held`` the readings the
    projection holds (``projections.restore.held_readings``), for batches no id
    remembers any more; ``env`` where URL credentials are resolved (default: the
    process's environment, read when a file is fetched)."""

    def __init__(
        self,
        sink: ProjectionSink,
        store: ArchiveStore | None,
        publisher: EventPublisher,
        *,
        allowed_prefixes: tuple[str, ...] = (),
        codec: AvroCodec | None = None,
        chunk: int = 20_000,
        clock: Callable[[], int] = now_us,
        on_chunk: Callable[[], None] | None = None,
        held: HeldReadings | None = None,
        forget: Callable[[str], None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.sink = sink
        self.store = store
        self.publisher = publisher
        self.allowed = allowed_prefixes
        self.codec = codec or default_codec()
        self.chunk = chunk
        self.clock = clock
        self.on_chunk = on_chunk  # tests: a hook between chunks
        self.held = held  # the readings the projection holds (``admit``)
        #: deletes a sink consumer's progress rows (``projections.replay.forget``)
        self.forget = forget
        self.env = env

    def files(self, params: RestoreParams) -> list[RestoreFile]:
        if params.urls:
            return files_by_url(self.store, params, self.allowed)
        if self.store is None:
            raise RestoreError("no archive store is configured (archive.url)")
        return files_by_time(self.store, params)

    async def __call__(self, ctx: TaskContext) -> None:
        params = RestoreParams.from_json(ctx.params)
        params.check()
        files = await asyncio.to_thread(self.files, params)
        now = self.clock()
        for f in files:
            if ctx.stop.is_set():
                return
            if f.name in ctx.done:
                continue
            # the file's identity is in the origin: a second copy of a file (another
            # name for the same records) is not taken for this file's crash redo
            processors = restore_processors(file_scope(ctx.task_id, f), now, self.held)
            try:
                counts = await self._file(ctx, f, params, processors)
            except (ArchiveError, DecodeError, RestoreError) as exc:
                reason = masked_url(str(exc))
                log.warning("restore %s: %s failed: %s", ctx.task_id, f.name, reason)
                await ctx.file_failed(f.name, reason)
                continue
            if counts is None:
                return  # stopped: the file goes on after the restart
            await ctx.file_completed(f.name, counts)
            await self._forget(ctx.task_id, f.name)

    async def _forget(self, task_id: str, name: str) -> None:
        """Once a file's completion is on the log it is never folded again: its progress
        rows go. Rows left (a crash before this, or a store that refuses the delete:
        a ClickHouse cluster's Distributed table) are harmless: no one reads them."""
        if self.forget is None:
            return
        try:
            await asyncio.to_thread(self.forget, consumer_name(task_id, name))
        except Exception as exc:  # any store's error: the task itself is done
            log.warning("restore %s: progress rows of %s left: %s", task_id, name, exc)

    async def _file(
        self, ctx: TaskContext, f: RestoreFile, params: RestoreParams, processors: list[Any]
    ) -> dict[str, int] | None:
        def start() -> tuple[FileFold, int]:
            records, size = open_file(f, self.store, self.codec, self.env)
            kept: Iterator[ArchivedRecord] = (r for r in records if params.keeps(r))
            fold = FileFold(
                kept, self.sink, consumer_name(ctx.task_id, f.name), processors, chunk=self.chunk
            )
            return fold, size

        fold, size = await asyncio.to_thread(start)
        counts = {"files": 1, "events": 0, "readings": 0, "skipped": 0, "bytes": 0}
        while True:
            if ctx.stop.is_set():
                return None
            res: ChunkResult = await asyncio.to_thread(fold.step)
            if res.deadletters:
                await self.publisher.publish(DEADLETTER, [(_key(d), d) for d in res.deadletters])
            if res.done:
                break
            counts["events"] += res.events
            counts["readings"] += res.readings
            counts["skipped"] += res.skipped
            await ctx.progress(file=f.name, **counts)
            if self.on_chunk is not None:
                self.on_chunk()
        counts["bytes"] = size
        return counts


def file_scope(task_id: str, f: RestoreFile) -> str:
    """The origin scope of one file of a task: the task id and a digest of the file's
    canonical name (``sources.canonical_name``)."""
    digest = hashlib.sha256((f.ident or f.name).encode()).hexdigest()[:16]
    return f"{task_id}/{digest}"


def _key(dead: dict[str, Any]) -> str:
    key = dead.get("key")
    if isinstance(key, bytes):
        return key.decode("utf-8", "replace")
    return str(key or dead.get("source_topic") or "")
