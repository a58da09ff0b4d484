"""Holding every worker through the log (``pipeline.runtime.hold``): workers answer a
pause only once their take in flight has ended, the holder waits until the answers
cover every partition, resumes when it leaves, and names the partitions nobody
answered for when it gives up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.control import PauseFollower, control_of
from millrace.pipeline.runtime.faust_batcher import PartitionBatcher, _Rec
from millrace.pipeline.runtime.faust_runtime import FaustTakeHandler
from millrace.pipeline.runtime.hold import HoldError, PauseHold, answer_of, held_event
from millrace.pipeline.sink import MemoryProjectionSink, SinkBatch
from millrace.pipeline.topics import AUDIT, TELEMETRY

T0 = 1_700_000_000_000_000
ALL = {TopicPartition(TELEMETRY, p) for p in range(4)}


class Worker:
    """A take handler, its pause follower and the partitions it owns."""

    def __init__(self, log: MemoryEventLog, name: str, owned: set[TopicPartition]) -> None:
        self.owned = owned
        self.handler = FaustTakeHandler(
            PartitionBatcher(SlowSink(), [TelemetryProcessor()], "c"), None
        )
        gate = self.handler.gate
        publisher = LogPublisher(log)

        async def answer(pause: dict[str, object]) -> None:
            await self.handler.quiet()
            if not gate.is_set():
                await publisher.publish(AUDIT, [("runtime", held_event(pause, name, self.owned))])

        self.follower = PauseFollower(
            log, lambda p: gate.clear() if p else gate.set(), on_held=answer, poll_s=0.01
        )


class SlowSink(MemoryProjectionSink):
    """A sink whose writes wait for ``release`` (a take in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.release.set()

    def write(
        self, consumer: str, batch: SinkBatch, fence: Callable[[], None] | None = None
    ) -> None:
        assert self.release.wait(10)
        super().write(consumer, batch, fence)


def record(offset: int) -> _Rec:
    value = default_codec().encode(
        TELEMETRY,
        {
            "identity": "d",
            "source": "t",
            "received_us": T0,
            "samples": [{"ts_us": T0 + offset, "values": {"v": 1.0}, "quality": 0}],
        },
    )
    return _Rec(offset, T0, b"d", value)


def test_held_event_round_trips() -> None:
    event = held_event({"audit_id": "p1"}, "w", {TopicPartition("telemetry", 2)})
    assert answer_of(event) == ("p1", {TopicPartition("telemetry", 2)})
    assert control_of(event) is None  # an answer is not a pause or a resume
    assert answer_of({**event, "after": "not json"}) is None


def test_hold_waits_for_the_take_in_flight_and_every_partition() -> None:
    log = MemoryEventLog()

    async def main() -> None:
        a = Worker(log, "a", {TopicPartition(TELEMETRY, 0), TopicPartition(TELEMETRY, 1)})
        b = Worker(log, "b", {TopicPartition(TELEMETRY, 2), TopicPartition(TELEMETRY, 3)})
        stop = asyncio.Event()
        for w in (a, b):
            await w.follower.start_at_end()
        runs = [asyncio.create_task(w.follower.run(stop)) for w in (a, b)]
        sink = b.handler.batcher.sink
        assert isinstance(sink, SlowSink)
        sink.release.clear()  # b's take is in flight when the pause comes
        take = asyncio.create_task(b.handler.handle({TopicPartition(TELEMETRY, 2): [record(0)]}))
        await asyncio.sleep(0.05)
        hold = PauseHold(log, LogPublisher(log), lambda: ALL, poll_s=0.01)
        inside = asyncio.Event()

        async def holder() -> None:
            async with hold.held("replay:t"):
                assert not a.handler.gate.is_set() and not b.handler.gate.is_set()
                assert take.done()  # the take in flight ended before b answered
                inside.set()

        held = asyncio.create_task(holder())
        await asyncio.sleep(0.3)
        assert not inside.is_set()  # b has not answered: its take is still writing
        sink.release.set()
        await asyncio.wait_for(held, 10)
        await asyncio.sleep(0.1)  # the followers read the resume
        assert a.handler.gate.is_set() and b.handler.gate.is_set()
        stop.set()
        await asyncio.gather(*runs)
        # one key, one partition: in the order appended
        got = [await log.read(AUDIT, p, 0, 100) for p in range(log.partitions(AUDIT))]
        actions = [default_codec().decode(AUDIT, r.value)["action"] for rs in got for r in rs]
        assert actions.count("held") >= 2 and actions[0] == "pause" and actions[-1] == "resume"

    asyncio.run(main())


def test_hold_names_the_partitions_nobody_answered_for() -> None:
    log = MemoryEventLog()

    async def main() -> None:
        a = Worker(log, "a", {TopicPartition(TELEMETRY, 0)})
        stop = asyncio.Event()
        await a.follower.start_at_end()
        run = asyncio.create_task(a.follower.run(stop))
        hold = PauseHold(log, LogPublisher(log), lambda: ALL, poll_s=0.01, timeout_s=0.3)
        with pytest.raises(HoldError, match="telemetry/1, telemetry/2, telemetry/3"):
            async with hold.held("replay:t"):
                pytest.fail("held without every partition answered")
        await asyncio.sleep(0.1)
        assert a.handler.gate.is_set()  # resumed on the way out
        stop.set()
        await run

    asyncio.run(main())
