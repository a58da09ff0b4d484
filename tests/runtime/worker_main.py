"""A faust worker process for the two-worker tests: the real runtime and processors,
writing to the test session's store through :class:`tests.store_server.RemoteStore`.

    python -m tests.runtime.worker_main BOOTSTRAP PREFIX APP_ID STORE_URL DATADIR SESSION_S
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance, GroupCoordinator
from aiokafka.protocol.commit import OffsetCommitRequest

from millrace.pipeline.processors.deadletter import DeadLetterProcessor
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.runtime.faust_runtime import FaustRuntimeConfig, build_app
from millrace.projections.writer import ProjectionWriter
from tests.store_server import RemoteStore

# librdkafka's mock group coordinator sets the group Up as soon as the leader's
# SyncGroup carries every member's assignment, and then answers a follower's SyncGroup
# that arrives after it with INVALID_REQUEST (a real broker hands the follower its
# assignment). aiokafka raises on that, and under load (a follower busy starting) the
# group never settles. The leader therefore waits a moment before its SyncGroup so the
# followers' requests reach the mock first. Test scaffolding for the mock only: a real
# broker needs none of it, and millrace's code is unchanged.
MOCK_LEADER_SYNC_DELAY_S = 2.0
_leader_sync = CoordinatorGroupRebalance._on_join_leader


async def _on_join_leader_after_followers(self: Any, response: Any) -> Any:
    if len(response.members) > 1:
        await asyncio.sleep(MOCK_LEADER_SYNC_DELAY_S)
    return await _leader_sync(self, response)


CoordinatorGroupRebalance._on_join_leader = _on_join_leader_after_followers


# aiokafka drops its member id on any generation error (a fence's commit during a
# rebalance is one) and joins as a new member. The mock keeps the old member until its
# session expires and then aborts whatever rebalance is in progress, which makes the
# other members' generations stale in turn: on a loaded machine that feeds itself and
# the group never settles. The mock accepts any member id at JoinGroup, so the worker
# keeps its id (as current Java clients do on ILLEGAL_GENERATION).
def _reset_generation_keeping_member_id(self: Any) -> None:
    self.generation = OffsetCommitRequest.DEFAULT_GENERATION_ID
    self.request_rejoin()


GroupCoordinator.reset_generation = _reset_generation_keeping_member_id


async def main(
    bootstrap: str, prefix: str, app_id: str, url: str, datadir: str, session_timeout: str
) -> None:
    config = FaustRuntimeConfig(
        bootstrap=bootstrap,
        app_id=app_id,
        topic_prefix=prefix,
        # takes of 160 (about 40 per partition): the store's round trips per batch, not
        # the records, are the cost; a scenario's 3000 records then fold in ~20 batches
        # per partition, with writes in flight at the kill and the freeze as before
        max_records=160,
        batch_seconds=0.1,
        datadir=datadir,
        session_timeout_s=float(session_timeout),
        heartbeat_interval_s=1.0,
    )
    writer = ProjectionWriter(RemoteStore(url))
    app = build_app(config, lambda: writer, [TelemetryProcessor(), DeadLetterProcessor()])
    await app.start()
    print("started", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await app.stop()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(levelname)s:%(name)s:%(message)s",
        datefmt="%H:%M:%S",
    )
    # joins, leader elections and syncs: what a Stuck attempt needs to be diagnosed
    logging.getLogger("aiokafka.consumer.group_coordinator").setLevel(logging.INFO)
    asyncio.run(main(*sys.argv[1:7]))
