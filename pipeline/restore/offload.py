"""Folding restore files in a worker process, so a restore uses two cores.

An in-process restore decodes, admits ids, folds and inserts on one GIL (the inserts in
chDB's threads). With :class:`OffloadedRestoreTask` a file of the archive store is
opened, decoded and folded in a child process (``offload_child``, the same
:class:`~millrace.pipeline.restore.fold.FileFold` over a sink that asks this process);
this process answers the child's reads from its sink and writes the chunks it sends,
one chunk in flight: the child folds chunk N+1 while chunk N is inserted. Files of
different telemetry partitions fold at the same time, one child each
(:attr:`OffloadedRestoreTask.lanes`): a child's reads are about its own partition
(applied batch ids) or devices (held readings), which no other partition's file writes. Files by URL
(foreign ones among them, ``republish``) fold in-process as before.

Exactly once does not change: the child has no effects; the chunks, sequence numbers
and ranges are the ones ``FileFold`` cuts from the sink's committed progress, and this
process writes them through its sink (intent, tokens, commit). The child answers its
reads as if the chunk in flight were in the store (``offload_child``), so it makes the
in-process decisions. A child that dies (killed, out of memory) loses only what it had
not sent whole: the chunks it sent are written, a new child opens the file again and
goes on from the committed progress (up to :data:`RESTARTS` times per file, then the
file fails and a retry takes it up). Tables travel as Arrow IPC streams
(``runtime.worker``'s encoding).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import pickle
import queue
import threading
from multiprocessing.connection import Connection
from typing import Any, cast

from millrace.pipeline.archive.errors import ArchiveError, ArchiveFormatError, ArchiveStoreError
from millrace.pipeline.archive.format import ArchivedRecord
from millrace.pipeline.batches import AppliedBatches
from millrace.pipeline.errors import DecodeError
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.processors.base import StateReader
from millrace.pipeline.restore.admit import HeldReadings
from millrace.pipeline.restore.errors import RestoreError
from millrace.pipeline.restore.fold import ChunkResult, FileFold, consumer_name
from millrace.pipeline.restore.offload_child import FileJob, serve
from millrace.pipeline.restore.prefetch import Prefetch
from millrace.pipeline.restore.sources import RestoreFile, RestoreParams
from millrace.pipeline.restore.task import RestoreTask, _Opened, file_scope
from millrace.pipeline.runtime.worker import _table
from millrace.pipeline.sink import ProjectionSink, Range, SinkBatch
from millrace.pipeline.tasks import TaskContext

#: restarts of a file's dead child before the file fails
RESTARTS = 3
#: errors a child reports that are the file's (as in-process); others fail it as well
_ERRORS: dict[str, type[Exception]] = {
    "ArchiveError": ArchiveError,
    "ArchiveFormatError": ArchiveFormatError,
    "ArchiveStoreError": ArchiveStoreError,
    "DecodeError": DecodeError,
    "RestoreError": RestoreError,
}


class _Child:
    """One worker process and this side of its pipe."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that runs chDB's threads
        self.conn, theirs = ctx.Pipe(duplex=True)
        self.process: Any = ctx.Process(
            target=serve, args=(theirs,), name="millrace-restore", daemon=True
        )
        self.process.start()
        theirs.close()  # ours alone: a dead child reads as EOF

    def discard(self) -> None:
        self.conn.close()
        self.process.kill()
        self.process.join(timeout=10)


