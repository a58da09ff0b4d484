"""Decode once (issue 18 item 2): the runtime's decoded events feed the alarm runner
and the live-stream tail of its process.

The feed's contract, as a model: a reader that takes from the feed where it can and
decodes the log itself where it cannot consumes every record exactly once, in order,
whatever the runtime does meanwhile (batches of any size, pauses, failures that redo
a batch). Then the real parts on one log: each telemetry record is decoded once in
the process, and the alarms and stream items are those of readers that decode the
log themselves, also when the runner and the runtime crash in any order.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.api.stream_tail import LogTail
from millrace.pipeline.alarms.evaluator import Evaluator
from millrace.pipeline.alarms.rules import parse_rule, rule_event
from millrace.pipeline.alarms.runner import AlarmRunner, MemoryCheckpoints
from millrace.pipeline.codec import AvroCodec, SchemaLookup
from millrace.pipeline.log.base import Message, TopicPartition
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.base import Event
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.runtime.feed import DecodedFeed
from millrace.pipeline.sink import MemoryProjectionSink
from millrace.pipeline.topics import ALARMS, STATUS, TELEMETRY

TP = TopicPartition(TELEMETRY, 0)
T0 = 1_750_000_000_000_000
S = 1_000_000


def event(offset: int) -> Event:
    return Event(TELEMETRY, 0, offset, 0, None, {"n": offset})


# -- the feed alone, as a model -----------------------------------------------------------

#: runtime actions: a batch of n records, a pause (readers fall back), a failure that
#: redoes its last batch, and reader actions: a take of up to n records
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.integers(1, 7)),
        st.tuples(st.just("pause"), st.just(0)),
        st.tuples(st.just("redo"), st.just(0)),
        st.tuples(st.just("take"), st.integers(1, 9)),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(
    ACTIONS,
    st.sets(st.integers(0, 80), max_size=15),
    st.integers(1, 12),
    st.integers(0, 5),
)
def test_a_reader_consumes_every_record_once_in_order(
    actions: list[tuple[str, int]], undecodable: set[int], keep: int, ahead: int
) -> None:
    """The reader starts ``ahead`` records past the runtime (a tail at the log's end);
    it decodes the log itself (the model's 'log') where the feed gives None."""
    end_of_log = 80
    feed = DecodedFeed(keep_records=keep)
    feed.subscribe("reader")
    feed.start({TP: 0})
    runtime_at, last = 0, (0, 0)
    reader_at, consumed, skipped = ahead, [], 0
    for action, n in actions:
        if action == "batch":
            feed.live = True
            stop = min(runtime_at + n, end_of_log)
            events = [event(o) for o in range(runtime_at, stop) if o not in undecodable]
            feed.put(TP, runtime_at, stop, events, full=stop < end_of_log)
            last, runtime_at = (runtime_at, stop), stop
        elif action == "pause":
            feed.live = False
        elif action == "redo":
            feed.start({TP: last[0]})  # the runtime reloads its progress after a failure
            feed.live = True
            events = [event(o) for o in range(*last) if o not in undecodable]
            feed.put(TP, last[0], last[1], events, full=last[1] < end_of_log)
        else:
            taken = feed.take("reader", TP, reader_at, n)
            if taken is None:  # read the log itself
                stop = min(reader_at + n, end_of_log)
                consumed += [o for o in range(reader_at, stop) if o not in undecodable]
                skipped += sum(1 for o in range(reader_at, stop) if o in undecodable)
                reader_at = stop
                feed.passed("reader", TP, reader_at)
                continue
            assert taken.next <= max(runtime_at, reader_at)  # never past the runtime
            assert taken.next - reader_at <= n
            consumed += [e.offset for e in taken.events]
            skipped += taken.skipped
            reader_at = taken.next
        assert feed.held() <= max(keep, 7)
    assert consumed == [o for o in range(ahead, reader_at) if o not in undecodable]
    assert skipped == sum(1 for o in range(ahead, reader_at) if o in undecodable)


def test_a_reader_waits_for_the_runtime_and_is_woken_by_its_batch() -> None:
    woken: list[int] = []
    feed = DecodedFeed()
    feed.subscribe("r", lambda: woken.append(1))
    feed.start({TP: 0})
    feed.live = True
    waiting = feed.take("r", TP, 0, 10)
    assert waiting is not None and waiting.events == [] and waiting.next == 0
    feed.put(TP, 0, 3, [event(0), event(2)], full=True)
    feed.wake()
    assert woken == [1]
    taken = feed.take("r", TP, 0, 10)
    assert taken is not None
    assert [e.offset for e in taken.events] == [0, 2] and taken.skipped == 1
    assert taken.next == 3 and taken.more  # the runtime's read was full
    # everyone passed the chunk: the feed lets it go
    assert feed.take("r", TP, 3, 10) == waiting.__class__([], 3, 0, True)
    assert feed.held() == 0


def test_no_runtime_batch_or_a_paused_runtime_sends_readers_to_the_log() -> None:
    feed = DecodedFeed()
    feed.subscribe("r")
    assert feed.take("r", TP, 0, 10) is None  # the runtime never started
    feed.start({TP: 0})
    feed.put(TP, 0, 2, [event(0), event(1)], full=False)
    assert feed.take("r", TP, 0, 10) is None  # not live: paused, failing or stopped
    feed.live = True
    assert feed.take("r", TP, 0, 10) is not None


# -- the real parts ------------------------------------------------------------------------


class CountingCodec(AvroCodec):
    """The codec, counting what it decodes per topic."""

    decoded: dict[str, int]

    def decode(
        self, topic: str, data: bytes, schema_lookup: SchemaLookup | None = None
    ) -> dict[str, Any]:
        self.decoded[topic] = self.decoded.get(topic, 0) + 1
        return super().decode(topic, data, schema_lookup)


def counting_codec() -> CountingCodec:
    codec = CountingCodec.load()
    assert isinstance(codec, CountingCodec)
    codec.decoded = {}
    return codec


VALUES = [70.0, 85.0, 78.0, 74.0, 90.0, 60.0, 95.0, 50.0, 99.0, 10.0, 88.0, 20.0]


async def fill(log: MemoryEventLog, codec: AvroCodec) -> None:
    """A rule, readings of two devices crossing it, an undecodable record, statuses."""
    pub = LogPublisher(log, codec)
    rule = parse_rule({"id": "hot", "kind": "limit", "signal": "temp", "high": 80, "deadband": 5})
    await pub.publish(ALARMS, [("rule:hot", rule_event(rule, "hot", T0, "me"))])
    for i, v in enumerate(VALUES):
        for device in ("oven-1", "oven-2"):
            sample = {"ts_us": T0 + i * S, "values": {"temp": v + (device == "oven-2")}}
            batch = {"identity": device, "source": "t", "received_us": T0 + i * S}
            await pub.publish(TELEMETRY, [(device, {**batch, "samples": [sample]})])
        if i == 4:
            await log.append(TELEMETRY, [Message(value=b"\x00garbage", key=b"oven-1")])
        desired = "connected"
        status = {
            "resource_id": "opcua/plc-1",
            "service_id": "opcua",
            "resource_type": "connection",
            "desired_state": desired,
            "current_state": desired if i % 3 else "disconnected",
            "info": "",
            "ts_us": T0 + i * S,
        }
        await pub.publish(STATUS, [("opcua/plc-1", status)])


class Recorder:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def wants(self, kind: str) -> bool:
        return True

    def publish(self, kind: str, data: dict[str, Any]) -> int | None:
        self.items.append((kind, data))
        return len(self.items)


async def alarms_of(log: MemoryEventLog, codec: AvroCodec) -> set[str]:
    out = set()
    for p in range(log.partitions(ALARMS)):
        for rec in await log.read(ALARMS, p, 0, 100_000):
            e = codec.decode(ALARMS, rec.value)
            if e["type"] in ("RAISED", "CLEARED"):
                out.add(json.dumps(e, sort_keys=True, default=str))
    return out


def items_of(recorder: Recorder) -> list[str]:
    return sorted(json.dumps(i, sort_keys=True, default=str) for i in recorder.items)


async def reference(codec: AvroCodec) -> tuple[set[str], list[str]]:
    """The alarms and stream items of readers that decode the log themselves."""
    log = MemoryEventLog()
    hub = Recorder()
    tail = LogTail(log, codec, hub)
    await tail.start()
    await fill(log, codec)
    runner = AlarmRunner(
        log, LogPublisher(log, codec), MemoryCheckpoints(), codec, Evaluator, checkpoint_every_s=0
    )
    await runner.run_until_idle(now_us=T0)
    while await tail.step():
        pass
    return await alarms_of(log, codec), items_of(hub)


def runner_on(log: MemoryEventLog, codec: AvroCodec, cps: MemoryCheckpoints, feed: DecodedFeed):  # type: ignore[no-untyped-def]
    return AlarmRunner(
        log,
        LogPublisher(log, codec),
        cps,
        codec,
        Evaluator,
        checkpoint_every_s=0,
        max_records=3,
        feed=feed,
    )


async def test_each_record_is_decoded_once_and_readers_see_what_they_would_have() -> None:
    codec = counting_codec()
    want_alarms, want_items = await reference(codec)
    assert len(want_alarms) >= 8  # both devices raise and clear several times

    codec.decoded = {}
    log = MemoryEventLog()
    runtime = EmbeddedRuntime(log, MemoryProjectionSink(), processors(), codec=codec, max_records=4)
    hub = Recorder()
    tail = LogTail(log, codec, hub, feed=runtime.feed)
    await tail.start()
    runner = runner_on(log, codec, MemoryCheckpoints(), runtime.feed)
    await runner.open()
    await fill(log, codec)
    telemetry = sum(end for _, end in [await log.offsets(TELEMETRY, p) for p in range(4)])
    while True:
        n = await runtime.step()
        while await runner.step(now_us=T0) or await tail.step():
            pass
        if n == 0:
            break
    # the alarm events the runner appended are folded (and tailed) too
    await runtime.run_until_idle()
    while await tail.step():
        pass
    assert codec.decoded[TELEMETRY] == telemetry  # once each, by the runtime
    assert runner.stats.undecodable == 1 and tail.skipped == 1
    assert runtime.feed.served > 0
    assert await alarms_of(log, codec) == want_alarms
    assert items_of(hub) == want_items
    assert runtime.feed.held() <= 2 * 4 * 13  # at most two batches per partition


STEPS = st.lists(
    st.sampled_from(["runtime", "runner", "tail", "runner-crash", "runtime-crash", "pause"]),
    max_size=80,
)


@settings(max_examples=40)
@given(STEPS)
def test_any_interleaving_and_crash_pattern_gives_the_same_alarms_and_items(
    steps: list[str],
) -> None:
    async def go() -> None:
        codec = counting_codec()
        want_alarms, want_items = await reference(codec)
        log = MemoryEventLog()
        sink = MemoryProjectionSink()
        runtime = EmbeddedRuntime(log, sink, processors(), codec=codec, max_records=4)
        hub = Recorder()
        tail = LogTail(log, codec, hub, feed=runtime.feed)
        await tail.start()
        cps = MemoryCheckpoints()
        runner = runner_on(log, codec, cps, runtime.feed)
        await fill(log, codec)
        for step in steps:
            if step == "runtime":
                await runtime.step()
            elif step == "runner":
                await runner.step(now_us=T0)
            elif step == "tail":
                await tail.step()
            elif step == "runner-crash":  # a new runner from the last checkpoint
                runner = runner_on(log, codec, cps, runtime.feed)
            elif step == "runtime-crash":  # the sink fails mid-write; the batch is redone
                sink.fail_after = 1
                try:
                    await runtime.step()
                except RuntimeError as exc:
                    runtime._failed(exc, 0)
                sink.fail_after = None
            elif runtime.suspended:
                runtime.resume()
            else:
                await runtime.suspend()
        runtime.resume()
        for _ in range(100):
            n = await runtime.step()
            n += await runner.step(now_us=T0)
            n += await tail.step()
            if n == 0:
                break
        assert await alarms_of(log, codec) == want_alarms
        assert items_of(hub) == want_items

    asyncio.run(go())
