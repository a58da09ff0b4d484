"""FoldWorker: decode and fold telemetry in a child process (issue 18 item 3).

In ``millrace run`` one interpreter serves the API, runs the connectors, appends to
the log and inserts into chDB; decoding and folding telemetry is the largest part of
its Python work, and its GIL is the limit (``bench/PROFILE.md``). With
``runtime.worker.enabled`` the runtime hands each batch's records of the offloaded
topics (``runtime.worker.topics``, telemetry by default) to one worker process, which
decodes them and runs the topic's processor, and sends back the output tables as Arrow
IPC streams and the dead letters; the runtime writes them through its sink as before.
The process that serves the API then never decodes or folds those records.

Exactly-once does not change: the worker has no effects. It is a pure function of the
records it is sent and of the answers to the reads its processor makes of the store
(the telemetry fold's applied batch ids, ``pipeline.batches``), which it asks of the
runtime over the same pipe (the runtime's thread answers from its sink, as it would
in-process). The runtime writes with its intent, deduplication tokens and commit
(``pipeline.sink``). A worker that dies (killed, out of memory) fails the step before
anything of the batch is written: the runtime's retry starts a new worker, whose
processor loads its caches from the store as a restarted engine's does, and redoes
the batch over the same ranges. A step that fails otherwise (an insert) resyncs the
worker (:meth:`FoldWorker.reset`: its processors start afresh, their caches loaded
from the store again), so the batch ledger holds only what was written. A runtime
that dies takes the worker with it (the worker ends when its pipe closes). The
runtime folds the next step in the worker while it inserts this one
(``pipeline.runtime.ahead``, which says why that stays exactly-once).

Records travel with their positions (offset, time, key, bytes): the local log is one
process's files, so the runtime reads them and the worker never opens the log.

Decode once: records the worker folds are not decoded in the runtime's process, so the
runtime's feed (``pipeline.runtime.feed``) carries no events of offloaded topics; there
the alarm runner and the live-stream tail read and decode the log themselves (only
when a rule judges telemetry or someone follows ``latest``).
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa

from millrace.pipeline.batches import Applied, AppliedBatches
from millrace.pipeline.errors import ConfigError, MillraceError
from millrace.pipeline.processors.base import Outputs, Processor, StatefulProcessor, StateReader
from millrace.pipeline.runtime.worker_config import WorkerConfig

__all__ = ["FoldWorker", "FoldWorkerError", "WorkerConfig"]

#: the store reads a worker's processor may ask of the runtime (``AppliedBatches``)
_CALLS = frozenset({"applied_batches", "applied_keys", "restore_mark"})
#: how often a runtime waiting for its worker checks that it still lives
_POLL_S = 1.0


class FoldWorkerError(MillraceError):
    """The fold worker died, or its fold failed (the runtime's step is retried)."""


@dataclass(frozen=True, slots=True)
class _Record:
    offset: int
    timestamp_us: int
    key: bytes | None
    value: bytes


class FoldWorker:
    """The runtime's side of one worker process (started at first use, restarted after
    it died). :meth:`fold` blocks: call it on the runtime's thread."""

    def __init__(self, processors: Sequence[Processor], topics: Sequence[str]) -> None:
        self.topics = frozenset(topics)
        offloaded = [p for p in processors if self.topics & set(p.topics)]
        for p in offloaded:
            if isinstance(p, StatefulProcessor):
                raise ConfigError(
                    f"{type(p).__name__} reads its state rows from the store: "
                    "fold its topics in the runtime (runtime.worker.topics)"
                )
            if not set(p.topics) <= self.topics:
                raise ConfigError(
                    f"{type(p).__name__} folds {sorted(p.topics)}: offload all or none"
                )
        # a fresh copy per worker process: a restarted worker starts from the store
        self._blob = pickle.dumps(offloaded)
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None
        #: worker processes started (a restart after a death counts)
        self.starts = 0
        #: resyncs (:meth:`reset`): the worker's folds started again from the store
        self.resets = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _ensure(self) -> Connection:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            return self._conn
        self._discard()
        ctx = mp.get_context("spawn")  # never fork a process that runs chDB's threads
        ours, theirs = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=_serve, args=(theirs, self._blob), name="millrace-fold", daemon=True
        )
        proc.start()
        theirs.close()  # ours alone: a dead worker reads as EOF
        self._process, self._conn = proc, ours
        self.starts += 1
        return ours

    def fold(
        self, topic: str, partition: int, records: Sequence[Any], reader: object | None
    ) -> Outputs:
        """The output of the topic's processor for ``records`` (log records), folded in
        the worker; ``reader`` answers its store reads (the sink)."""
        with self._lock:
            conn = self._ensure()
            rows = [(r.offset, r.timestamp_us, r.key, r.value) for r in records]
            try:
                # no store to ask (a sink that is no AppliedBatches): the fold's
                # caches alone, as in-process
                asks = isinstance(reader, AppliedBatches)
                conn.send(("fold", topic, partition, rows, asks))
                while True:
                    while not conn.poll(_POLL_S):
                        if not self._process.is_alive():
                            raise EOFError("the worker ended")
                    msg = conn.recv()
                    if msg[0] == "call":
                        conn.send(_answer(reader, msg[1], msg[2]))
                        continue
                    if msg[0] == "error":
                        raise FoldWorkerError(f"the fold worker failed: {msg[1]}")
                    # the tables follow the header, one Arrow IPC stream each
                    _, names, deadletters = msg
                    tables = {n: _table(conn.recv_bytes()) for n in names}
                    return Outputs(tables, deadletters)
            except (EOFError, OSError) as exc:
                self._discard()
                raise FoldWorkerError(f"the fold worker died ({exc})") from exc

    def reset(self) -> None:
        """Start the worker's folds afresh (their caches load from the store again, as
        a restarted worker's do), after the fold in flight if any: a fold the runtime
        does not write (a failed step, a discarded fold ahead) must not stay in the
        batch ledger. Cheaper than a restart; a dead worker is restarted at next use."""
        with self._lock:
            if self._conn is None or self._process is None or not self._process.is_alive():
                return
            try:
                self._conn.send(("reset",))
                self.resets += 1
            except (EOFError, OSError):
                self._discard()

    def _discard(self) -> None:
        conn, proc = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)

    def close(self) -> None:
        """End the worker (it exits when its pipe closes)."""
        with self._lock:
            self._discard()


