"""The faust runtime against the librdkafka mock cluster and chDB projections, with
counts and sums computed here; and its per-partition redo logic on plain records."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from millrace.pipeline.log.base import Message, TopicPartition
from millrace.pipeline.log.kafka import KafkaEventLog, KafkaLogConfig
from millrace.pipeline.processors.deadletter import DeadLetterProcessor
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.faust_batcher import PartitionBatcher, _Rec
from millrace.pipeline.runtime.faust_runtime import FaustRuntimeConfig, build_app
from millrace.pipeline.sink import MemoryProjectionSink, Range
from millrace.pipeline.telemetry_columns import samples_of
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

pytest.importorskip("faust")

pytestmark = [pytest.mark.integration]

T0 = 1_700_000_000_000_000
IDENTITIES = [f"dev-{i}" for i in range(6)]


def telemetry(n: int) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for i in range(n):
        identity = IDENTITIES[i % len(IDENTITIES)]
        samples = [
            {"ts_us": T0 + (i * 3 + j) * 1_000_000, "values": {"t": float(i + j)}, "quality": 0}
            for j in range(3)
        ]
        events.append(
            (
                identity,
                {"identity": identity, "source": "t", "received_us": T0, "samples": samples},
            )
        )
    return events


async def produce(
    bootstrap: str, prefix: str, events: list[tuple[str, dict[str, Any]]], garbage: int
) -> dict[TopicPartition, int]:
    log = KafkaEventLog(KafkaLogConfig(bootstrap_servers=bootstrap, topic_prefix=prefix))
    await log.start(("telemetry", "deadletter"))
    try:
        await LogPublisher(log).publish("telemetry", events)
        if garbage:
            await log.append("telemetry", [Message(value=b"\xff" * 5, key=b"x")] * garbage)
        return {
            TopicPartition("telemetry", p): (await log.offsets("telemetry", p))[1]
            for p in range(log.partitions("telemetry"))
        }
    finally:
        await log.close()


async def run_worker(app: Any, done: Any, timeout: float) -> None:
    """Runs ``app`` in this event loop until ``done()`` holds (or fails on timeout)."""
    await app.start()
    try:
        deadline = time.monotonic() + timeout
        while not await app.millrace_handler().run_sink(done):
            assert time.monotonic() < deadline, "worker did not catch up"
            await asyncio.sleep(0.2)
    finally:
        await app.stop()


def query(store: ChdbStore, sql: str) -> list[Any]:
    return list(store.execute(sql).rows[0])


def test_worker_projects_exactly_once_and_skips_committed(
    kafka_bootstrap: str, store: ChdbStore, tmp_path: Any
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    events = telemetry(120)
    ends = asyncio.run(produce(kafka_bootstrap, prefix, events, garbage=2))
    assert sum(ends.values()) == 122
    writer = ProjectionWriter(store)
    consumer = "faust-projections"

    def caught_up() -> bool:
        p = writer.progress(consumer)
        dead = sum(v for tp, v in p.positions.items() if tp.topic == "deadletter")
        telemetry_done = all(p.positions.get(tp, 0) >= e for tp, e in ends.items())
        return not p.pending and telemetry_done and dead >= 2

    for run in range(2):  # the second app (new group) re-reads everything: all skipped
        config = FaustRuntimeConfig(
            bootstrap=kafka_bootstrap,
            app_id=f"{prefix}app{run}",
            consumer=consumer,
            topic_prefix=prefix,
            max_records=25,
            batch_seconds=0.2,
            datadir=str(tmp_path / f"faust{run}"),
        )
        app = build_app(config, lambda: writer, [TelemetryProcessor(), DeadLetterProcessor()])
        asyncio.run(run_worker(app, caught_up, timeout=40))

        readings = sum(len(samples_of(e)) for _, e in events)
        total = sum(s["values"]["t"] for _, e in events for s in samples_of(e))
        assert query(store, "SELECT count(), sum(value) FROM millrace.readings") == [
            readings,
            total,
        ]
        assert query(
            store, "SELECT sum(count), sum(sum) FROM millrace.agg_1m FINAL WHERE signal = 't'"
        ) == [readings, total]
        assert query(store, "SELECT uniqExact(identity) FROM millrace.latest") == [len(IDENTITIES)]
        # the two undecodable records became dead letters, projected from their topic
        assert query(store, "SELECT count() FROM millrace.deadletter FINAL") == [2]


# -- the per-partition redo logic, without Kafka ------------------------------------


def recs(events: list[tuple[str, dict[str, Any]]], start: int) -> list[_Rec]:
    from millrace.pipeline.codec import default_codec

    codec = default_codec()
    return [
        _Rec(start + i, T0, k.encode(), codec.encode("telemetry", e))
        for i, (k, e) in enumerate(events)
    ]


def test_pending_intent_is_redone_over_exactly_its_range() -> None:
    sink = MemoryProjectionSink()
    tp = TopicPartition("telemetry", 2)
    batcher = PartitionBatcher(sink, [TelemetryProcessor()], "c")
    all_recs = recs(telemetry(10), start=100)

    def write(take: list[_Rec]) -> None:
        for batch, rs in batcher.plan(sink.progress("c"), tp, take):
            batch.tables = batcher.process(tp, rs).tables
            sink.write("c", batch)
            batcher.commit_done(tp, batch)

    sink.fail_after = 2  # intent + first table, then crash
    with pytest.raises(RuntimeError):
        write(all_recs[:6])
    p = sink.progress("c")
    assert p.pending == {tp: Range(100, 106)} and p.positions.get(tp, 0) == 0

    # after a rebalance the new owner reads in other take sizes, from before the range
    write(all_recs[:4])  # part of the pending range: nothing written yet
    assert sink.progress("c").pending == {tp: Range(100, 106)}
    write(all_recs[4:8])  # completes it, then a new batch of what follows
    write(all_recs[:10])  # a re-read: everything below the position is skipped
    p = sink.progress("c")
    assert not p.pending and p.positions[tp] == 110
    readings = sink.rows["readings"]
    assert len(readings) == 30
    assert sorted(float(str(r["value"])) for r in readings) == sorted(
        s["values"]["t"] for _, e in telemetry(10) for s in samples_of(e)
    )


def test_failed_fence_inserts_nothing_and_a_gap_seeks_back() -> None:
    from millrace.pipeline.runtime.faust_runtime import FaustTakeHandler

    sink = MemoryProjectionSink()
    tp = TopicPartition("telemetry", 0)
    all_recs = recs(telemetry(8), start=0)
    owned = {tp}
    sought: list[int] = []

    async def fence(t: TopicPartition, offset: int) -> None:
        if t not in owned:
            raise RuntimeError("IllegalGeneration")

    async def seek(t: TopicPartition, offset: int) -> None:
        sought.append(offset)

    batcher = PartitionBatcher(sink, [TelemetryProcessor()], "c")
    handler = FaustTakeHandler(batcher, None, owns=lambda t: True, fence=fence, seek=seek)

    async def main() -> None:
        await handler.handle({tp: all_recs[:3]})
        assert sink.progress("c").positions[tp] == 3
        owned.clear()  # another worker owns it now: the fence fails, nothing is inserted
        task = asyncio.create_task(handler.handle({tp: all_recs[3:6]}))
        await asyncio.sleep(0.3)
        assert sink.progress("c").pending == {tp: Range(3, 6)}
        assert len(sink.rows["readings"]) == 9
        owned.add(tp)
        await task
        # records that skip the sink's position are not written: seek back instead
        await handler.handle({tp: all_recs[7:8]})
        assert sought == [6] and sink.progress("c").positions[tp] == 6
        await handler.handle({tp: all_recs[6:8]})
        assert sink.progress("c").positions[tp] == 8

    asyncio.run(main())
    assert handler.fenced >= 1
    assert len(sink.rows["readings"]) == 24


def test_a_resent_batch_is_dropped_by_the_worker_that_takes_over(
    kafka_bootstrap: str, store: ChdbStore, tmp_path: Any
) -> None:
    """Issue 14: batches resent with their ids (a retry, a redelivery) after another
    worker folded the originals: the next worker reads the applied ids back and folds
    each id once."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    first = [(k, {**e, "batch_id": f"b{i}"}) for i, (k, e) in enumerate(telemetry(30))]
    resent = [(k, {**e, "received_us": T0 + 1}) for k, e in first[::3]]
    fresh = [(k, {**e, "batch_id": f"b{30 + i}"}) for i, (k, e) in enumerate(telemetry(6))]
    writer = ProjectionWriter(store)
    consumer = "faust-dedup"

    for run, events in enumerate((first, resent + fresh)):
        ends = asyncio.run(produce(kafka_bootstrap, prefix, events, garbage=0))

        def caught_up(ends: dict[TopicPartition, int] = ends) -> bool:
            p = writer.progress(consumer)
            return not p.pending and all(p.positions.get(tp, 0) >= e for tp, e in ends.items())

        config = FaustRuntimeConfig(
            bootstrap=kafka_bootstrap,
            app_id=f"{prefix}app{run}",
            consumer=consumer,
            topic_prefix=prefix,
            max_records=7,
            batch_seconds=0.2,
            datadir=str(tmp_path / f"faust{run}"),
        )
        app = build_app(config, lambda: writer, [TelemetryProcessor(), DeadLetterProcessor()])
        asyncio.run(run_worker(app, caught_up, timeout=40))

    once = first + fresh  # each id once, computed from what was produced
    readings = sum(len(samples_of(e)) for _, e in once)
    total = sum(s["values"]["t"] for _, e in once for s in samples_of(e))
    assert query(store, "SELECT count(), sum(value) FROM millrace.readings") == [readings, total]
    assert query(
        store, "SELECT sum(count), sum(sum) FROM millrace.agg_1m FINAL WHERE signal = 't'"
    ) == [readings, total]
