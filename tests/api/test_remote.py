"""The figures a distributed API process reads of the others (``api.remote``), on a
memory log and chDB: the processing group's lag from its commits, the alarm runner's
lag from its checkpoint, the pause in force from the audit topic (the last one before
the first read, then what follows), the workers' last heartbeats while paused (stale
ones left out otherwise), and a refresh bounded to once per ``max_age_s``."""

from __future__ import annotations

import asyncio
from typing import Any

from millrace.api.remote import RemoteFigures
from millrace.pipeline.codec import default_codec
from millrace.pipeline.events import audit_event
from millrace.pipeline.log.base import Message, TopicPartition
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.topics import AUDIT, STATUS, TELEMETRY
from millrace.projections.store.chdb import ChdbStore
from tests.projections.test_remote_figures import NOW, beat, fold


def control(action: str) -> dict[str, Any]:
    return audit_event(
        actor="k", actor_role="operator", action=action, target_type="pipeline", target_id="runtime"
    )


def test_lags_and_the_pause_in_force(store: ChdbStore) -> None:
    log = MemoryEventLog(2)
    pub = LogPublisher(log)
    saved: dict[TopicPartition, int] = {}

    async def main() -> None:
        # telemetry: 7 records on partition 0, 3 on 1; status: 4 on partition 0
        await log.append(TELEMETRY, [Message(b"x", partition=0)] * 7)
        await log.append(TELEMETRY, [Message(b"x", partition=1)] * 3)
        await log.append(STATUS, [Message(b"x", partition=0)] * 4)
        await log.commit("group", {TopicPartition(TELEMETRY, 0): 5})
        saved.update({TopicPartition(TELEMETRY, 0): 7, TopicPartition(STATUS, 0): 1})
        await pub.publish(AUDIT, [("runtime", control("pause"))])
        # a worker's last heartbeat folded before the pause, long ago
        await fold(store, [beat("w/process", NOW - 100_000_000, "running", {"readings": 5})])
        figures = RemoteFigures(
            log,
            store,
            "group",
            [TELEMETRY, STATUS],
            default_codec(),
            max_age_s=3600,
            clock=lambda: NOW,
            alarm_positions=lambda: saved,
            alarm_topics=[TELEMETRY, STATUS],
        )
        await figures.refresh()
        # group: telemetry 7-5 + 3 never committed, status 4 never committed
        assert figures.lag_records == 2 + 3 + 4
        # alarms: telemetry 0 + 3, status 4-1
        assert figures.alarm_lag_records == 0 + 3 + 3
        assert figures.paused  # the pause already on the log
        assert figures.status()["alarm_lag_records"] == 6
        # paused, the heartbeats are held back too: the last one stands
        assert figures.status()["runtime"]["rows"]["readings"] == 5

        await pub.publish(AUDIT, [("runtime", control("resume"))])
        await log.commit("group", {TopicPartition(TELEMETRY, 0): 7})
        await figures.refresh()  # within max_age: nothing read
        assert figures.paused and figures.lag_records == 9
        await figures.refresh(force=True)
        assert not figures.paused and figures.lag_records == 7
        assert figures.status()["runtime"]["rows"]["readings"] == 0  # stale when running

    asyncio.run(main())