def _answer(reader: object | None, name: str, args: tuple[Any, ...]) -> tuple[str, Any]:
    if name not in _CALLS or not isinstance(reader, AppliedBatches):
        return ("failed", f"no store read {name!r} here")
    try:
        return ("answer", getattr(reader, name)(*args))
    except Exception as exc:  # sent to the worker, whose fold raises it: the step fails
        return ("failed", f"{type(exc).__name__}: {exc}")


def _ipc(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


# -- the worker process -------------------------------------------------------------------


class _RemoteReader(StateReader, AppliedBatches):
    """The sink's applied-batches reads, asked of the runtime over the pipe (state rows
    never: stateful processors are not offloaded)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _call(self, name: str, *args: Any) -> Any:
        self.conn.send(("call", name, args))
        kind, value = self.conn.recv()
        if kind != "answer":
            raise FoldWorkerError(f"the runtime could not answer {name}: {value}")
        return value

    def applied_batches(
        self, partition: int, since_us: int, keys: Sequence[str] | None = None
    ) -> dict[str, Applied]:
        found: dict[str, Applied] = self._call(
            "applied_batches", partition, since_us, None if keys is None else list(keys)
        )
        return found

    def applied_keys(
        self, partition: int, since_us: int, after: str | None, limit: int
    ) -> list[tuple[str, int]]:
        page: list[tuple[str, int]] = self._call("applied_keys", partition, since_us, after, limit)
        return page

    def restore_mark(self) -> tuple[int, int]:
        mark: tuple[int, int] = self._call("restore_mark")
        return mark

    def load_state(self, table: str, key: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        raise FoldWorkerError(f"state rows of {table} are not read in the fold worker")


def _serve(conn: Connection, blob: bytes) -> None:
    """The worker's loop: fold what the runtime sends until its pipe closes."""
    from millrace.pipeline.codec import default_codec
    from millrace.pipeline.no_pandas import skip_pandas
    from millrace.pipeline.processors.decoding import decode_records, process_events
    from millrace.pipeline.runtime.gc_policy import GcConfig, apply

    skip_pandas()

    def fresh() -> dict[str, Processor]:
        processors: list[Processor] = pickle.loads(blob)
        return {t: p for p in processors for t in p.topics}

    by_topic = fresh()
    codec = default_codec()
    reader = _RemoteReader(conn)
    apply(GcConfig())  # the ingest path's collector policy, as in the runtime's process
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the runtime closed the pipe, or died
        if msg[0] == "reset":
            by_topic = fresh()
            continue
        _, topic, partition, rows, asks = msg
        streams: dict[str, pa.Buffer] = {}
        try:
            records = [_Record(*row) for row in rows]
            events, dead = decode_records(codec, topic, partition, records)
            out = process_events(by_topic[topic], events, reader if asks else None)
            streams = {name: _ipc(table) for name, table in out.tables.items()}
            reply: tuple[Any, ...] = ("done", list(streams), dead + out.deadletters)
        except (EOFError, OSError):
            return
        except Exception as exc:  # the runtime's step fails with it and is retried
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
            for stream in streams.values():
                conn.send_bytes(stream)  # the buffer as it is: no pickling, no copy here
        except (EOFError, OSError):
            return
