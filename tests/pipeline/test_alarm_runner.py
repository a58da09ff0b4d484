"""The alarm runner: the evaluator fed from the log, its alarms on the log, and a crash
between appending alarms and saving the checkpoint re-emitting identical events only."""

from __future__ import annotations

from typing import Any

import pytest

from millrace.pipeline.alarms.evaluator import Evaluator
from millrace.pipeline.alarms.rules import parse_rule, rule_event
from millrace.pipeline.alarms.runner import AlarmRunner, Checkpoint, MemoryCheckpoints
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.topics import ALARMS, TELEMETRY

T0 = 1_750_000_000_000_000
S = 1_000_000
CODEC = default_codec()


def batch(identity: str, ts: int, value: float) -> dict[str, Any]:
    return {
        "identity": identity,
        "source": "test",
        "received_us": ts,
        "samples": [{"ts_us": ts, "values": {"temp": value}, "quality": 0}],
    }


async def alarm_events(log: MemoryEventLog) -> list[dict[str, Any]]:
    out = []
    for p in range(log.partitions(ALARMS)):
        for rec in await log.read(ALARMS, p, 0, 100_000):
            out.append(CODEC.decode(ALARMS, rec.value))
    return [e for e in out if e["type"] in ("RAISED", "CLEARED")]


def runner(log: MemoryEventLog, cps: MemoryCheckpoints, **kw: Any) -> AlarmRunner:
    return AlarmRunner(
        log, LogPublisher(log, CODEC), cps, CODEC, Evaluator, checkpoint_every_s=0, **kw
    )


async def feed(log: MemoryEventLog, values: list[float], identity: str = "oven-1") -> None:
    pub = LogPublisher(log, CODEC)
    for i, v in enumerate(values):
        await pub.publish(TELEMETRY, [(identity, batch(identity, T0 + i * S, v))])


async def define(log: MemoryEventLog, **rule: Any) -> None:
    r = parse_rule({"id": "hot", "kind": "limit", "signal": "temp", **rule})
    await LogPublisher(log, CODEC).publish(ALARMS, [("rule:hot", rule_event(r, "hot", T0, "me"))])


async def test_a_limit_crossing_raises_and_clears_on_the_log() -> None:
    log = MemoryEventLog()
    await define(log, high=80, deadband=5)
    await feed(log, [70, 85, 78, 79, 74, 90])
    r = runner(log, MemoryCheckpoints())
    await r.run_until_idle(now_us=T0)
    got = [(e["type"], e["trigger_value"], e["ts_us"]) for e in await alarm_events(log)]
    # 78 and 79 stay inside the deadband: no clear; 74 clears; 90 raises a new alarm
    assert got == [
        ("RAISED", 85.0, T0 + 1 * S),
        ("CLEARED", 74.0, T0 + 4 * S),
        ("RAISED", 90.0, T0 + 5 * S),
    ]
    ids = [e["alarm_id"] for e in await alarm_events(log)]
    assert ids[0] == ids[1] != ids[2]


async def test_the_timer_fires_stale_rules_at_their_event_time_deadline() -> None:
    log = MemoryEventLog()
    r = parse_rule({"id": "quiet", "kind": "stale", "signal": "temp", "timeout_s": 60})
    await LogPublisher(log, CODEC).publish(
        ALARMS, [("rule:quiet", rule_event(r, "quiet", T0, None))]
    )
    await feed(log, [1.0])
    run = runner(log, MemoryCheckpoints())
    await run.run_until_idle(now_us=T0 + 30 * S)
    assert await alarm_events(log) == []
    await run.step(now_us=T0 + 61 * S)
    [raised] = await alarm_events(log)
    assert raised["type"] == "RAISED" and raised["ts_us"] == T0 + 60 * S


