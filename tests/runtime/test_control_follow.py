"""The audit follower (``pipeline.runtime.control_follow``): it starts from the last
selected event already on the log (read backwards a chunk at a time, over partitions
that interleave, refused and other events between), then hands what comes next in
time order; a failing handler does not stop the events after it."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.control import control_of
from millrace.pipeline.runtime.control_follow import AuditFollower
from millrace.pipeline.topics import AUDIT
from tests.runtime.test_pause_control import T0, audit

# (key, action, target type, status): controls, refused ones and other audits
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["runtime", "a", "b", "c"]),
        st.sampled_from(["pause", "resume", "update"]),
        st.sampled_from(["pipeline", "pipeline", "setting"]),
        st.sampled_from(["ok", "ok", "forbidden"]),
    ),
    max_size=40,
)


def selected(event: dict[str, Any]) -> bool:
    return control_of(event) is not None


@settings(max_examples=60, deadline=None)
@given(before=EVENTS, after=EVENTS, chunk=st.integers(1, 7), partitions=st.integers(1, 4))
def test_starts_from_the_last_control_then_follows(
    before: list[tuple[str, str, str, str]],
    after: list[tuple[str, str, str, str]],
    chunk: int,
    partitions: int,
) -> None:
    log = MemoryEventLog(partitions)
    pub = LogPublisher(log)
    events = [
        (key, audit(action, T0 + i, target_type=tt, status=status))
        for i, (key, action, tt, status) in enumerate(before + after)
    ]
    old, new = events[: len(before)], events[len(before) :]
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        for key, event in old:  # one at a time: appended in time order
            await pub.publish(AUDIT, [(key, event)])
        follower = AuditFollower(log, selected, seen.append, chunk=chunk, resume_last=True)
        await follower.start()
        controls = [e for _, e in old if selected(e)]
        assert seen == controls[-1:]
        seen.clear()
        await pub.publish(AUDIT, new)
        while await follower.poll():
            pass
        assert seen == [e for _, e in new if selected(e)]

    asyncio.run(main())


def test_from_the_end_ignores_the_past_and_a_failing_handler_stops_nothing() -> None:
    log = MemoryEventLog(2)
    pub = LogPublisher(log)
    handled: list[int] = []

    def on_event(event: dict[str, Any]) -> None:
        handled.append(int(event["ts_us"]))
        if len(handled) == 1:
            raise RuntimeError("the first one fails")

    async def main() -> None:
        await pub.publish(AUDIT, [("runtime", audit("pause", T0))])
        follower = AuditFollower(log, selected, on_event)
        await follower.start()
        assert handled == []
        await pub.publish(
            AUDIT, [("runtime", audit("resume", T0 + 1)), ("runtime", audit("pause", T0 + 2))]
        )
        await follower.poll()
        assert handled == [T0 + 1, T0 + 2] and follower.handled == 2

    asyncio.run(main())
