"""One bad event never stops the pipeline: it reaches the deadletter topic and the
deadletter projection with its reason, and the rest is applied."""

from __future__ import annotations

import asyncio

from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.projections import queries
from millrace.projections.queries import TimeRange
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

T0 = 1_760_000_000_000_000


def good(identity: str, ts: int, v: float) -> dict[str, object]:
    return {
        "identity": identity,
        "source": "t",
        "received_us": T0,
        "samples": [{"ts_us": ts, "values": {"x": v}, "quality": 0}],
    }


def test_undecodable_and_unappliable_events_become_dead_letters(store: ChdbStore) -> None:
    async def go() -> None:
        log = MemoryEventLog(partitions=1)
        pub = LogPublisher(log)
        await pub.publish("telemetry", [("a", good("a", T0, 1.0))])
        await log.append("telemetry", [Message(value=b"\x00garbage", key=b"a")])
        await pub.publish("telemetry", [("b", good("b", -5, 2.0))])  # before 1970
        await pub.publish("telemetry", [("a", good("a", T0 + 1, 3.0))])
        runtime = EmbeddedRuntime(log, ProjectionWriter(store), processors(), max_records=2)
        await runtime.run_until_idle()

        values = store.execute("SELECT value FROM millrace.readings ORDER BY ts").rows
        assert values == [[1.0], [3.0]]
        rows = store.execute(
            "SELECT source_topic, source_offset, stage, error_type, reason "
            "FROM millrace.deadletter FINAL ORDER BY source_offset"
        ).rows
        assert [(r[0], r[1], r[2]) for r in rows] == [
            ("telemetry", 1, "decode"),
            ("telemetry", 2, "apply"),
        ]
        assert rows[0][3] == "DecodeError"
        assert "ts_us" in rows[1][4]
        _, end = await log.offsets("deadletter", 0)
        assert end == 2
        event = default_codec().decode("deadletter", (await log.read("deadletter", 0, 0))[0].value)
        assert event["payload"] == b"\x00garbage" and event["source_offset"] == 1

        listed, total = queries.dead_letters(store, "telemetry", None, TimeRange(), 10, 0)
        assert total == 2
        assert [d["stage"] for d in listed] == ["apply", "decode"]  # newest first
        assert listed[1]["payload"].endswith("garbage")

        # the same failures reported again (a retried batch) stay one row each
        await EmbeddedRuntime(
            log, ProjectionWriter(store), processors(), consumer="second"
        ).run_until_idle()
        count = store.execute("SELECT count() FROM millrace.deadletter FINAL").rows[0][0]
        assert count == 2

    asyncio.run(go())
