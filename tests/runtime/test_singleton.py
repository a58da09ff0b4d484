"""SingletonStage over the memory election: the stage runs on the leader only, stops
when leadership goes, starts on the member that gets it, and is cancelled when it will
not stop."""

from __future__ import annotations

import asyncio

import pytest

from millrace.pipeline.runtime.election import MemoryLeaderGroup
from millrace.pipeline.runtime.singleton import SingletonStage, run_directly, singleton_wrapper
from millrace.pipeline.runtime.stage import Stage


class Probe(Stage):
    """A stage recording its runs; ``stubborn`` ignores its stop event, ``one_off``
    returns at once."""

    def __init__(
        self,
        name: str = "probe",
        stubborn: bool = False,
        fail: bool = False,
        one_off: bool = False,
    ) -> None:
        self.name = name
        self.stubborn = stubborn
        self.fail = fail
        self.one_off = one_off
        self.active = 0
        self.prepared = 0
        self.starts = 0
        self.stops = 0
        self.cancelled = 0

    async def start(self) -> None:
        self.prepared += 1

    async def run(self, stop: asyncio.Event) -> None:
        self.starts += 1
        self.active += 1
        try:
            if self.fail:
                raise RuntimeError("boom")
            if self.one_off:
                return
            if self.stubborn:
                await asyncio.Event().wait()
            await stop.wait()
            self.stops += 1
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1


async def until(cond: object, what: str) -> None:
    for _ in range(1000):
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never: {what}")


def test_two_members_run_the_stage_once_and_fail_over() -> None:
    async def scenario() -> None:
        group = MemoryLeaderGroup()
        a, b = Probe(), Probe()
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        ea, eb = group.member("a"), group.member("b")
        ta = asyncio.create_task(SingletonStage(a, ea).run(stop_a))
        await until(lambda: a.active == 1, "a runs")
        tb = asyncio.create_task(SingletonStage(b, eb).run(stop_b))
        await until(lambda: eb.joined, "b joined")
        await asyncio.sleep(0.05)
        assert (a.active, b.active) == (1, 0)
        # the leader's process stops: it leaves the group, b takes over
        stop_a.set()
        await ta
        assert (a.active, a.stops, ea.closes) == (0, 1, 1)
        await until(lambda: b.active == 1, "b takes over")
        stop_b.set()
        await tb
        assert (b.active, b.stops) == (0, 1)
        assert group.elections == 2

    asyncio.run(scenario())


def test_revoked_leadership_stops_the_stage_and_regained_starts_it_again() -> None:
    async def scenario() -> None:
        group = MemoryLeaderGroup()
        probe = Probe()
        stop = asyncio.Event()
        e = group.member()
        task = asyncio.create_task(SingletonStage(probe, e).run(stop))
        await until(lambda: probe.active == 1, "runs")
        group.cut_off(e)  # the group moved on; e has not noticed yet
        await asyncio.sleep(0.02)
        assert probe.active == 1
        e.notice()  # its lease ran out
        await until(lambda: probe.active == 0, "stopped")
        assert probe.stops == 1
        group.restore(e)
        await until(lambda: probe.active == 1, "runs again")
        await group.revoke()  # a rebalance: lost for a moment, then won again
        await until(lambda: probe.starts == 3, "restarted after the rebalance")
        stop.set()
        await task
        assert (probe.active, probe.stops, probe.cancelled) == (0, 3, 0)

    asyncio.run(scenario())


