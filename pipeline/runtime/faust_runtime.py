"""The faust-streaming runtime of the distributed deployment.

One faust agent per processor topic takes up to ``max_records`` events at a time
(``stream.take_events(max_records, within=batch_seconds)``); what a take returns is
grouped by topic-partition and written as **one SinkBatch per topic-partition**, so
whichever worker owns a partition after a rebalance can finish that partition's
pending intent by itself (see ``pipeline.sink`` for the exactly-once protocol). How
takes become batches (sequence numbers, skipping, pending ranges) is the batcher's:
``pipeline.runtime.faust_batcher``; this module is the app around it.

Rebalances: records of partitions this worker no longer owns are dropped before
planning; a revocation waits for the write in flight; and every write is *fenced*
between its intent and its first insert by an offset commit of the partition, which
the group coordinator refuses from a member of an older generation. A worker that
was paused past its session timeout (a zombie) therefore either fails the fence and
inserts nothing, or passed it before the new owner read the progress — and then the
new owner redoes exactly its range with the same deduplication tokens (see
``pipeline.sink``). What remains is ClickHouse's deduplication window: a zombie whose
fence passed must insert within the last ``non_replicated_deduplication_window``
(10000) inserts of each table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.errors import MillraceError
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.processors.base import Processor
from millrace.pipeline.runtime.faust_batcher import PartitionBatcher, _Rec
from millrace.pipeline.sink import ProjectionSink, SinkBatch
from millrace.pipeline.topics import DEADLETTER

__all__ = [
    "FaustRuntimeConfig",
    "FaustTakeHandler",
    "NotOwnedError",
    "PartitionBatcher",
    "RebalancingError",
    "build_app",
]

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
    fence: bool = True  # fence each write with a generation-checked offset commit
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)  # more faust settings

    @property
    def consumer_name(self) -> str:
        return self.consumer or self.app_id


DeadletterPublisher = Callable[[list[dict[str, Any]]], Any]
Fence = Callable[[TopicPartition, int], Coroutine[Any, Any, None]]


class NotOwnedError(MillraceError, RuntimeError):
    """The worker lost the partition (rebalance or fenced); its batch is abandoned."""


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
        owns: Callable[[TopicPartition], bool] | None = None,
        fence: Fence | None = None,
        seek: Fence | None = None,
        fence_timeout_s: float = 15.0,
        earliest: Callable[[TopicPartition], Coroutine[Any, Any, int]] | None = None,
    ) -> None:
        self.batcher = batcher
        self.publish_deadletters = publish_deadletters
        self.retry_max_s = retry_max_s
        self.owns = owns
        self.fence = fence
        self.seek = seek
        self.earliest = earliest
        self.fence_timeout_s = fence_timeout_s
        self._sought: dict[TopicPartition, int] = {}
        #: set = folding; cleared by a pause through the log (``pipeline.runtime.control``)
        self.gate = asyncio.Event()
        self.gate.set()
        self.seeks = 0
        self.batches = 0
        self.records = 0
        self.errors = 0
        self.fenced = 0
        #: rows written per table (readings: the readings folded) and dead letters
        self.rows: dict[str, int] = {}
        self.deadletters = 0
        # one store session is not safe for concurrent queries: the agents share it
        self._lock = asyncio.Lock()
        # takes past the gate, not yet done (``quiet``: a pause's answer waits for them)
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def run_sink(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs a blocking sink call in a thread, one at a time across agents."""
        async with self._lock:
            return await asyncio.to_thread(fn, *args)

    async def quiet(self) -> None:
        """Returns once no take is past the gate (with the gate closed: the worker
        stands still, ``pipeline.runtime.hold``)."""
        while self._busy:
            await self._idle.wait()

    async def handle(self, records: dict[TopicPartition, list[_Rec]]) -> None:
        # a loop: a pause may close the gate again before this take runs on
        while not self.gate.is_set():  # paused: the take waits; the log keeps accepting
            held = sum(len(r) for r in records.values())
            log.info("take of %d records held: the runtime is paused", held)
            await self.gate.wait()
        self._busy += 1
        self._idle.clear()
        try:
            await self._handle(records)
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def _handle(self, records: dict[TopicPartition, list[_Rec]]) -> None:
        backoff = 0.1
        while True:
            if self.owns is not None:
                records = {tp: r for tp, r in records.items() if self.owns(tp)}
            if not records:
                return
            try:
                await self._handle_once(records)
                return
            except asyncio.CancelledError:
                raise
            except NotOwnedError as exc:  # re-filtered against the new assignment
                self.fenced += 1
                if self.fenced & (self.fenced - 1) == 0:  # 1st, 2nd, 4th, 8th, ...
                    log.warning("batch abandoned (%d so far): %s", self.fenced, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except Exception:  # the take is redone from fresh progress
                self.errors += 1
                log.exception("take failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)

    def _fence_for(self, tp: TopicPartition, batch: SinkBatch) -> Callable[[], None] | None:
        """A blocking fence for the sink's thread, run on this loop."""
        if self.fence is None and self.owns is None:
            return None
        loop = asyncio.get_running_loop()
        start = batch.ranges[tp].start

        def fence() -> None:
            if self.owns is not None and not self.owns(tp):
                raise NotOwnedError(f"{tp.topic}/{tp.partition} was revoked")
            if self.fence is None:
                return
            fut = asyncio.run_coroutine_threadsafe(self.fence(tp, start), loop)
            try:
                fut.result(self.fence_timeout_s)
            except Exception as exc:
                fut.cancel()
                raise NotOwnedError(
                    f"fence of {tp.topic}/{tp.partition} failed: {type(exc).__name__}: {exc}"
                ) from exc

        return fence

    async def _handle_once(self, records: dict[TopicPartition, list[_Rec]]) -> None:
        b = self.batcher
        # reloaded per take: after a rebalance another worker may have moved on
        progress = await self.run_sink(b.sink.progress, b.consumer)
        for tp in sorted(records, key=lambda t: (t.topic, t.partition)):
            want = b.gap(progress, tp, records[tp])
            gone = want is not None and self.earliest is not None and want < await self.earliest(tp)
            # without the log's start offset, a second gap at the same place is taken
            # for records gone from the log (retention)
            again = self.earliest is not None or self._sought.get(tp) != want
            if want is not None and not gone and self.seek is not None and again:
                # re-read from the sink's position: a batch never jumps over records
                log.info("%s/%d: seeking back to %d", tp.topic, tp.partition, want)
                self._sought[tp] = want
                self.seeks += 1
                await self.seek(tp, want)
                continue
            if want is not None:
                log.warning(
                    "%s/%d: records from %d are gone from the log", tp.topic, tp.partition, want
                )
            for batch, recs in b.plan(progress, tp, records[tp]):
                outputs = await asyncio.to_thread(b.process, tp, recs)
                if outputs.deadletters and self.publish_deadletters is not None:
                    await self.publish_deadletters(outputs.deadletters)
                batch.tables = outputs.tables
                await self.run_sink(b.sink.write, b.consumer, batch, self._fence_for(tp, batch))
                b.commit_done(tp, batch)
                for name, table in outputs.tables.items():
                    self.rows[name] = self.rows.get(name, 0) + table.num_rows
                self.deadletters += len(outputs.deadletters)
                self._sought.pop(tp, None)
                r = batch.ranges[tp]
                progress.positions[tp] = r.end
                progress.pending.pop(tp, None)
                self.batches += 1
                self.records += len(recs)


class RebalancingError(MillraceError, RuntimeError):
    """The worker is between assignments: no write can be fenced now."""


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
        "broker_session_timeout": config.session_timeout_s,
        "broker_heartbeat_interval": config.heartbeat_interval_s,
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

    def owns(tp: TopicPartition) -> bool:
        return _wire_tp(tp) in app.consumer.assignment()

    def _wire_tp(tp: TopicPartition) -> Any:
        return faust.types.TP(wire[tp.topic], tp.partition)

    async def fence(tp: TopicPartition, offset: int) -> None:
        """An offset commit the coordinator refuses from an older generation.

        Not sent while this member is rebalancing: its generation is stale or not yet
        synced then, and a refused commit makes aiokafka rejoin — which, arriving while
        the leader syncs, starts the rebalance over (librdkafka's mock coordinator does
        so on every such join; a real broker on changed metadata), so fences retried
        through a rebalance could keep the group from ever settling.
        """
        if app.rebalancing:
            raise RebalancingError("rebalance in progress")
        from aiokafka.structs import OffsetAndMetadata
        from aiokafka.structs import TopicPartition as KafkaTP

        thread = app.consumer._thread
        consumer = thread._ensure_consumer()
        offsets = {KafkaTP(wire[tp.topic], tp.partition): OffsetAndMetadata(offset, "")}
        await thread.call_thread(consumer.commit, offsets)

    async def seek(tp: TopicPartition, offset: int) -> None:
        await app.consumer.seek(_wire_tp(tp), offset)

    async def earliest(tp: TopicPartition) -> int:
        """The first offset the log still holds (what retention left)."""
        from aiokafka.structs import TopicPartition as KafkaTP

        thread = app.consumer._thread
        consumer = thread._ensure_consumer()
        ktp = KafkaTP(wire[tp.topic], tp.partition)
        found = await thread.call_thread(consumer.beginning_offsets, [ktp])
        return int(found[ktp])

    def handler() -> FaustTakeHandler:
        if "h" not in state:
            batcher = PartitionBatcher(sink_factory(), processors, config.consumer_name, codec)
            state["h"] = FaustTakeHandler(
                batcher,
                publish if config.publish_deadletters else None,
                config.retry_max_s,
                owns=owns,
                fence=fence if config.fence else None,
                seek=seek,
                earliest=earliest,
            )
        return state["h"]

    def assigned() -> set[TopicPartition]:
        """The processor partitions this worker owns now."""
        owned = app.consumer.assignment()
        return {
            TopicPartition(by_wire[tp.topic], tp.partition) for tp in owned if tp.topic in by_wire
        }

    app.millrace_handler = handler  # for stats and tests
    app.millrace_assigned = assigned  # a pause's answer names them

    @app.on_partitions_revoked.connect
    async def _wait_for_write(sender: Any, revoked: Any, **_: Any) -> None:
        """A revoked partition's write in flight ends before the rebalance goes on."""
        h = state.get("h")
        if h is not None:
            async with h._lock:
                pass

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
