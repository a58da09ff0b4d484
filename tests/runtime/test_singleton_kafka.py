"""SingletonStage over KafkaLeaderElection, against librdkafka's mock cluster: of two
members exactly one runs the stage; when it leaves, the other takes over; a leader
whose confirmations stop (as when its process is frozen or cut off) stops the stage
once its lease runs out, before the group could give partition 0 to anyone else.

A SIGKILLed leader's process is the end-to-end test's (tests/test_distributed_e2e.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from millrace.pipeline.log.kafka.config import KafkaLogConfig
from millrace.pipeline.runtime.election_kafka import KafkaLeaderElection
from millrace.pipeline.runtime.singleton import SingletonStage
from tests.runtime.test_singleton import Probe

pytest.importorskip("aiokafka")

pytestmark = [pytest.mark.integration]


@pytest.fixture
def mock_group_workarounds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The two workarounds of tests/runtime/worker_main.py for librdkafka's mock group
    coordinator (read its comments), applied for this test only."""
    from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance, GroupCoordinator
    from aiokafka.protocol.commit import OffsetCommitRequest

    leader_sync = CoordinatorGroupRebalance._on_join_leader

    async def on_join_leader_after_followers(self: Any, response: Any) -> Any:
        if len(response.members) > 1:
            await asyncio.sleep(1.0)
        return await leader_sync(self, response)

    def reset_generation_keeping_member_id(self: Any) -> None:
        self.generation = OffsetCommitRequest.DEFAULT_GENERATION_ID
        self.request_rejoin()

    monkeypatch.setattr(
        CoordinatorGroupRebalance, "_on_join_leader", on_join_leader_after_followers
    )
    monkeypatch.setattr(GroupCoordinator, "reset_generation", reset_generation_keeping_member_id)
    yield


async def until(cond: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(180)
def test_one_leader_handover_and_lease(kafka_bootstrap: str, mock_group_workarounds: None) -> None:
    async def scenario() -> None:
        config = KafkaLogConfig(
            bootstrap_servers=kafka_bootstrap, topic_prefix=f"s{uuid.uuid4().hex[:8]}-"
        )
        probes = [Probe("alarms"), Probe("alarms")]
        elections = [
            KafkaLeaderElection(config, "alarms", session_timeout_s=6.0, heartbeat_s=0.5)
            for _ in probes
        ]
        stops = [asyncio.Event(), asyncio.Event()]
        tasks = [
            asyncio.create_task(SingletonStage(p, e, stop_timeout_s=2.0).run(s))
            for p, e, s in zip(probes, elections, stops, strict=True)
        ]
        try:
            await until(lambda: sum(p.active for p in probes) == 1, "a leader")
            # both members in the group, and still exactly one runs the stage
            await until(lambda: all(e._consumer is not None for e in elections), "members")
            await until(
                lambda: any(e.is_leader() and e.confirmations >= 2 for e in elections),
                "confirmed leadership",
            )
            assert sum(p.active for p in probes) == 1
            assert sum(e.is_leader() for e in elections) == 1
            first = 0 if probes[0].active else 1
            other = 1 - first

            # the leader's process stops: it leaves the group, the other takes over
            stops[first].set()
            await tasks[first]
            assert probes[first].active == 0 and probes[first].stops == 1
            await until(lambda: probes[other].active == 1, "the other taking over")
            assert elections[other].is_leader()

            # its confirmations stop (the poll loop gone, as in a frozen process): the
            # stage stops within the lease (3 s), before the session (6 s) would expire
            runs = probes[other].starts
            elections[other]._tasks[0].cancel()
            lost_from = time.monotonic()
            await until(lambda: probes[other].active == 0, "the lease running out", 10)
            assert time.monotonic() - lost_from < elections[other].session_timeout_s
            assert probes[other].starts == runs and not elections[other].is_leader()
        finally:
            for s in stops:
                s.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert all(p.active == 0 for p in probes)

    asyncio.run(scenario())
