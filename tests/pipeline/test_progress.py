"""Read-your-writes (``pipeline.progress``): the waiter sees the sink's committed
progress through the EventLog port, from the runtime in-process or from the store."""

from __future__ import annotations

import asyncio

import pytest

from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.progress import AppliedWaiter, behind, runtime_positions, sink_positions
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

T0 = 1_767_225_600_000_000


def _batch(i: int) -> tuple[str, dict[str, object]]:
    return (
        f"dev-{i % 3}",
        {
            "identity": f"dev-{i % 3}",
            "source": "t",
            "received_us": T0,
            "samples": [{"ts_us": T0 + i * 1_000_000, "values": {"x": float(i)}, "quality": 0}],
        },
    )


def test_behind_counts_what_positions_have_not_reached() -> None:
    assert behind({0: 10, 1: 5}, {0: 4}) == 11
    assert behind({0: 10}, {0: 12}) == 0


async def _publish(log: EventLog, n: int, start: int = 0) -> None:
    await LogPublisher(log, default_codec()).publish(
        TELEMETRY, [_batch(i) for i in range(start, start + n)]
    )


@pytest.mark.parametrize("source", ["runtime", "sink"])
def test_waiter_on_memory_log_and_chdb(store: ChdbStore, source: str) -> None:
    async def main() -> None:
        log = MemoryEventLog(partitions=2)
        runtime = EmbeddedRuntime(log, ProjectionWriter(store), processors(), idle_sleep_s=0.01)
        positions = (
            runtime_positions(runtime, log)
            if source == "runtime"
            else sink_positions(ProjectionWriter(store), runtime.consumer)
        )
        topics = {t for p in runtime.processors for t in p.topics}
        waiter = AppliedWaiter(log, positions, topics=topics, poll_s=0.01)
        assert await waiter(TELEMETRY, 0.1)  # nothing appended yet
        await _publish(log, 30)
        # nothing applies the records: the wait gives up
        assert not await waiter(TELEMETRY, 0.2)
        await runtime.run_until_idle()
        assert await waiter(TELEMETRY, 1.0)
        # with the runtime running, a wait right after an append returns once applied
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        try:
            await _publish(log, 30, start=30)
            assert await waiter(TELEMETRY, 30.0)
            rows = store.execute("SELECT count() FROM millrace.readings").rows
            assert rows[0][0] == 60
        finally:
            stop.set()
            await task
        # a topic no processor projects has nothing to wait for
        assert await waiter("not-projected", 0.01)

    asyncio.run(main())


def test_waiter_on_kafka_reads_progress_committed_by_another_process(
    kafka_bootstrap: str, store: ChdbStore
) -> None:
    """What ``millrace api`` does: end offsets from Kafka, positions from the progress a
    worker (here: this test, as the faust worker would) committed to the store."""
    import os

    from millrace.pipeline.log.base import TopicPartition
    from millrace.pipeline.log.kafka import KafkaEventLog, KafkaLogConfig
    from millrace.pipeline.sink import Range, SinkBatch

    consumer = "millrace-projections"

    async def main() -> None:
        prefix = f"progress-{os.getpid()}-"
        log = KafkaEventLog(
            KafkaLogConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=2)
        )
        await log.start((TELEMETRY,))
        try:
            writer = ProjectionWriter(store)
            waiter = AppliedWaiter(log, sink_positions(writer, consumer), poll_s=0.02)
            await _publish(log, 20)
            ends = await waiter.ends(TELEMETRY)
            assert sum(ends.values()) == 20
            assert not await waiter(TELEMETRY, 0.3)
            # the worker commits every partition but the last one: still waiting
            tps = sorted(ends)
            for seq, p in enumerate(tps, start=1):
                if p == tps[-1] and ends[p]:
                    break
                batch = SinkBatch(seq, {TopicPartition(TELEMETRY, p): Range(0, ends[p])})
                await asyncio.to_thread(writer.write, consumer, batch)
            if ends[tps[-1]]:
                assert not await waiter(TELEMETRY, 0.3)
                last = SinkBatch(99, {TopicPartition(TELEMETRY, tps[-1]): Range(0, ends[tps[-1]])})
                await asyncio.to_thread(writer.write, consumer, last)
            assert await waiter(TELEMETRY, 5.0)
        finally:
            await log.close()

    asyncio.run(main())