class RestoreWorkers:
    """The worker processes of one restore handler: started at first use, kept for the
    next file (two at most per lane of files folding at the same time: the file folding
    and the next one opened ahead)."""

    def __init__(self) -> None:
        self._idle: list[_Child] = []
        self._lock = threading.Lock()
        self.starts = 0  # processes started (a restart after a death counts)
        self.busy: list[_Child] = []  # tests: whose pid to kill

    def acquire(self) -> _Child:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.process.is_alive():
                    self.busy.append(child)
                    return child
                child.discard()
            self.starts += 1
        child = _Child()
        with self._lock:
            self.busy.append(child)
        return child

    def release(self, child: _Child, *, reusable: bool) -> None:
        with self._lock:
            if child in self.busy:
                self.busy.remove(child)
            if reusable and child.process.is_alive():
                self._idle.append(child)
                return
        child.discard()

    def prestart(self, n: int) -> None:
        """Start ``n`` idle workers now (their start, an interpreter importing the
        pipeline, then does not fall on the first file)."""
        children = [_Child() for _ in range(n)]
        for child in children:  # ready: imported and waiting for a file
            child.conn.send(("ping",))
            child.conn.recv()
        with self._lock:
            self.starts += n
            self._idle.extend(children)

    def pids(self) -> list[int]:
        """The worker processes' ids (busy and idle)."""
        with self._lock:
            return [c.process.pid for c in self.busy + self._idle]

    def close(self) -> None:
        """End every worker process."""
        with self._lock:
            children, self._idle = self._idle + self.busy, []
            self.busy = []
        for child in children:
            child.discard()