def test_cut_off_leader_and_new_leader_overlap_only_until_the_old_one_notices() -> None:
    async def scenario() -> None:
        group = MemoryLeaderGroup()
        a, b = Probe(), Probe()
        stop = asyncio.Event()
        ea, eb = group.member("a"), group.member("b")
        tasks = [
            asyncio.create_task(SingletonStage(a, ea).run(stop)),
            asyncio.create_task(SingletonStage(b, eb).run(stop)),
        ]
        await until(lambda: a.active == 1 and eb.joined, "a leads, b joined")
        group.cut_off(ea)
        await until(lambda: b.active == 1, "b leads")
        assert a.active == 1  # the overlap the module docstring bounds
        ea.notice()
        await until(lambda: a.active == 0, "a stopped")
        assert b.active == 1
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_a_stage_that_will_not_stop_is_cancelled() -> None:
    async def scenario() -> None:
        group = MemoryLeaderGroup()
        probe = Probe(stubborn=True)
        stop = asyncio.Event()
        e = group.member()
        task = asyncio.create_task(SingletonStage(probe, e, stop_timeout_s=0.05).run(stop))
        await until(lambda: probe.active == 1, "runs")
        e.notice()
        await until(lambda: probe.active == 0, "cancelled")
        assert probe.cancelled == 1
        stop.set()
        await task

    asyncio.run(scenario())


def test_a_failing_stage_is_restarted_while_leading() -> None:
    async def scenario() -> None:
        group = MemoryLeaderGroup()
        probe = Probe(fail=True)
        stop = asyncio.Event()
        stage = SingletonStage(probe, group.member(), restart_backoff_s=0.01)
        task = asyncio.create_task(stage.run(stop))
        await until(lambda: probe.starts >= 3, "restarted")
        stop.set()
        await task
        assert stage.runs == probe.starts
        assert stage.health()["running"] is False

    asyncio.run(scenario())


def test_not_leading_waits_without_running_and_stops_on_stop() -> None:
    async def scenario() -> None:
        group = MemoryLeaderGroup()
        group.member("leader").joined = True  # someone else leads
        group.rebalance()
        probe = Probe()
        stop = asyncio.Event()
        e = group.member()
        task = asyncio.create_task(SingletonStage(probe, e).run(stop))
        await until(lambda: e.joined, "joined")
        await asyncio.sleep(0.02)
        stop.set()
        await task
        assert probe.starts == 0 and e.closes == 1

    asyncio.run(scenario())


def test_wrappers() -> None:
    probe = Probe("alarms")
    assert run_directly(probe) is probe
    group = MemoryLeaderGroup()
    wrapped = singleton_wrapper(lambda name: group.member(name), stop_timeout_s=1.0)(probe)
    assert wrapped.name == "alarms" and group.members[0].name == "alarms"
    assert isinstance(wrapped, SingletonStage)
    assert wrapped.inner_stop_timeout_s == 1.0 and wrapped.singleton
    assert wrapped.health() == {"leader": False, "running": False, "runs": 0}


def test_a_one_off_runs_once_per_term() -> None:
    async def scenario() -> None:
        group = MemoryLeaderGroup()
        probe = Probe(one_off=True)
        stop = asyncio.Event()
        e = group.member()
        task = asyncio.create_task(SingletonStage(probe, e, restart_backoff_s=0.01).run(stop))
        await until(lambda: probe.starts == 1, "ran")
        await asyncio.sleep(0.05)
        assert probe.starts == 1  # done for this term, not repeated
        await group.revoke()
        await until(lambda: probe.starts == 2, "ran in the new term")
        stop.set()
        await task
        assert probe.prepared == probe.starts == 2

    asyncio.run(scenario())


def test_an_inner_stop_timeout_of_zero_cancels_at_once() -> None:
    async def scenario() -> None:
        group = MemoryLeaderGroup()
        probe = Probe()
        probe.stop_timeout_s = 0.0
        stop = asyncio.Event()
        task = asyncio.create_task(SingletonStage(probe, group.member()).run(stop))
        await until(lambda: probe.active == 1, "runs")
        stop.set()
        await task
        assert (probe.cancelled, probe.stops) == (1, 0)

    asyncio.run(scenario())


@pytest.mark.parametrize("members", [1, 3])
def test_memory_group_has_at_most_one_leader(members: int) -> None:
    async def scenario() -> None:
        group = MemoryLeaderGroup()
        es = [group.member() for _ in range(members)]
        for e in es:
            await e.start()
        assert sum(e.is_leader() for e in es) == 1
        await es[0].close()
        assert sum(e.is_leader() for e in es) == (1 if members > 1 else 0)

    asyncio.run(scenario())


