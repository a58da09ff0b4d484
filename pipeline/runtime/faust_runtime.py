"""The faust-streaming runtime of the distributed deployment.

One faust agent per processor topic takes up to ``max_records`` events at a time
(``stream.take_events(max_records, within=batch_seconds)``); what a take returns is
grouped by topic-partition and written as **one SinkBatch per topic-partition**, so
whichever worker owns a partition after a rebalance can finish that partition's
pending intent by itself (see ``pipeline.sink`` for the exactly-once protocol).

A partition's batch sequence number is the end offset of its range. It grows with
every batch of the partition (the store keeps the row with the highest version), a
pending intent carries its own seq (``pending[tp].end``), and the dedup token stays
unique per (partition, range). Every worker of the group writes under the same
consumer name (the app id by default).

Records below the sink's committed position are skipped; a pending range
``[start, end)`` is accumulated over takes and written, with its seq, before
anything after it. faust acks a take's events once the agent's loop body returns,
even when it raises, so a failed write is retried in place until it succeeds: the
Kafka commit never passes the sink's position.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.codec import AvroCodec, default_codec
from pipeline.log.base import TopicPartition
from pipeline.processors.base import Outputs, Processor
from pipeline.processors.decoding import decode_and_process
from pipeline.sink import Progress, ProjectionSink, Range, SinkBatch
from pipeline.topics import DEADLETTER

log = logging.getLogger("millrace.runtime.faust")

SinkFactory = Callable[[], ProjectionSink]


def _faust() -> Any:
    try:
        import faust
    except ImportError as exc:  # optional dependency of the distributed deployment
        raise ImportError("the faust runtime needs: pip install 'faust-streaming>=0.15'") from exc
    return faust


@dataclass(frozen=True)
class FaustRuntimeConfig:
    """Settings of the faust worker app (``bootstrap`` is ``host:port[,...]``)."""

    bootstrap: str
    app_id: str = "millrace-projections"
    consumer: str | None = None  # sink consumer name; the app id when None
    topic_prefix: str = ""
    max_records: int = 5000
    batch_seconds: float = 1.0
    retry_max_s: float = 10.0
    datadir: str = "faust-data"
    publish_deadletters: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # more faust settings

    @property
    def consumer_name(self) -> str:
        return self.consumer or self.app_id


@dataclass(frozen=True, slots=True)
class _Rec:
    offset: int
    timestamp_us: int
    key: bytes | None
    value: bytes


@dataclass
class _Pending:
    """A pending intent being re-read: its range and what was read of it so far."""

    range: Range
    records: list[_Rec] = field(default_factory=list)


class PartitionBatcher:
    """Turns takes into per-partition SinkBatches against the sink's progress.

    Kept free of faust so it can be tested with plain records.
    """

    def __init__(
        self,
        sink: ProjectionSink,
        processors: Sequence[Processor],
        consumer: str,
        codec: AvroCodec | None = None,
    ) -> None:
        self.sink = sink
        self.consumer = consumer
        self.codec = codec or default_codec()
        self._by_topic = {t: p for p in processors for t in p.topics}
        self._redo: dict[TopicPartition, _Pending] = {}

    def plan(
        self, progress: Progress, tp: TopicPartition, records: Sequence[_Rec]
    ) -> list[tuple[SinkBatch, list[_Rec]]]:
        """The batches to write for ``records`` of ``tp`` (in order), given progress.

        A pending intent of ``tp`` is first completed over exactly its range; records
        below the committed position are dropped.
        """
        out: list[tuple[SinkBatch, list[_Rec]]] = []
        pending = progress.pending.get(tp)
        position = progress.positions.get(tp, 0)
        recs = sorted((r for r in records if r.offset >= position), key=lambda r: r.offset)
        if pending is not None:
            redo = self._redo.get(tp)
            if redo is None or redo.range != pending:
                redo = self._redo[tp] = _Pending(pending)
            seen = {r.offset for r in redo.records}
            redo.records.extend(r for r in recs if r.offset < pending.end and r.offset not in seen)
            recs = [r for r in recs if r.offset >= pending.end]
            complete = bool(recs) or any(r.offset >= pending.end - 1 for r in redo.records)
            if not complete:
                return out  # wait for the rest of the pending range
            redo.records.sort(key=lambda r: r.offset)
            out.append((SinkBatch(seq=pending.end, ranges={tp: pending}), redo.records))
            position = pending.end
        if recs:
            r = Range(recs[0].offset, recs[-1].offset + 1)
            out.append((SinkBatch(seq=r.end, ranges={tp: r}), recs))
        return out

    def process(self, tp: TopicPartition, records: Sequence[_Rec]) -> Outputs:
        """Decode and run the topic's processor (decode failures become dead letters)."""
        return decode_and_process(
            self.codec, self._by_topic[tp.topic], tp.topic, tp.partition, records
        )

    def commit_done(self, tp: TopicPartition, batch: SinkBatch) -> None:
        redo = self._redo.get(tp)
        if redo is not None and batch.ranges.get(tp) == redo.range:
            del self._redo[tp]


