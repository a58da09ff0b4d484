"""A foreign archive file restored onto the log: its records appended once, then folded live.

Why. The log is the truth: a replay (``projections.replay``) rebuilds the projections
from the log and, below its retention, from this deployment's archive
(``pipeline.log.archive_backed``). A file this deployment's archiver wrote (its
manifest is on the archive store: by path, or a copy elsewhere with the same sha256)
holds records that history already has, and is folded straight into the projections
as before (``fold``). A *foreign* file — another site's archive, files other tools
wrote — is in neither: folded straight in, a later replay would drop it. So its
records are appended to the log instead, to the topic they belong to, keyed as they
were (the log's partitioning), with their headers, their events re-encoded in the
current schema (batch ids kept) and the header ``millrace-restored:
<file id>/<index>``; the live fold applies them like any other record, the archiver
archives them, and every replay folds them again. (Copying the file into the archive
store was the other way: the replay would have to fold such files beside the log, whose
offsets they do not share, in both deployments and on a cluster; the log already
carries records everywhere, Kafka included.)

What "restored" means then: the task completes when the file's records are on the log;
the projections show them once the live fold has folded them (its lag). The topic's
time (log append time) of a restored record is when it was restored: a later restore
*by time* finds it there, and the non-telemetry folds (identities, alarms, status) take
it as the newest event of its key, as if it had just arrived.

Exactly once, per file (its id: the sha256 of its bytes, with the restore's identity
and time filter when it has one). Progress is kept in the projection store's sink
progress (``ProjectionSink``, consumer ``republish/<file id>``, which no task's
``forget`` deletes): the committed position is the index of the next record to append.
Each chunk of records is written as a sink batch without tables whose *fence* — run
after the intent is stored, before the commit (``pipeline.sink``) — appends the chunk;
the intent also records each log partition's end offset before the append. After a
crash (kill -9) a pending intent is redone: the partitions are read from those offsets
on, the records carrying this file's header are the ones already appended, and only the
rest of the chunk is appended. So

* a crash anywhere — before, during (Kafka and the local log may keep part of a batch)
  or after the append, before the commit — appends each record once;
* a second restore of the file, in the same task or in another one, finds the position
  at the file's end and appends nothing (counted as ``skipped``);
* telemetry is protected twice more: a batch one of whose readings — (identity,
  signal, source time) — the projection holds already is not appended (``held``, the
  direct fold's check: the same data ingested here, or restored, longer ago than any id
  is remembered), and a restored batch keeps its batch id, so the live fold drops an id
  it applied within the idempotency window. A redone chunk decides again for the
  records not on the log yet; those on it are skipped by their header.

Limits: the position lives in ``millrace.progress``; a projection store started empty
(a new ClickHouse, ``drop_projections``, everything folded again from the log) has
forgotten it. Restored again after that, the file's telemetry is still not appended
(the rebuilt projection holds its readings: the ``held`` check), but its other records
(identity, alarm, audit events) are, and are applied again as the newest of their keys.
Two tasks of the runner never run at once, so no two restores append one file together.
Records of the ``tasks`` topic are not appended (old tasks would run again); an
undecodable record is dead-lettered (keyed by its place in the file, so a redone
chunk's dead letter is the same row).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from millrace.pipeline.archive.format import ArchivedRecord, topic_schema
from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.log.base import EventLog, Message, TopicPartition
from millrace.pipeline.restore.admit import HeldReadings, reading_keys
from millrace.pipeline.restore.fold import ChunkResult, _undecodable
from millrace.pipeline.restore.sources import RestoreParams
from millrace.pipeline.sink import ProjectionSink, Range, SinkBatch
from millrace.pipeline.timestamps import MAX_TS_US, MIN_TS_US
from millrace.pipeline.topics import DEADLETTER, TASKS, TELEMETRY

HEADER = "millrace-restored"
#: the sink "partition" whose position is the file's next record index
FILE_TP = TopicPartition("file", 0)
#: the log partitions' end offsets before a chunk's append, in its intent
LOG_PREFIX = "log:"
_SCAN = 5_000


def file_id(sha256: str, params: RestoreParams) -> str:
    """The file's id: its bytes' sha256, with the restore's filter when it has one (a
    filtered restore appends part of the file: another position)."""
    narrowed = {
        k: v for k, v in params.to_json().items() if k in ("start_us", "end_us", "identities")
    }
    if not narrowed:
        return sha256[:32]
    digest = hashlib.sha256(json.dumps(narrowed, sort_keys=True).encode()).hexdigest()
    return f"{sha256[:32]}-{digest[:12]}"


def republish_consumer(fid: str) -> str:
    return f"republish/{fid}"


@dataclass(slots=True)
class _Chunk:
    start: int  # index of the chunk's first record in the file
    records: list[ArchivedRecord]
    log_starts: dict[int, int] | None  # a redo: the partitions' ends before its append


class Republish:
    """One foreign file's records appended to ``log``, a chunk per :meth:`step`
    (async: the sink's blocking calls run in threads, the append on the loop)."""

    def __init__(
        self,
        records: Iterator[ArchivedRecord],
        log: EventLog,
        sink: ProjectionSink,
        fid: str,
        codec: AvroCodec,
        publisher: EventPublisher,
        *,
        keeps: RestoreParams | None = None,
        chunk: int = 20_000,
        held: HeldReadings | None = None,
    ) -> None:
        self.records = records
        self.log = log
        self.sink = sink
        self.fid = fid
        self.codec = codec
        self.publisher = publisher
        self.keeps = keeps
        self.chunk = chunk
        self.held = held  # the readings the projection holds (``admit``)
        self.consumer = republish_consumer(fid)
        self.index = 0  # of the next record the file gives
        self._started = False
        self.next = 0
        self.seq = 0
        self.pending: Range | None = None
        self.pending_logs: dict[int, int] = {}
        self.already = 0  # records below the committed position, not appended again

    async def _start(self) -> None:
        progress = await asyncio.to_thread(self.sink.progress, self.consumer)
        self.next = progress.positions.get(FILE_TP, 0)
        self.seq = progress.last_seq
        self.pending = progress.pending.get(FILE_TP)
        self.pending_logs = {
            tp.partition: r.start for tp, r in progress.pending.items() if tp != FILE_TP
        }
        self._started = True

    def _take(self) -> _Chunk | None:
        """The next chunk: the pending intent's records after a crash, else up to
        ``chunk`` records from the committed position on."""
        redo, self.pending = self.pending, None
        first = redo.start if redo is not None else self.next
        size = redo.end - redo.start if redo is not None else self.chunk
        out: list[ArchivedRecord] = []
        for rec in self.records:
            i = self.index
            self.index += 1
            if i < first:
                self.already += 1  # appended by an earlier run (this task or another)
                continue
            out.append(rec)
            if len(out) >= size:
                break
        if not out:
            return None
        start = self.index - len(out)
        return _Chunk(start, out, dict(self.pending_logs) if redo is not None else None)

    async def step(self) -> ChunkResult:
        """Append the next chunk; ``done`` when the file has nothing left (records an
        earlier run appended are counted in :attr:`already`)."""
        if not self._started:
            await self._start()
        chunk = await asyncio.to_thread(self._take)
        if chunk is None:
            return ChunkResult(done=True)
        res = ChunkResult()
        topic = chunk.records[0].topic
        parts = range(self.log.partitions(topic))
        starts = chunk.log_starts
        if starts is None:
            starts = {p: (await self.log.offsets(topic, p))[1] for p in parts}
        done = await self._appended(topic, starts) if chunk.log_starts is not None else set()
        messages: list[Message] = []
        dead: list[dict[str, Any]] = []
        wanted = [
            (i, rec)
            for i, rec in enumerate(chunk.records, start=chunk.start)
            if i not in done and rec.topic != TASKS and (not self.keeps or self.keeps.keeps(rec))
        ]
        held = await asyncio.to_thread(self._held, wanted)
        res.skipped += len(chunk.records) - len(wanted) + len(held)
        for i, rec in wanted:
            if i in held:
                continue
            if rec.value is None:
                dead.append(_undecodable(rec))
                continue
            messages.append(self._message(i, rec))
            res.events += 1
            if rec.topic == TELEMETRY:
                res.readings += sum(1 for _ in reading_keys(rec.value))
        end = chunk.start + len(chunk.records)
        seq = self.seq + 1  # no tables: the sequence names no token
        ranges = {FILE_TP: Range(chunk.start, end)}
        for p, at in starts.items():
            ranges[TopicPartition(LOG_PREFIX + topic, p)] = Range(at, at)
        loop = asyncio.get_running_loop()

        def fence() -> None:
            asyncio.run_coroutine_threadsafe(self._append(topic, messages, dead), loop).result()

        await asyncio.to_thread(self.sink.write, self.consumer, SinkBatch(seq, ranges, {}), fence)
        self.next, self.seq = end, seq
        return res

    def _held(self, records: Sequence[tuple[int, ArchivedRecord]]) -> set[int]:
        """Indices of the telemetry batches one of whose readings the projection holds
        (one query over their identities and time span, as ``admit`` asks)."""
        if self.held is None:
            return set()
        keyed = {
            i: list(reading_keys(rec.value))
            for i, rec in records
            if rec.topic == TELEMETRY and rec.value is not None
        }
        times = [min(max(ts, MIN_TS_US), MAX_TS_US - 1) for ks in keyed.values() for *_, ts in ks]
        if not times:
            return set()
        identities = sorted({k[0] for ks in keyed.values() for k in ks})
        present = self.held(identities, min(times), max(times))
        return {i for i, ks in keyed.items() if any(k in present for k in ks)}

    def _message(self, i: int, rec: ArchivedRecord) -> Message:
        assert rec.value is not None
        if rec.datum is not None:
            value = topic_schema(rec.topic).header + rec.datum
        else:
            value = self.codec.encode(rec.topic, rec.value)
        mark = (HEADER, f"{self.fid}/{i}".encode())
        return Message(value, rec.key, None, (*rec.headers, mark))

    async def _append(
        self, topic: str, messages: Sequence[Message], dead: Sequence[dict[str, Any]]
    ) -> None:
        if messages:
            await self.log.append(topic, messages)
        if dead:  # keyed by source topic/partition/offset: a redo's is the same row
            await self.publisher.publish(DEADLETTER, [(str(d["source_topic"]), d) for d in dead])

    async def _appended(self, topic: str, starts: dict[int, int]) -> set[int]:
        """Indices of this file's records already on the log from ``starts`` on."""
        prefix = f"{self.fid}/".encode()
        found: set[int] = set()
        for p, offset in starts.items():
            end = (await self.log.offsets(topic, p))[1]
            while offset < end:
                batch = await self.log.read(topic, p, offset, _SCAN)
                if not batch:
                    break
                for r in batch:
                    for name, value in r.headers:
                        if name == HEADER and value.startswith(prefix):
                            found.add(int(value[len(prefix) :]))
                offset = batch[-1].offset + 1
        return found