def test_alarm_runners_under_one_election_raise_each_alarm_once() -> None:
    """Two alarm runners on one log and one checkpoint store, leadership moving A -> B
    -> A: the alarms on the log are those of one clean pass, each once, and A's second
    term resumes from B's checkpoint (not from its own memory, which would append B's
    alarms again). Each handover comes once the leader settled (its checkpoint covers
    the whole log), and readings arrive once the old leader stopped: the memory group
    elects the next leader at once, where Kafka's waits a session timeout, twice the old
    leader's lease; a step in flight at a handover could otherwise judge a reading twice
    (identical events, see pipeline.runtime.singleton, but twice on the log)."""
    from millrace.pipeline.alarms.runner import TOPICS, MemoryCheckpoints
    from millrace.pipeline.log.base import TopicPartition
    from millrace.pipeline.log.memory import MemoryEventLog
    from millrace.pipeline.publisher import LogPublisher
    from millrace.pipeline.runtime.stage import LoopStage
    from millrace.pipeline.topics import TELEMETRY
    from tests.pipeline.test_alarm_runner import CODEC, T0, S, alarm_events, batch, define, runner

    values = [70.0, 90.0, 70.0, 95.0, 60.0]  # two crossings of 80, each cleared

    async def scenario() -> None:
        log = MemoryEventLog()
        await define(log, high=80, deadband=5)
        cps = MemoryCheckpoints()
        group = MemoryLeaderGroup()
        ea, eb = group.member("a"), group.member("b")
        stop = asyncio.Event()
        sa, sb = (
            SingletonStage(LoopStage("alarms", runner(log, cps, tick_s=0.01).run), e)
            for e in (ea, eb)
        )
        tasks = [asyncio.create_task(s.run(stop)) for s in (sa, sb)]
        pub = LogPublisher(log, CODEC)
        fed = 0

        async def settled() -> bool:
            """The leader's checkpoint covers every record on the log (its own alarms
            included) and holds no outbox."""
            cp = cps.load("alarms")
            if cp is None or cp.outbox:
                return False
            for topic in TOPICS:
                for p in range(log.partitions(topic)):
                    end = (await log.offsets(topic, p))[1]
                    if cp.positions.get(TopicPartition(topic, p), 0) != end:
                        return False
            return True

        async def crossings(want: int) -> None:
            nonlocal fed
            for v in values:
                await pub.publish(TELEMETRY, [("oven-1", batch("oven-1", T0 + fed * S, v))])
                fed += 1
            for _ in range(2000):
                if await settled():
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the leader never caught up")
            assert sum(e["type"] == "RAISED" for e in await alarm_events(log)) == want

        await until(lambda: sa.running and eb.joined, "a leads, b joined")
        await crossings(2)
        group.cut_off(ea)  # b is elected; a learns it lost when its lease runs out
        ea.notice()
        await until(lambda: sb.running and not sa.running, "b leads, a stopped")
        await crossings(4)
        group.cut_off(eb)
        eb.notice()
        await until(lambda: not sb.running, "b stopped")
        group.restore(ea)
        await until(lambda: sa.running, "a leads again")
        await crossings(6)
        stop.set()
        await asyncio.gather(*tasks)
        assert (sa.runs, sb.runs) == (2, 1)

        # one clean pass of one runner over the same rule and readings
        clean = MemoryEventLog()
        await define(clean, high=80, deadband=5)
        cpub = LogPublisher(clean, CODEC)
        for i in range(fed):
            v = values[i % len(values)]
            await cpub.publish(TELEMETRY, [("oven-1", batch("oven-1", T0 + i * S, v))])
        await runner(clean, MemoryCheckpoints()).run_until_idle(now_us=T0)

        def keys(events: list[dict[str, object]]) -> list[tuple[tuple[str, str], ...]]:
            return sorted(tuple(sorted((k, str(v)) for k, v in e.items())) for e in events)

        got, want = await alarm_events(log), await alarm_events(clean)
        assert len(want) == 12  # six raised, six cleared
        assert keys(got) == keys(want)

    asyncio.run(scenario())


