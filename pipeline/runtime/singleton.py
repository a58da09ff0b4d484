"""Singleton stages: a stage that runs exactly once across a distributed deployment.

The alarm runner and the identity watch must run once: two alarm runners would judge
every reading twice, two watches would report every silence twice. ``millrace run``
has one process, so it runs them directly (:func:`run_directly`). ``millrace process``
may run on several machines; there each singleton is wrapped in a
:class:`SingletonStage`, which runs it only while this process is the leader of the
stage's election, and stops it as soon as leadership is lost or may have been.

Which election (the issue leaves the choice open): a consumer group on a dedicated
Kafka topic, ``<prefix>millrace-leader``, one group per singleton
(``<prefix>millrace-leader-<stage>``); the member assigned partition 0 leads
(:class:`~millrace.pipeline.runtime.election_kafka.KafkaLeaderElection`). Against faust's
``on_leader=True``:

* faust's leader is the member that computes its group's assignment. It only exists
  where the faust runtime runs, and every rebalance of the processing workers (a worker
  joining to scale out) moves it; a group of its own moves leadership only when a
  member of *this* singleton set comes or goes.
* ``on_leader`` guards timers: faust checks leadership when a timer fires and offers no
  "you lost it" notice for a long-running loop. The consumer group's rebalance
  listener does (``on_partitions_revoked`` runs before the member rejoins), which is
  what stops a running stage promptly.
* the group needs only aiokafka, which the Kafka event log already uses; a faust app
  would be a second Kafka client stack per process for one bit of state.

Failover: when the leader's process dies, the group coordinator expires its session
(``distributed.leader_session_timeout_s``, 10 s by default) and assigns partition 0 to
another member, whose wrapper starts the stage; the stage resumes from its own checkpoint (the alarm
runner from ``millrace.checkpoints``), so nothing is skipped.

Fencing, and why a brief overlap is safe. A leader that is cut off rather than dead (a
frozen process, a lost network) does not hear the rebalance. The Kafka election
therefore holds leadership as a *lease*: it confirms it by committing the leader
partition's offset every heartbeat (the coordinator refuses the commit of a member it
no longer counts), and answers "not leader" once ``lease_s`` (half the session timeout)
passed without a confirmation. Since the coordinator hands partition 0 to someone else
only after a full session timeout without hearing from the old leader, the old one
stops believing before the new one starts, give or take clock rates and the time the
inner stage takes to stop (``stop_timeout_s``, after which it is cancelled). What can
still overlap is that stop: an alarm step in flight, a watch tick in flight. Both are
harmless. The alarm runner's events are deterministic (an alarm's id derives from rule,
identity, signal and event-time onset; timer events carry their event-time deadline),
so two runners over the same log append the same events, and the alarm fold treats a
RAISED of an existing alarm and a CLEARED of a cleared one as no-ops; its checkpoint is
one row with positions and state together, so whichever runner's save wins, the next
leader resumes from a consistent pair and re-emits only identical events. The watch's
events are transitions the identity fold applies once (a DISCONNECTED of a disconnected
identity changes nothing), keyed by the timestamp that triggered them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from millrace.pipeline.log.kafka.config import KafkaLogConfig
from millrace.pipeline.runtime.election import LeaderElection
from millrace.pipeline.runtime.stage import Stage

log = logging.getLogger("millrace.singleton")


async def _first(*aws: Awaitable[Any]) -> None:
    """Wait until the first of ``aws`` completes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


