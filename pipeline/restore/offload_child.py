"""The restore worker process's side (``restore.offload``): one file at a time, opened,
decoded and folded here, its chunks written by the parent.

The child runs the same :class:`~millrace.pipeline.restore.fold.FileFold` as an
in-process restore, over :class:`PipeSink`: a sink whose reads (progress, applied batch
ids, state rows, held readings) are asked of the parent, and whose ``write`` sends the
chunk's tables to the parent, which writes them through the real sink. The child goes
on with the next chunk while the parent writes (one chunk in flight at most), so every
read it makes is answered as if the chunk in flight were already in the store:

* applied batch ids: the store's answer, and the in-flight chunk's ``applied_batches``
  rows for the ids the store does not name yet;
* held readings: the store's answer, and the in-flight chunk's readings in the span;
* state rows (stateful folds, topics other than telemetry) and progress: asked only
  after the parent acknowledged every write (no chunk in flight).

So every decision is the one the in-process restore makes over the same chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.batches import Applied, AppliedBatches
from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.processors.base import StateReader
from millrace.pipeline.restore.errors import RestoreError
from millrace.pipeline.restore.fold import ChunkResult, FileFold, restore_processors
from millrace.pipeline.restore.prefetch import Prefetch
from millrace.pipeline.restore.sources import RestoreFile, RestoreParams, open_file
from millrace.pipeline.runtime.worker import _ipc
from millrace.pipeline.sink import Progress, ProjectionSink, SinkBatch
from millrace.pipeline.topics import TELEMETRY


@dataclass(slots=True)
class FileJob:
    """What the child needs to fold one file (pickled to it)."""

    file: RestoreFile
    store_url: str  # the archive store (its lock does not pickle: made again here)
    store_fs: Any
    codec: AvroCodec | None
    env: dict[str, str] | None
    params: RestoreParams
    consumer: str
    scope: str
    now_us: int
    chunk: int
    held: bool


#: a reading the projection holds: (identity, signal, ts µs)
Held = tuple[str, str, int]


class ParentError(RestoreError):
    """The parent could not answer a read (the fold fails with it)."""


class PipeSink(ProjectionSink, StateReader, AppliedBatches):
    """The parent's sink, over the pipe (see the module doc)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sent = 0  # chunks sent
        self.acked = 0  # chunks the parent wrote
        self.inflight: SinkBatch | None = None  # sent, not yet acknowledged
        self.unsent: tuple[str, SinkBatch] | None = None

    def _recv(self) -> tuple[Any, ...] | None:
        """The parent's next message; None for an acknowledgement (counted)."""
        msg: tuple[Any, ...] = self.conn.recv()
        if msg[0] != "ack":
            return msg
        self.acked = msg[1]
        if self.acked >= self.sent:
            self.inflight = None
        return None

    def settle(self) -> None:
        """Wait until the parent wrote every chunk sent."""
        while self.acked < self.sent:
            self._recv()

    def call(self, name: str, *args: Any) -> Any:
        self.conn.send(("call", name, args))
        msg = None
        while msg is None:
            msg = self._recv()
        kind, value = msg
        if kind != "answer":
            raise ParentError(f"the restore could not answer {name}: {value}")
        return value

    def progress(self, consumer: str) -> Progress:
        self.settle()
        found: Progress = self.call("progress", consumer)
        return found

    def write(
        self, consumer: str, batch: SinkBatch, fence: Callable[[], None] | None = None
    ) -> None:
        """Kept until :meth:`send` (with the chunk's counts, which the fold makes after
        its write): the chunk is one message, whole or not at all."""
        self.settle()  # one chunk in flight at most
        self.unsent = (consumer, batch)

    def send(self, res: ChunkResult) -> None:
        """The chunk :meth:`write` kept, and its counts, to the parent."""
        assert self.unsent is not None
        consumer, batch = self.unsent
        self.unsent = None
        names = list(batch.tables)
        streams = [_ipc(batch.tables[n]) for n in names]
        ranges = [(tp.topic, tp.partition, r.start, r.end) for tp, r in batch.ranges.items()]
        counts = (res.events, res.readings, res.skipped, res.deadletters)
        self.conn.send(("chunk", consumer, batch.seq, ranges, names, counts))
        for stream in streams:
            self.conn.send_bytes(stream)
        self.sent += 1
        self.inflight = batch
        if {tp.topic for tp in batch.ranges} != {TELEMETRY}:
            self.settle()  # stateful folds read their rows back: nothing in flight

    def load_state(self, table: str, key: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.settle()
        rows: dict[str, dict[str, Any]] = self.call("load_state", table, key, list(keys))
        return rows

    def applied_batches(
        self, partition: int, since_us: int, keys: Sequence[str] | None = None
    ) -> dict[str, Applied]:
        asked = None if keys is None else list(keys)
        # in flight when asked: the store's answer may be from before its write (an
        # acknowledgement that arrives with the answer does not say otherwise)
        inflight = self.inflight
        found: dict[str, Applied] = self.call("applied_batches", partition, since_us, asked)
        table = inflight.tables.get("applied_batches") if inflight else None
        if table is None:
            return found
        wanted = None if asked is None else set(asked)
        rows = zip(
            table["partition"].to_pylist(),
            table["batch_key"].to_pylist(),
            table["origin"].to_pylist(),
            table["expires_us"].to_pylist(),
            strict=True,
        )
        for part, key, origin, expires in rows:
            new = key not in found and (wanted is None or key in wanted)
            if new and part == partition and expires > since_us:
                found[key] = Applied(origin, expires)
        return found

    def held(
        self, identities: Sequence[str], first_us: int, last_us: int
    ) -> set[tuple[str, str, int]]:
        found: set[tuple[str, str, int]] = self.call("held", list(identities), first_us, last_us)
        readings = self.inflight.tables.get("readings") if self.inflight else None
        if readings is None or readings.num_rows == 0:
            return found
        ts = pc.cast(readings["ts"], pa.int64())
        mask = pc.and_(
            pc.is_in(readings["identity"], value_set=pa.array(list(identities), pa.string())),
            pc.and_(pc.greater_equal(ts, first_us), pc.less_equal(ts, last_us)),
        )
        kept = readings.filter(mask)
        if kept.num_rows:
            found.update(
                zip(
                    kept["identity"].to_pylist(),
                    kept["signal"].to_pylist(),
                    pc.cast(kept["ts"], pa.int64()).to_pylist(),
                    strict=True,
                )
            )
        return found


def fold_file(conn: Connection, job: FileJob) -> None:
    """Open ``job``'s file and fold it chunk by chunk (the parent writes)."""
    store = ArchiveStore(job.store_url, fs=job.store_fs)
    records, size = open_file(job.file, store, job.codec, job.env)
    conn.send(("opened", size, dict(job.file.extra)))
    kept = Prefetch(r for r in records if job.params.keeps(r))
    sink = PipeSink(conn)
    try:
        held = sink.held if job.held else None
        processors = restore_processors(job.scope, job.now_us, held)
        fold = FileFold(kept, sink, job.consumer, processors, chunk=job.chunk)
        while True:
            res = fold.step()
            if res.done:
                break
            sink.send(res)
        sink.settle()
        conn.send(("done",))
    finally:
        kept.close()


def serve(conn: Connection) -> None:
    """The child's loop: a file per job until its pipe closes."""
    from millrace.pipeline.no_pandas import skip_pandas
    from millrace.pipeline.runtime.gc_policy import GcConfig, apply

    skip_pandas()
    apply(GcConfig())  # the ingest path's collector policy, as in the parent
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed the pipe, or died
        if msg[0] == "ping":
            conn.send(("pong",))
            continue
        if msg[0] != "file":
            continue  # an acknowledgement of a failed file's last chunk
        job: FileJob = msg[1]
        try:
            fold_file(conn, job)
        except (EOFError, OSError, BrokenPipeError):
            return
        except Exception as exc:  # the file's failure, raised by the parent
            try:
                conn.send(("error", type(exc).__name__, str(exc)))
            except (EOFError, OSError):
                return