DeadletterPublisher = Callable[[list[dict[str, Any]]], Any]


class FaustTakeHandler:
    """Handles one take: progress once, then each partition's batches in order.

    Sink errors are retried with backoff in place (faust would ack the events of a
    take whose handler raised).
    """

    def __init__(
        self,
        batcher: PartitionBatcher,
        publish_deadletters: DeadletterPublisher | None,
        retry_max_s: float = 10.0,
    ) -> None:
        self.batcher = batcher
        self.publish_deadletters = publish_deadletters
        self.retry_max_s = retry_max_s
        self.batches = 0
        self.records = 0
        self.errors = 0
        # one store session is not safe for concurrent queries: the agents share it
        self._lock = asyncio.Lock()

    async def run_sink(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs a blocking sink call in a thread, one at a time across agents."""
        async with self._lock:
            return await asyncio.to_thread(fn, *args)

    async def handle(self, records: dict[TopicPartition, list[_Rec]]) -> None:
        backoff = 0.1
        while True:
            try:
                await self._handle_once(records)
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # the take is redone from fresh progress
                self.errors += 1
                log.exception("take failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)

    async def _handle_once(self, records: dict[TopicPartition, list[_Rec]]) -> None:
        b = self.batcher
        # reloaded per take: after a rebalance another worker may have moved on
        progress = await self.run_sink(b.sink.progress, b.consumer)
        for tp in sorted(records, key=lambda t: (t.topic, t.partition)):
            for batch, recs in b.plan(progress, tp, records[tp]):
                outputs = await asyncio.to_thread(b.process, tp, recs)
                if outputs.deadletters and self.publish_deadletters is not None:
                    await self.publish_deadletters(outputs.deadletters)
                batch.tables = outputs.tables
                await self.run_sink(b.sink.write, b.consumer, batch)
                b.commit_done(tp, batch)
                r = batch.ranges[tp]
                progress.positions[tp] = r.end
                progress.pending.pop(tp, None)
                self.batches += 1
                self.records += len(recs)


def build_app(
    config: FaustRuntimeConfig,
    sink_factory: SinkFactory,
    processors: Sequence[Processor],
    codec: AvroCodec | None = None,
) -> Any:
    """A faust app with one agent per processor topic, writing to ``sink_factory()``.

    The sink is created when the first take arrives (in the worker's process), since
    a chDB directory can only be opened by one process.
    """
    faust = _faust()
    codec = codec or default_codec()
    settings: dict[str, Any] = {
        "broker": [f"kafka://{h}" for h in config.bootstrap.split(",")],
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "value_serializer": "raw",
        "key_serializer": "raw",
        "web_enabled": False,
        "store": "memory://",
        "consumer_auto_offset_reset": "earliest",
        "datadir": config.datadir,
        "stream_wait_empty": False,
    }
    settings.update(config.extra)
    app = faust.App(config.app_id, **settings)
    wire = {t: config.topic_prefix + t for p in processors for t in p.topics}
    by_wire = {w: t for t, w in wire.items()}
    dl_topic = app.topic(config.topic_prefix + DEADLETTER, value_serializer="raw")

    async def publish(dead: list[dict[str, Any]]) -> None:
        for d in dead:
            await dl_topic.send(key=d.get("key"), value=codec.encode(DEADLETTER, d))

    state: dict[str, FaustTakeHandler] = {}

    def handler() -> FaustTakeHandler:
        if "h" not in state:
            batcher = PartitionBatcher(sink_factory(), processors, config.consumer_name, codec)
            state["h"] = FaustTakeHandler(
                batcher, publish if config.publish_deadletters else None, config.retry_max_s
            )
        return state["h"]

    app.millrace_handler = handler  # for stats and tests

    for topic_name, wire_name in sorted(wire.items()):
        topic = app.topic(wire_name, value_serializer="raw", key_serializer="raw")

        async def agent(stream: Any) -> None:
            async for events in stream.take_events(config.max_records, within=config.batch_seconds):
                grouped: dict[TopicPartition, list[_Rec]] = {}
                for e in events:
                    m = e.message
                    tp = TopicPartition(by_wire[m.topic], m.partition)
                    ts = round(m.timestamp * 1000) * 1000 if m.timestamp else 0  # Kafka has ms
                    grouped.setdefault(tp, []).append(_Rec(m.offset, ts, m.key, m.value))
                await handler().handle(grouped)

        app.agent(topic, name=f"millrace-{topic_name}")(agent)
    return app
