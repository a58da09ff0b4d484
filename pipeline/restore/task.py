"""The ``restore`` task kind: every file of the restore folded once, each on its own.

A file that is missing, not an archive, has a wrong checksum or an unknown schema fails
with the reason (``TaskContext.file_failed``); the task goes on with the others and
ends failed naming them. A retry runs the task again: completed files are skipped (the
task's events say which), failed ones are redone, and a file a crash left half-folded
goes on from its sink consumer's committed position.

A file of this deployment's archive is folded straight into the projections; a foreign
one (``sources.is_foreign``) is appended to the log (``republish``, when the task has
the ``log``), and the live fold folds it: its counts are the records appended, those an
earlier run or task appended being ``skipped``.

A completed file's sink progress rows are deleted (``forget``: on a ClickHouse cluster
from every node's ``progress_local``, the process role's ``progress_forget``): a
completed task leaves none, a failed file keeps its rows for the retry. A foreign
file's position (consumer ``republish/<file id>``) is kept: it is what makes a second
restore of the file append nothing. URL passwords are masked in file
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
from dataclasses import dataclass
from typing import Any

from millrace.pipeline.archive.errors import ArchiveError
from millrace.pipeline.archive.format import ArchivedRecord
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.errors import DecodeError
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.restore.admit import HeldReadings
from millrace.pipeline.restore.fold import ChunkResult, FileFold, consumer_name, restore_processors
from millrace.pipeline.restore.prefetch import Prefetch
from millrace.pipeline.restore.republish import Republish, file_id
from millrace.pipeline.restore.sources import (
    RestoreError,
    RestoreFile,
    RestoreParams,
    files_by_time,
    files_by_url,
    is_foreign,
    masked_url,
    open_file,
)
from millrace.pipeline.sink import ProjectionSink
from millrace.pipeline.tasks import TaskContext
from millrace.pipeline.topics import DEADLETTER, TELEMETRY

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
        log: EventLog | None = None,
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
        #: where a foreign file's records go (``republish``); None: folded straight in
        self.log = log

    #: how many files fold at the same time (files of different partitions, see
    #: :func:`file_queues`); in-process one: decode and fold hold the GIL
    lanes = 1

    def files(self, params: RestoreParams) -> list[RestoreFile]:
        if params.urls:
            return files_by_url(self.store, params, self.allowed)
        if self.store is None:
            raise RestoreError("no archive store is configured (archive.url)")
        return files_by_time(self.store, params)

    async def __call__(self, ctx: TaskContext) -> None:
        params = RestoreParams.from_json(ctx.params)
        params.check()
        files = [f for f in await asyncio.to_thread(self.files, params) if f.name not in ctx.done]
        now = self.clock()
        queues = file_queues(files, self.lanes)
        if len(queues) == 1:
            await self._fold_files(ctx, queues[0], params, now)
            return
        # files of different partitions at the same time; one ending in error ends all
        running = [asyncio.ensure_future(self._fold_files(ctx, q, params, now)) for q in queues]
        try:
            await asyncio.gather(*running)
        except BaseException:
            for t in running:
                t.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise

    async def _fold_files(
        self, ctx: TaskContext, files: list[RestoreFile], params: RestoreParams, now: int
    ) -> None:
        """Fold ``files`` one after the other (in this order)."""
        # the next file is opened (read, checked, decoded ahead) while this one folds
        ahead: asyncio.Task[_Opened] | None = None
        try:
            for i, f in enumerate(files):
                if ctx.stop.is_set():
                    return
                opening, ahead = ahead or self._open(ctx, f, params, now), None
                try:
                    opened = await opening
                except (ArchiveError, DecodeError, RestoreError) as exc:
                    await self._failed(ctx, f, exc)
                    continue
                finally:
                    if i + 1 < len(files):
                        ahead = self._open(ctx, files[i + 1], params, now)
                try:
                    counts = await self._chunks(ctx, f, opened)
                except (ArchiveError, DecodeError, RestoreError) as exc:
                    await self._failed(ctx, f, exc)
                    continue
                finally:
                    await asyncio.to_thread(opened.records.close)
                if counts is None:
                    return  # stopped: the file goes on after the restart
                await ctx.file_completed(f.name, counts)
                await self._forget(ctx.task_id, f.name)
        finally:
            if ahead is not None:
                await _close(ahead)

    async def _failed(self, ctx: TaskContext, f: RestoreFile, exc: Exception) -> None:
        reason = masked_url(str(exc))
        log.warning("restore %s: %s failed: %s", ctx.task_id, f.name, reason)
        await ctx.file_failed(f.name, reason)

    async def _forget(self, task_id: str, name: str) -> None:
        """Once a file's completion is on the log it is never folded again: its progress
        rows go. Rows left (a crash before this, or a store that refuses the delete)
        are harmless: no one reads them."""
        if self.forget is None:
            return
        try:
            await asyncio.to_thread(self.forget, consumer_name(task_id, name))
        except Exception as exc:  # any store's error: the task itself is done
            log.warning("restore %s: progress rows of %s left: %s", task_id, name, exc)

    def _open(
        self, ctx: TaskContext, f: RestoreFile, params: RestoreParams, now: int
    ) -> asyncio.Task[_Opened]:
        """Open ``f`` in a thread: read and check it, start decoding its records ahead
        (``prefetch``), read its sink consumer's progress."""
        # the file's identity is in the origin: a second copy of a file (another
        # name for the same records) is not taken for this file's crash redo
        processors = restore_processors(file_scope(ctx.task_id, f), now, self.held)

        def start() -> _Opened:
            records, size = open_file(f, self.store, self.codec, self.env)
            if self.log is not None and is_foreign(f, self.store):
                return self._republish(f, params, records, size)
            kept = Prefetch(r for r in records if params.keeps(r))
            consumer = consumer_name(ctx.task_id, f.name)
            try:
                fold = FileFold(kept, self.sink, consumer, processors, chunk=self.chunk)
            except BaseException:
                kept.close()
                raise
            return _Opened(fold, kept, size)

        return asyncio.ensure_future(asyncio.to_thread(start))

    def _republish(
        self, f: RestoreFile, params: RestoreParams, records: Iterator[ArchivedRecord], size: int
    ) -> _Opened:
        """A foreign file: its records onto the log (indices count every record of the
        file, so the filter is applied by :class:`Republish`)."""
        assert self.log is not None
        ahead = Prefetch(records)
        fid = file_id(str(f.extra["sha256"]), params)
        republish = Republish(
            ahead, self.log, self.sink, fid, self.codec, self.publisher,
            keeps=params, chunk=self.chunk, held=self.held,
        )  # fmt: skip
        return _Opened(None, ahead, size, republish)

    async def _chunks(
        self, ctx: TaskContext, f: RestoreFile, opened: _Opened
    ) -> dict[str, int] | None:
        counts = {"files": 1, "events": 0, "readings": 0, "skipped": 0, "bytes": 0}
        while True:
            if ctx.stop.is_set():
                return None
            res: ChunkResult
            if opened.republish is not None:
                res = await opened.republish.step()
            else:
                assert opened.fold is not None
                res = await asyncio.to_thread(opened.fold.step)
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
        counts["bytes"] = opened.size
        if opened.republish is not None:
            counts["skipped"] += opened.republish.already
        return counts


