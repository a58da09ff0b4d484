"""Pause through the log (distributed deployment): the follower reads the audit
topic's pause/resume events (refused ones and other targets ignored) and a worker's
take handler folds nothing while paused, then everything once resumed."""

from __future__ import annotations

import asyncio
from typing import Any

from millrace.pipeline.codec import default_codec
from millrace.pipeline.events import audit_event
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.control import PauseFollower, control_of
from millrace.pipeline.runtime.faust_batcher import PartitionBatcher, _Rec
from millrace.pipeline.runtime.faust_runtime import FaustTakeHandler
from millrace.pipeline.sink import MemoryProjectionSink
from millrace.pipeline.topics import AUDIT

T0 = 1_700_000_000_000_000


def audit(action: str, ts: int, target_type: str = "pipeline", status: str = "ok") -> Any:
    return audit_event(
        actor="k",
        actor_role="operator",
        action=action,
        target_type=target_type,
        target_id="runtime",
        ts_us=ts,
        status=status,
    )


def test_control_of() -> None:
    assert control_of(audit("pause", 1)) is True
    assert control_of(audit("resume", 1)) is False
    assert control_of(audit("pause", 1, status="forbidden")) is None
    assert control_of(audit("pause", 1, target_type="identity")) is None
    assert control_of(audit("update", 1)) is None


def test_follower_starts_from_the_last_control_then_follows_in_time_order() -> None:
    log = MemoryEventLog()
    pub = LogPublisher(log)
    seen: list[bool] = []

    async def main() -> None:
        await pub.publish(AUDIT, [("a", audit("pause", T0))])  # before the start
        follower = PauseFollower(log, seen.append)
        # the pause in force when it starts (a worker started while paused)
        assert await follower.poll() == 0 and seen == [True] and follower.paused
        seen.clear()
        await pub.publish(
            AUDIT,
            [
                ("a", audit("pause", T0 + 3)),
                ("b", audit("pause", T0 + 4, status="forbidden")),
                ("c", audit("update", T0 + 5, target_type="setting")),
            ],
        )
        await follower.poll()
        assert seen == [True] and follower.paused
        # two keys may land on two partitions: applied in time order
        await pub.publish(AUDIT, [("z", audit("resume", T0 + 9)), ("y", audit("pause", T0 + 8))])
        await follower.poll()
        assert seen == [True, True, False] and not follower.paused

    asyncio.run(main())


def test_a_paused_worker_folds_nothing_until_resumed() -> None:
    codec = default_codec()
    sink = MemoryProjectionSink()
    tp = TopicPartition("telemetry", 0)
    records = [
        _Rec(
            i,
            T0,
            b"d",
            codec.encode(
                "telemetry",
                {
                    "identity": "d",
                    "source": "t",
                    "received_us": T0,
                    "samples": [{"ts_us": T0 + i, "values": {"v": 1.0}, "quality": 0}],
                },
            ),
        )
        for i in range(6)
    ]
    handler = FaustTakeHandler(PartitionBatcher(sink, [TelemetryProcessor()], "c"), None)
    log = MemoryEventLog()

    async def main() -> None:
        follower = PauseFollower(log, lambda p: handler.gate.clear() if p else handler.gate.set())
        await follower.start_at_end()
        await handler.handle({tp: records[:3]})
        assert len(sink.rows["readings"]) == 3
        await LogPublisher(log).publish(AUDIT, [("a", audit("pause", T0))])
        await follower.poll()
        take = asyncio.create_task(handler.handle({tp: records[3:]}))
        for _ in range(20):  # the take waits as long as the worker is paused
            await asyncio.sleep(0)
        assert not take.done() and len(sink.rows["readings"]) == 3
        await LogPublisher(log).publish(AUDIT, [("a", audit("resume", T0 + 1))])
        await follower.poll()
        await asyncio.wait_for(take, 10)
        assert len(sink.rows["readings"]) == 6
        assert sink.progress("c").positions[tp] == 6

    asyncio.run(main())