class CrashingCheckpoints(MemoryCheckpoints):
    """Fails the n-th save: the alarms of that step are on the log, the state is not."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.calls = 0

    def save(self, name: str, checkpoint: Checkpoint, now_us: int) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("crash before the checkpoint")
        super().save(name, checkpoint, now_us)


@pytest.mark.parametrize("fail_at", [1, 2, 3])
async def test_a_crash_before_the_checkpoint_re_emits_identical_alarms(fail_at: int) -> None:
    values = [70, 85, 60, 95, 50, 99, 10]
    clean_log = MemoryEventLog()
    await define(clean_log, high=80, deadband=5)
    await feed(clean_log, values)
    clean = runner(clean_log, MemoryCheckpoints(), max_records=2)
    await clean.run_until_idle(now_us=T0)
    expected = await alarm_events(clean_log)
    assert len(expected) == 6

    log = MemoryEventLog()
    await define(log, high=80, deadband=5)
    await feed(log, values)
    cps = CrashingCheckpoints(fail_at)
    first = runner(log, cps, max_records=2)
    with pytest.raises(RuntimeError):
        await first.run_until_idle(now_us=T0)
    second = runner(log, cps, max_records=2)  # a restart: from the last saved checkpoint
    await second.run_until_idle(now_us=T0)
    got = await alarm_events(log)
    # duplicates only, and identical ones: the projection folds them as no-ops
    unique = {tuple(sorted((k, str(v)) for k, v in e.items())) for e in got}
    want = {tuple(sorted((k, str(v)) for k, v in e.items())) for e in expected}
    assert unique == want
    assert len(got) >= len(expected)


async def test_readings_are_skipped_without_decoding_when_no_rule_watches_them() -> None:
    log = MemoryEventLog()
    await feed(log, [1.0, 2.0, 3.0])
    run = runner(log, MemoryCheckpoints())
    await run.run_until_idle(now_us=T0)
    assert await alarm_events(log) == []
    for p in range(log.partitions(TELEMETRY)):
        end = (await log.offsets(TELEMETRY, p))[1]
        assert run.position(TopicPartition(TELEMETRY, p)) == end


class CrashAfterSave(LogPublisher):
    """Appends nothing to ``alarms`` once: the crash came after the checkpoint."""

    def __init__(self, log: MemoryEventLog) -> None:
        super().__init__(log, CODEC)
        self.armed = True

    async def publish(self, topic: str, events: Any) -> None:
        if topic == ALARMS and self.armed and events:
            self.armed = False
            raise RuntimeError("crash after the checkpoint, before the append")
        await super().publish(topic, events)


async def test_a_crash_after_the_checkpoint_appends_the_outbox_at_restart() -> None:
    log = MemoryEventLog()
    await define(log, high=100)
    await feed(log, [150])
    cps = MemoryCheckpoints()
    first = AlarmRunner(log, CrashAfterSave(log), cps, CODEC, Evaluator, checkpoint_every_s=0)
    with pytest.raises(RuntimeError):
        await first.run_until_idle(now_us=T0)
    assert await alarm_events(log) == []
    # meanwhile the rule changes: the restored evaluator still knows the alarm it raised
    await define(log, high=200)
    await feed(log, [20])
    second = runner(log, cps)
    await second.run_until_idle(now_us=T0)
    got = [(e["type"], e["trigger_value"]) for e in await alarm_events(log)]
    assert got == [("RAISED", 150.0), ("CLEARED", 20.0)]


async def test_catching_up_on_a_backlog_fires_no_timer_the_unread_readings_cancel() -> None:
    log = MemoryEventLog()
    r = parse_rule({"id": "quiet", "kind": "stale", "signal": "temp", "timeout_s": 5})
    await LogPublisher(log, CODEC).publish(
        ALARMS, [("rule:quiet", rule_event(r, "quiet", T0, None))]
    )
    await feed(log, [1.0] * 40)  # one reading a second, never silent for 5 s
    run = runner(log, MemoryCheckpoints(), max_records=3)
    await run.run_until_idle(now_us=T0 + 100 * S)  # "now" is long after the backlog
    got = [(e["type"], e["ts_us"]) for e in await alarm_events(log)]
    # only the silence after the last reading (t = 39 s) is an alarm
    assert got == [("RAISED", T0 + 44 * S)]


async def test_a_reading_dated_in_the_future_does_not_silence_the_device() -> None:
    log = MemoryEventLog()
    await define(log, high=100)
    pub = LogPublisher(log, CODEC)
    future = batch("oven-1", T0 + 10 * 365 * 86_400 * S, 50.0)
    future["received_us"] = T0
    await pub.publish(TELEMETRY, [("oven-1", future)])
    await pub.publish(TELEMETRY, [("oven-1", batch("oven-1", T0 + S, 500.0))])
    await runner(log, MemoryCheckpoints()).run_until_idle(now_us=T0)
    assert [e["type"] for e in await alarm_events(log)] == ["RAISED"]


async def test_store_checkpoints_round_trip(store: Any) -> None:
    from millrace.projections.checkpoints import StoreCheckpoints

    cps = StoreCheckpoints(store)
    assert cps.load("t-runner") is None
    tp = TopicPartition(TELEMETRY, 2)
    cps.save("t-runner", Checkpoint(1, {tp: 7}, '{"a": 1}', "[]"), T0)
    cps.save("t-runner", Checkpoint(2, {tp: 9}, '{"a": 2}', ""), T0)
    got = cps.load("t-runner")
    assert got is not None
    assert (got.version, got.positions, got.state, got.outbox) == (2, {tp: 9}, '{"a": 2}', "")


class CrashMidAppend(LogPublisher):
    """Appends the first alarm of a step, then crashes (before the rest is appended)."""

    def __init__(self, log: MemoryEventLog) -> None:
        super().__init__(log, CODEC)
        self.armed = True

    async def publish(self, topic: str, events: Any) -> None:
        if topic == ALARMS and self.armed and len(events) > 1:
            self.armed = False
            await super().publish(topic, events[:1])
            raise RuntimeError("crash in the middle of the append")
        await super().publish(topic, events)


def _key(e: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in e.items()))


async def test_a_restart_appends_only_the_part_of_the_outbox_not_on_the_log() -> None:
    values = [70.0, 90.0, 60.0, 95.0]
    clean_log = MemoryEventLog()
    await define(clean_log, high=80, deadband=5)
    await feed(clean_log, values)
    await runner(clean_log, MemoryCheckpoints()).run_until_idle(now_us=T0)
    expected = [_key(e) for e in await alarm_events(clean_log)]
    assert len(expected) == 3  # raised, cleared, raised: one step, one outbox

    log = MemoryEventLog()
    await define(log, high=80, deadband=5)
    await feed(log, values)
    cps = MemoryCheckpoints()
    first = AlarmRunner(log, CrashMidAppend(log), cps, CODEC, Evaluator, checkpoint_every_s=0)
    with pytest.raises(RuntimeError):
        await first.step(now_us=T0)
    assert len(await alarm_events(log)) == 1
    await runner(log, cps).run_until_idle(now_us=T0)
    assert [_key(e) for e in await alarm_events(log)] == expected  # each once, in order


async def test_a_late_save_of_the_runner_handing_over_does_not_win() -> None:
    """The old leader, still stopping, judges a reading and saves after the new one
    resumed: the new leader's later saves win all the same, so a restart from the
    store re-judges nothing the new leader judged."""
    log = MemoryEventLog()
    await define(log, high=80, deadband=5)
    pub = LogPublisher(log, CODEC)

    async def reading(i: int, v: float) -> None:
        await pub.publish(TELEMETRY, [("oven-1", batch("oven-1", T0 + i * S, v))])

    cps = MemoryCheckpoints()
    await reading(0, 70.0)
    await reading(1, 90.0)
    old = runner(log, cps)
    await old.run_until_idle(now_us=T0)
    new = runner(log, cps)
    await new.open()  # leadership moved: the new leader resumes from the store
    await reading(2, 60.0)
    await old.run_until_idle(now_us=T0)  # a step in flight at the handover, then the stop
    await reading(3, 95.0)
    await new.run_until_idle(now_us=T0)
    on_log = await alarm_events(log)
    # the overlap: both judged the reading of 60 (identical CLEARED events, folded once)
    assert sorted(e["type"] for e in on_log) == ["CLEARED", "CLEARED", "RAISED", "RAISED"]
    cp = cps.load("alarms")
    assert cp is not None and cp.version > 1 << 32
    for p in range(log.partitions(TELEMETRY)):
        tp = TopicPartition(TELEMETRY, p)
        assert cp.positions.get(tp, 0) == new.position(tp)
    # a restart from the store judges nothing again: nothing new on the log
    await runner(log, cps).run_until_idle(now_us=T0)
    assert len(await alarm_events(log)) == len(on_log)
