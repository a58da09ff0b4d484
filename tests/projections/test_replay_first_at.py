"""``first_at``: the binary search for a replay's start agrees with a linear scan."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from millrace.pipeline.log.base import Message, TopicPartition
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.projections.replay import first_at


@given(
    gaps=st.lists(st.integers(0, 5), max_size=40),
    start=st.integers(-2, 120),
)
def test_first_at_is_the_first_record_at_or_after_the_time(gaps: list[int], start: int) -> None:
    times = []
    t = 0
    for gap in gaps:  # append times never go back
        t += gap
        times.append(t)

    async def go() -> int:
        log = MemoryEventLog(partitions=1)
        if times:
            await log.append("t", [Message(b"x", timestamp_us=ts, partition=0) for ts in times])
        return await first_at(log, TopicPartition("t", 0), start)

    want = next((i for i, ts in enumerate(times) if ts >= start), len(times))
    assert asyncio.run(go()) == want