class RemoteFileFold:
    """A file folded by a child: :meth:`step` writes the next chunk it sent (blocking,
    as ``FileFold.step``); :meth:`close` when done or given up."""

    def __init__(
        self,
        workers: RestoreWorkers,
        job: FileJob,
        sink: ProjectionSink,
        held: HeldReadings | None,
    ) -> None:
        self.workers, self.job, self.sink, self.held = workers, job, sink, held
        self.restarts = 0
        self.finished = False
        self.written = 0
        self._send_lock = threading.Lock()
        # opened ahead, the file's reads wait until it folds (its first step): a batch
        # id of the file before it must be in the store before this file asks for it
        self._active = threading.Event()
        self._closing = False
        self._start()
        while True:
            kind, *rest = self._next()
            if kind == "opened":
                break
            self._handle_end(kind, rest)
        self.size: int = rest[0]
        job.file.extra.update(rest[1])

    def _start(self) -> None:
        self.child = self.workers.acquire()
        self.written = 0
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._reader = threading.Thread(
            target=self._read, args=(self.child.conn, self._queue), daemon=True
        )
        self._reader.start()
        self._send(("file", self.job))

    def _send(self, msg: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.child.conn.send(msg)

    def _read(self, conn: Connection, out: queue.Queue[tuple[Any, ...]]) -> None:
        """The child's messages: reads answered here (while a chunk is written), the
        rest queued for :meth:`step` in order."""
        try:
            while True:
                msg = conn.recv()
                if msg[0] == "call":
                    if msg[1] != "progress":
                        self._active.wait()
                    if self._closing:
                        return
                    self._send(self._answer(msg[1], msg[2]))
                    continue
                if msg[0] == "chunk":
                    tables = {n: _table(conn.recv_bytes()) for n in msg[4]}
                    msg = (*msg, tables)
                out.put(msg)
                if msg[0] in ("done", "error"):
                    return
        except (EOFError, OSError) as exc:
            out.put(("died", str(exc) or type(exc).__name__))

    def _answer(self, name: str, args: tuple[Any, ...]) -> tuple[str, Any]:
        try:
            if name == "progress":
                return ("answer", self.sink.progress(*args))
            if name == "applied_batches":
                found = (
                    self.sink.applied_batches(*args)
                    if isinstance(self.sink, AppliedBatches)
                    else {}
                )
                return ("answer", found)
            if name == "load_state" and isinstance(self.sink, StateReader):
                return ("answer", self.sink.load_state(*args))
            if name == "held" and self.held is not None:
                return ("answer", self.held(*args))
            return ("failed", f"no read {name!r} here")
        except Exception as exc:  # sent to the child, whose fold raises it
            return ("failed", f"{type(exc).__name__}: {exc}")

    def _next(self) -> tuple[Any, ...]:
        return self._queue.get()

    def _handle_end(self, kind: str, rest: list[Any]) -> None:
        """The child's error (the file's failure) or death (a restart)."""
        if kind == "error":
            self._finish(reusable=True)
            name, message = rest
            raise _ERRORS.get(name, RestoreError)(
                message if name in _ERRORS else f"{name}: {message}"
            )
        assert kind == "died", kind
        self._finish(reusable=False)
        self.restarts += 1
        if self.restarts > RESTARTS:
            raise RestoreError(
                f"{self.job.file.name}: the restore worker died {self.restarts} times"
            )
        self._start()

    def _finish(self, *, reusable: bool) -> None:
        self._reader.join(timeout=10)
        self.workers.release(self.child, reusable=reusable and not self._reader.is_alive())
        self.finished = True

    def step(self) -> ChunkResult:
        """Write the child's next chunk; ``done`` when the file has nothing left."""
        self._active.set()
        while True:
            kind, *rest = self._next()
            if kind == "chunk":
                return self._write(rest)
            if kind == "done":
                self._finish(reusable=True)
                return ChunkResult(done=True)
            if kind == "opened":  # a restarted child opened the file again
                continue
            self._handle_end(kind, rest)
            self.finished = False

    def _write(self, rest: list[Any]) -> ChunkResult:
        consumer, seq, ranges, _, counts, tables = rest
        span = {TopicPartition(t, p): Range(s, e) for t, p, s, e in ranges}
        self.sink.write(consumer, SinkBatch(seq, span, tables))
        self.written += 1
        try:
            self._send(("ack", self.written))
        except (EOFError, OSError):
            pass  # a dead child: its end is in the queue
        events, readings, skipped, deadletters = counts
        return ChunkResult(events, readings, skipped, deadletters)

    def close(self) -> None:
        """Stop: a child in the middle of the file is discarded (it would wait for
        acknowledgements), a finished one kept for the next file."""
        if not self.finished:
            self._closing = True
            self._active.set()  # a reader waiting to answer ends
            self.child.discard()
            self._reader.join(timeout=10)
            self.workers.release(self.child, reusable=False)
            self.finished = True


class OffloadedRestoreTask(RestoreTask):
    """:class:`RestoreTask` with the archive store's files folded by worker processes
    (``restore.worker``), two files of different partitions at a time (``lanes``:
    ``task.file_queues``; each child answers its reads from the store and its own chunk
    in flight, which is all a file of its partition is decided on); everything else as
    the base class."""

    lanes = 2

    def __init__(self, *args: Any, workers: RestoreWorkers | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.workers = workers or RestoreWorkers()

    def _open(
        self, ctx: TaskContext, f: RestoreFile, params: RestoreParams, now: int
    ) -> asyncio.Task[_Opened]:
        if f.url is not None or self.store is None:  # by URL (perhaps foreign): in-process
            return super()._open(ctx, f, params, now)
        job = FileJob(
            file=f,
            store_url=self.store.url,
            store_fs=self.store.fs,
            codec=_picklable(self.codec),
            env=None if self.env is None else dict(self.env),
            params=params,
            consumer=consumer_name(ctx.task_id, f.name),
            scope=file_scope(ctx.task_id, f),
            now_us=now,
            chunk=self.chunk,
            held=self.held is not None,
        )

        def start() -> _Opened:
            remote = RemoteFileFold(self.workers, job, self.sink, self.held)
            # the task drives it as a FileFold (step) and its records (close)
            return _Opened(
                cast(FileFold, remote), cast(Prefetch[ArchivedRecord], remote), remote.size
            )

        return asyncio.ensure_future(asyncio.to_thread(start))


def _picklable(codec: Any) -> Any:
    """The handler's codec when it pickles (a registry client may not), else None: the
    child decodes with the default codec (the archive embeds the schemas)."""
    try:
        pickle.dumps(codec)
    except Exception:
        return None
    return codec
