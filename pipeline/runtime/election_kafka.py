"""KafkaLeaderElection: leadership as partition 0 of a dedicated topic in a consumer group.

Every member of one singleton set joins the consumer group
``<prefix>millrace-leader-<name>`` on the topic ``<prefix>millrace-leader``; whoever the
group's assignor gives partition 0 leads. Nothing is ever produced to the topic: it
exists only to be assigned. Any partition count works (the topic is created by the
broker's auto-creation, like millrace's other topics; librdkafka's mock cluster makes
it with 4 partitions, a real cluster with its default), since every assignor gives
partition 0 to exactly one member.

Leadership is a lease (see :mod:`millrace.pipeline.runtime.singleton` for why):

* gained when a rebalance assigns partition 0 (the SyncGroup answer is the first
  confirmation);
* confirmed every ``heartbeat_s`` by committing the partition's offset: the coordinator
  accepts a commit only from a member of the current generation, so a success proves the
  group still counts this member as the owner;
* lost at once when a rebalance revokes the partition (aiokafka calls the listener
  before rejoining), and also when ``lease_s`` (half the session timeout by default)
  passed since the last confirmation was *sent*: the coordinator gives the partition to
  another member only after a whole session timeout without hearing from this one, so
  this member has stopped believing before anyone else starts.

aiokafka's coordinator leaves the group of a consumer that is not polled within
``max_poll_interval``; the election's loop polls (empty: nothing is produced).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any

from millrace.pipeline.log.kafka.config import KafkaLogConfig
from millrace.pipeline.runtime.election import LeaderElection, Leadership

log = logging.getLogger("millrace.election")

LEADER_TOPIC = "millrace-leader"


class KafkaLeaderElection(LeaderElection):
    """One member of a leader group on Kafka (see the module docstring)."""

    def __init__(
        self,
        config: KafkaLogConfig,
        name: str,
        *,
        session_timeout_s: float = 10.0,
        heartbeat_s: float = 1.0,
        lease_s: float | None = None,
    ) -> None:
        if not 0 < heartbeat_s < session_timeout_s:
            raise ValueError("heartbeat_s must be positive and below session_timeout_s")
        self.config = config
        self.name = name
        self.topic = config.topic(LEADER_TOPIC)
        self.group = config.topic(f"{LEADER_TOPIC}-{name}")
        self.session_timeout_s = session_timeout_s
        self.heartbeat_s = heartbeat_s
        self.lease_s = session_timeout_s / 2 if lease_s is None else lease_s
        self.state = Leadership()
        self._holds = False
        self._confirmed = float("-inf")
        self._consumer: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        #: successful confirmations (for tests and health)
        self.confirmations = 0

    # -- the port --------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._holds and time.monotonic() < self._confirmed + self.lease_s

    def changed(self) -> Awaitable[object]:
        return self.state.changed()

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from millrace.pipeline.log.kafka.log import KafkaEventLog

        kwargs = KafkaEventLog(self.config)._client_kwargs()
        consumer = AIOKafkaConsumer(
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=int(self.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.heartbeat_s * 1000),
            # the rebalance waits this long for members to rejoin
            rebalance_timeout_ms=int(self.session_timeout_s * 1000),
            **kwargs,
        )
        await consumer.start()
        # subscribed after start: start() would wait for the first assignment, and the
        # join is the poll loop's business
        consumer.subscribe([self.topic], listener=_listener(self))
        self._consumer = consumer
        self._tasks = [
            asyncio.create_task(self._poll(), name=f"election-{self.name}"),
            asyncio.create_task(self._watch_lease(), name=f"lease-{self.name}"),
        ]

    async def close(self) -> None:
        self._holds = False
        self.state.set(False)
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # leaves the group: the next member leads without waiting out a session
            with contextlib.suppress(Exception):
                await consumer.stop()

    # -- inside --------------------------------------------------------------------

    def _assigned(self, partitions: set[Any]) -> None:
        holds = any(tp.topic == self.topic and tp.partition == 0 for tp in partitions)
        if holds:
            self._confirmed = time.monotonic()
        self._holds = holds
        self._publish()
        if holds:
            log.info("election %s: leader (partition 0 of %s)", self.name, self.topic)

    def _revoked(self) -> None:
        if self._holds:
            log.info("election %s: partition 0 revoked", self.name)
        self._holds = False
        self._publish()

    def _publish(self) -> None:
        self.state.set(self.is_leader())

    async def _poll(self) -> None:
        from aiokafka import TopicPartition

        tp = TopicPartition(self.topic, 0)
        while True:
            try:
                await self._consumer.getmany(timeout_ms=int(self.heartbeat_s * 1000))
                if self._holds:
                    sent = time.monotonic()
                    await self._consumer.commit({tp: 0})
                    if self._holds:  # not revoked while the commit was out
                        self._confirmed = sent
                        self.confirmations += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a rebalance in progress, a stale generation, ...
                log.debug("election %s: not confirmed: %r", self.name, exc)
                await asyncio.sleep(self.heartbeat_s / 2)
            self._publish()

    async def _watch_lease(self) -> None:
        # a lease runs out without any event: look at it often enough that a stage
        # stops within a fraction of a heartbeat of its expiry
        while True:
            await asyncio.sleep(min(0.25, self.heartbeat_s / 4))
            self._publish()


def _listener(election: KafkaLeaderElection) -> Any:
    """aiokafka's ConsumerRebalanceListener, forwarding to the election (built here:
    aiokafka is imported only when a Kafka election starts)."""
    from aiokafka.abc import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: set[Any]) -> None:
            election._revoked()

        def on_partitions_assigned(self, assigned: set[Any]) -> None:
            election._assigned(assigned)

    return Listener()