class SlowToStop(Probe):
    """A stage that, once asked to stop, takes until ``release`` is set to return (an
    alarm step in flight on a loaded machine)."""

    def __init__(self) -> None:
        super().__init__("slow")
        self.stopping = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self.starts += 1
        self.active += 1
        try:
            await stop.wait()
            self.stopping.set()
            await self.release.wait()
            self.stops += 1
        finally:
            self.active -= 1


def test_leadership_back_while_the_stage_stops_starts_a_new_term() -> None:
    """Leadership lost, and back before the inner stage finished stopping: the stage
    stopped because it was told to, not because it was done, so it runs again."""

    async def scenario() -> None:
        group = MemoryLeaderGroup()
        ea, eb = group.member("a"), group.member("b")
        slow = SlowToStop()
        stop = asyncio.Event()
        task = asyncio.create_task(SingletonStage(slow, ea).run(stop))
        await eb.start()
        await until(lambda: slow.active == 1, "a runs its stage")
        group.cut_off(ea)
        ea.notice()
        await asyncio.wait_for(slow.stopping.wait(), 5)
        group.restore(ea)  # a leads again while its stage is still stopping
        assert ea.is_leader()
        slow.release.set()
        await until(lambda: slow.starts == 2 and slow.active == 1, "a runs its stage again")
        stop.set()
        slow.release.set()
        await asyncio.wait_for(task, 5)
        await eb.close()

    asyncio.run(scenario())


def test_a_change_right_after_asking_wakes_the_waiter() -> None:
    """``changed()`` is armed when called, not when first awaited: a change between the
    two (another task ran first) still wakes it."""

    async def scenario() -> None:
        group = MemoryLeaderGroup()
        ea = group.member("a")
        waiter = asyncio.ensure_future(ea.changed())  # created, not yet started
        await ea.start()  # leadership changes before the waiter's first step
        await asyncio.wait_for(waiter, 2)

    asyncio.run(scenario())


@pytest.mark.parametrize(("session", "beat"), [(10.0, 1.0), (6.0, 1.0), (3.0, 0.6)])
def test_kafka_wrapper_takes_the_configured_leader_session(session: float, beat: float) -> None:
    """``distributed.leader_session_timeout_s`` reaches every singleton's election; the
    heartbeat (the lease's confirmation) is 1 s or a fifth of a shorter session, so the
    lease (half the session) spans at least two confirmations. No I/O: an election
    connects only when it starts."""
    from millrace.pipeline.cli.config import MillraceConfig
    from millrace.pipeline.log.kafka.config import KafkaLogConfig
    from millrace.pipeline.runtime.election_kafka import KafkaLeaderElection
    from millrace.pipeline.runtime.singleton import kafka_singleton_wrapper

    cfg = MillraceConfig.model_validate({"distributed": {"leader_session_timeout_s": session}})
    wrap = kafka_singleton_wrapper(
        KafkaLogConfig(bootstrap_servers="127.0.0.1:9"),
        session_timeout_s=cfg.distributed.leader_session_timeout_s,
    )
    stage = wrap(Probe("alarms"))
    assert isinstance(stage, SingletonStage)
    election = stage.election
    assert isinstance(election, KafkaLeaderElection)
    assert (election.session_timeout_s, election.heartbeat_s) == (session, beat)
    assert election.lease_s >= 2 * election.heartbeat_s


def test_the_leader_session_defaults_to_10_s_and_refuses_less_than_2() -> None:
    from pydantic import ValidationError

    from millrace.pipeline.cli.config import MillraceConfig

    assert MillraceConfig().distributed.leader_session_timeout_s == 10.0
    with pytest.raises(ValidationError, match="leader_session_timeout_s"):
        MillraceConfig.model_validate({"distributed": {"leader_session_timeout_s": 1}})