@dataclass(slots=True)
class _Opened:
    """A file ready to fold (or, foreign, to append to the log): its fold, its records
    read ahead, its size."""

    fold: FileFold | None
    records: Prefetch[ArchivedRecord]
    size: int
    republish: Republish | None = None


async def _close(opening: asyncio.Task[_Opened]) -> None:
    """A file opened ahead and not folded: its reading ahead stopped."""
    try:
        opened = await opening
    except Exception:  # its error is the file's, reported when it is folded
        return
    await asyncio.to_thread(opened.records.close)


def file_queues(files: list[RestoreFile], lanes: int) -> list[list[RestoreFile]]:
    """``files`` split into at most ``lanes`` sequences that can fold at the same time.

    A file's lane is its telemetry partition: batch ids are admitted per partition
    (``applied_batches(partition, ...)``), and a device's batches are in the partition its
    key hashes to. A file of another topic goes with every file of its topic (a
    stateful fold reads and writes its rows by key; one topic at a time keeps the
    in-process order whatever the keys), and files without a manifest (by URL) all in one
    lane. Each lane keeps the order of ``files``; lanes are shared out by their readings
    (then records), the largest first, each to the sequence with the least so far."""
    if lanes <= 1 or len(files) <= 1:
        return [list(files)]
    groups: dict[tuple[str, int], list[RestoreFile]] = {}
    for f in files:
        groups.setdefault(_lane_key(f), []).append(f)
    weight = {k: (sum(f.readings for f in g), sum(f.records for f in g)) for k, g in groups.items()}
    load: list[tuple[int, int]] = [(0, 0)] * min(lanes, len(groups))
    lane: dict[tuple[str, int], int] = {}
    for key in sorted(groups, key=lambda k: weight[k], reverse=True):
        i = min(range(len(load)), key=lambda j: load[j])
        lane[key] = i
        load[i] = (load[i][0] + weight[key][0], load[i][1] + weight[key][1])
    out: list[list[RestoreFile]] = [[] for _ in load]
    for f in files:
        out[lane[_lane_key(f)]].append(f)
    return out


def _lane_key(f: RestoreFile) -> tuple[str, int]:
    m = f.manifest
    if m is None:
        return ("", -1)
    return (m.topic, m.partition if m.topic == TELEMETRY else -1)


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