class SingletonStage(Stage):
    """Runs ``inner`` only while ``election`` says this member leads (see the module
    docstring). A stage itself, named as the inner one: ``run(stop)`` joins the
    election, runs the inner stage (its ``start`` then ``run``) during each term of
    leadership, and leaves the election last.

    Within a term, an inner stage that fails is started again after
    ``restart_backoff_s``; one that returns (a one-off, such as rule seeding) is done
    until the next term. The inner stage's ``stop_timeout_s`` bounds how long it may
    take to stop when leadership goes (then it is cancelled)."""

    singleton = True

    def __init__(
        self,
        inner: Stage,
        election: LeaderElection,
        *,
        stop_timeout_s: float | None = None,
        restart_backoff_s: float = 1.0,
    ) -> None:
        self.inner = inner
        self.election = election
        self.name = inner.name
        #: how long the inner stage may take to stop when leadership goes
        self.inner_stop_timeout_s = (
            inner.stop_timeout_s if stop_timeout_s is None else stop_timeout_s
        )
        # the deployment's stop: the inner stage's, then leaving the group
        self.stop_timeout_s = self.inner_stop_timeout_s + 10.0
        self.restart_backoff_s = restart_backoff_s
        #: how many times the inner stage was started (for health and tests)
        self.runs = 0
        self.running = False

    def health(self) -> dict[str, Any]:
        out = {"leader": self.election.is_leader(), "running": self.running, "runs": self.runs}
        if self.running:
            out.update(self.inner.health())
        return out

    async def run(self, stop: asyncio.Event) -> None:
        await self.election.start()
        try:
            while not stop.is_set():
                if self.election.is_leader():
                    await self._lead(stop)
                else:
                    await _first(stop.wait(), self.election.changed())
        finally:
            await self.election.close()

    def _leading(self, stop: asyncio.Event) -> bool:
        return not stop.is_set() and self.election.is_leader()

    async def _lead(self, stop: asyncio.Event) -> None:
        """One run of the inner stage, within one term of leadership."""
        inner_stop = asyncio.Event()
        task = asyncio.create_task(self._run_inner(inner_stop), name=f"singleton-{self.name}")
        self.runs += 1
        self.running = True
        log.info("%s: leader, stage started", self.name)
        told_to_stop = True  # unless the stage ends on its own while leading
        try:
            while self._leading(stop):
                if task.done():
                    told_to_stop = False
                    break
                await _first(stop.wait(), self.election.changed(), asyncio.shield(task))
        finally:
            inner_stop.set()
            await self._finish(task)
            self.running = False
        if stop.is_set():
            return
        exc = None if task.cancelled() else task.exception()
        if told_to_stop:
            # stopped because leadership went; it may be back already (the stage took a
            # while to stop): the caller starts a new term then, from the checkpoint
            log.warning("%s: leadership lost, stage stopped", self.name, exc_info=exc)
            return
        if exc is None:
            # done (a one-off): nothing more to do in this term
            log.info("%s: stage done", self.name)
            while self._leading(stop):
                await _first(stop.wait(), self.election.changed())
            return
        log.error(
            "%s: stage failed while leading; restarting in %.1fs",
            self.name,
            self.restart_backoff_s,
            exc_info=exc,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.restart_backoff_s)

    async def _run_inner(self, stop: asyncio.Event) -> None:
        await self.inner.start()
        await self.inner.run(stop)

    async def _finish(self, task: asyncio.Task[None]) -> None:
        """Let the stage stop within its stop timeout; cancel it after that."""
        timeout = self.inner_stop_timeout_s
        done = (await asyncio.wait([task], timeout=timeout))[0] if timeout > 0 else set()
        if not done:
            if timeout > 0:
                log.warning("%s: stage did not stop in %.1fs; cancelled", self.name, timeout)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        elif not task.cancelled():
            task.exception()  # retrieved here; _lead reports it when it matters


def run_directly(stage: Stage) -> Stage:
    """The embedded deployment's ``wrap_singleton``: one process, so the stage runs
    as it is."""
    return stage


def singleton_wrapper(
    election_for: Callable[[str], LeaderElection], **kwargs: float
) -> Callable[[Stage], Stage]:
    """A ``wrap_singleton`` that gives each stage an election of its own
    (``election_for(stage.name)``)."""

    def wrap(stage: Stage) -> Stage:
        return SingletonStage(stage, election_for(stage.name), **kwargs)

    return wrap


def kafka_singleton_wrapper(
    config: KafkaLogConfig, *, session_timeout_s: float = 10.0, heartbeat_s: float | None = None
) -> Callable[[Stage], Stage]:
    """The distributed deployment's ``wrap_singleton``: a Kafka leader group per stage
    (``distributed.leader_session_timeout_s``). The heartbeat, which also confirms the
    lease, is 1 s, or a fifth of a shorter session: the lease (half the session) then
    spans two confirmations and more."""
    from millrace.pipeline.runtime.election_kafka import KafkaLeaderElection

    beat = min(1.0, session_timeout_s / 5) if heartbeat_s is None else heartbeat_s

    def election_for(name: str) -> LeaderElection:
        return KafkaLeaderElection(
            config, name, session_timeout_s=session_timeout_s, heartbeat_s=beat
        )

    return singleton_wrapper(election_for)
