"""LogPublisher: what it appends (the codec's bytes, keys, order, one append per publish),
that a large publish lets the event loop run while it encodes, and that a cancelled
caller's publish is still appended whole."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from millrace.pipeline import publisher as publisher_module
from millrace.pipeline.codec import default_codec
from millrace.pipeline.events import sample, telemetry_batch
from millrace.pipeline.log.base import AppendResult, Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.topics import TELEMETRY


class CountingLog(MemoryEventLog):
    """The in-memory log, counting append calls."""

    def __init__(self) -> None:
        super().__init__()
        self.appends: list[int] = []

    async def append(self, topic: str, messages: Sequence[Message]) -> list[AppendResult]:
        self.appends.append(len(messages))
        return await super().append(topic, messages)


def batches(n: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            f"dev-{i}",
            telemetry_batch(
                f"dev-{i}", [sample(1_000 + i, {"t": float(i), "n": i})], batch_id=f"b{i}"
            ),
        )
        for i in range(n)
    ]


async def appended(log: MemoryEventLog) -> list[tuple[bytes | None, bytes]]:
    out = []
    for p in range(log.partitions(TELEMETRY)):
        out += [(r.key, r.value) for r in await log.read(TELEMETRY, p, 0, 1_000_000)]
    return sorted(out)


def expected(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[bytes | None, bytes]]:
    codec = default_codec()
    return sorted((k.encode(), codec.encode(TELEMETRY, e)) for k, e in events)


@pytest.mark.parametrize("n", [1, publisher_module.SLICED_ABOVE, 3_000])
async def test_a_publish_appends_the_codecs_bytes_in_one_append(n: int) -> None:
    log = CountingLog()
    events = batches(n)
    pub = LogPublisher(log)
    await pub.publish(TELEMETRY, events)
    assert log.appends == [n]
    assert pub.published == n
    assert await appended(log) == expected(events)
    # within a partition, in the order given
    codec = default_codec()
    for p in range(log.partitions(TELEMETRY)):
        ids = [
            codec.decode(TELEMETRY, r.value)["batch_id"]
            for r in await log.read(TELEMETRY, p, 0, 1_000_000)
        ]
        assert ids == sorted(ids, key=lambda b: int(b[1:]))


async def test_a_large_publish_lets_the_loop_run_while_it_encodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publisher_module, "SLICE_S", 0.0)  # a slice per 16 events
    log = CountingLog()
    ticks: list[int] = []
    publishing = True

    async def other_work() -> None:
        while publishing:
            ticks.append(len(log.appends))
            await asyncio.sleep(0)

    other = asyncio.ensure_future(other_work())
    await asyncio.sleep(0)
    began = len(ticks)
    await LogPublisher(log).publish(TELEMETRY, batches(1_600))
    publishing = False
    await other
    during = ticks[began:]
    # the other task ran many times before the append, not only after it
    assert sum(1 for appends in during if appends == 0) >= 50
    assert log.appends == [1_600]


async def test_a_small_publish_runs_nothing_else_before_its_append() -> None:
    log = CountingLog()
    order: list[str] = []

    async def other() -> None:
        order.append(f"other after {len(log.appends)} appends")

    task = asyncio.ensure_future(other())
    await LogPublisher(log).publish(TELEMETRY, batches(publisher_module.SLICED_ABOVE))
    await task
    assert log.appends == [publisher_module.SLICED_ABOVE]
    assert order == ["other after 1 appends"]


async def test_a_cancelled_publish_is_still_appended_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publisher_module, "SLICE_S", 0.0)
    log = CountingLog()
    pub = LogPublisher(log)
    events = batches(2_000)
    caller = asyncio.ensure_future(pub.publish(TELEMETRY, events))
    for _ in range(5):  # into the encoding's slices
        await asyncio.sleep(0)
    assert log.appends == []
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    deadline = time.monotonic() + 30
    while not log.appends and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert log.appends == [2_000]
    assert await appended(log) == expected(events)
    assert pub._running == set()


async def test_an_event_the_codec_refuses_fails_the_publish_and_appends_nothing() -> None:
    log = CountingLog()
    events = batches(500)
    events[321] = (events[321][0], {**events[321][1], "identity": 7})
    with pytest.raises(Exception, match="identity"):
        await LogPublisher(log).publish(TELEMETRY, events)
    assert log.appends == []
