"""The distributed deployment does what ``millrace run`` does (issue 13's Done-when),
against librdkafka's mock cluster, with the real ``millrace connect``, ``process`` and
``api`` processes:

* a simulator signal crossing a configured limit raises an alarm; a synced state set is
  acknowledged when the device reports it; an identity goes offline after its
  inactivity timeout: all three land in the store;
* two ``millrace process`` run the singleton stages; the active one is killed with
  SIGKILL mid-stream, the other takes over, and the alarms in the store are exactly
  those a single clean pass of the evaluator over the same log raises: none lost, none
  doubled.

The store is the test session's chDB, served to the processes by
``tests/store_server.py`` (see ``tests/distributed_main.py``); the projections and
their deduplication are chDB's own.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from millrace.pipeline.alarms.evaluator import Evaluator
from millrace.pipeline.alarms.runner import AlarmRunner, MemoryCheckpoints
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.kafka import KafkaEventLog, KafkaLogConfig
from millrace.pipeline.topics import ALARMS
from millrace.projections.store.chdb import ChdbStore
from tests.connectors.test_run_config_e2e import free_port
from tests.distributed import KEY, Deployment, Role, cluster, deployment, rows  # noqa: F401

pytest.importorskip("faust")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(240)
def test_connect_and_process_raise_acknowledge_and_time_out(
    deployment: Deployment,  # noqa: F811
    store: ChdbStore,
) -> None:
    d = deployment
    port = free_port()
    d.start(
        "process",
        "process",
        """
alarms:
  tick_s: 0.2
  rules:
    - {id: oven-hot, kind: limit, type: high_temperature, signal: temperature_0,
       identity: "oven-.*", high: 100, deadband: 5}
identities:
  inactivity_timeout_s: 3
  command_timeout_s: 120
""",
    )
    d.start("api", "api", f"api:\n  port: {port}\n")
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}/api/v1",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    ) as client:
        _exercise(d, store, client)
    for role in reversed(d.roles):
        assert role.stop() == 0, role.output()[-3000:]


def _exercise(d: Deployment, store: ChdbStore, client: httpx.Client) -> None:

    def up() -> bool:
        try:
            return client.get("/status").status_code == 200
        except httpx.TransportError:
            return False

    d.wait(up, "the API", 60)
    r = client.put("/resources/temperature_0", json={"settable": True})
    assert r.status_code in (200, 201), r.text
    r = client.post("/identities", json={"identity": "oven-0"})
    assert r.status_code == 201, r.text
    d.wait(
        lambda: rows(store, "SELECT 1 FROM millrace.identities FINAL WHERE identity = 'oven-0'"),
        "the identity in the store",
        60,
    )
    connect = d.start(
        "connect",
        "connect",
        """
connections:
  sim:
    protocol: simulator
    devices: 1
    signals: 2
    interval_ms: 100
    identity_prefix: "oven-"
""",
    )
    # the watch sees it sending: CONNECTED
    d.wait(
        lambda: rows(
            store,
            "SELECT 1 FROM millrace.identities FINAL WHERE identity = 'oven-0' AND connected",
        ),
        "oven-0 connected",
        60,
    )
    r = client.post("/identities/oven-0/state", json={"temperature_0": 150.0})
    assert r.status_code == 202, r.text

    # the Command reached the simulator, which reports 150 from its next tick: the watch
    # acknowledges the set value, and the alarm runner raises the limit alarm
    acked = d.wait(
        lambda: rows(
            store,
            "SELECT set_values['temperature_0'], acked_ts['temperature_0'], "
            "set_ts['temperature_0'] FROM millrace.identities FINAL "
            "WHERE identity = 'oven-0' AND acked_ts['temperature_0'] > 0",
        ),
        "the acknowledgement",
        60,
    )
    [(value, acked_us, set_us)] = acked
    assert float(value) == 150.0 and acked_us >= set_us
    alarms = d.wait(
        lambda: rows(
            store,
            "SELECT alarm_id, state, trigger_value FROM millrace.alarms FINAL "
            "WHERE rule_id = 'oven-hot' AND identity = 'oven-0' AND signal = 'temperature_0'",
        ),
        "the limit alarm",
        60,
    )
    assert len(alarms) == 1 and float(alarms[0][2]) == 150.0, alarms

    # the device stops sending: offline after its inactivity timeout (3 s)
    assert connect.stop() == 0, connect.output()[-3000:]
    d.wait(
        lambda: rows(
            store,
            "SELECT 1 FROM millrace.identities FINAL WHERE identity = 'oven-0' "
            "AND NOT connected AND disconnected_us > 0",
        ),
        "oven-0 offline",
        60,
    )


async def reference_alarms(bootstrap: str, prefix: str) -> tuple[set[str], Counter[str]]:
    """The alarm ids one clean evaluator pass over the log raises, and how many RAISED
    events each id has on the ``alarms`` topic (what the processes appended)."""
    log = KafkaEventLog(KafkaLogConfig(bootstrap_servers=bootstrap, topic_prefix=prefix))
    await log.start()
    codec = default_codec()
    raised: list[dict[str, Any]] = []

    class Collect:
        async def publish(self, topic: str, events: list[tuple[str, dict[str, Any]]]) -> None:
            raised.extend(e for _, e in events if e["type"] == "RAISED")

    on_log: Counter[str] = Counter()
    try:
        runner = AlarmRunner(log, Collect(), MemoryCheckpoints(), codec, Evaluator)  # type: ignore[arg-type]
        # the runner's own alarms on the topic would be judged too: it reads rules only
        await runner.run_until_idle()
        for p in range(log.partitions(ALARMS)):
            offset = 0
            while recs := await log.read(ALARMS, p, offset, 1000):
                for rec in recs:
                    e = codec.decode(ALARMS, rec.value)
                    if e["type"] == "RAISED":
                        on_log[str(e["alarm_id"])] += 1
                offset = recs[-1].offset + 1
    finally:
        await log.close()
    return {str(e["alarm_id"]) for e in raised}, on_log


@pytest.mark.timeout(300)
def test_killed_singleton_fails_over_without_losing_or_doubling_alarms(
    deployment: Deployment,  # noqa: F811
    store: ChdbStore,
) -> None:
    d = deployment
    # a leader session of 6 s (10 s by default): librdkafka's mock waits a session to
    # expire the killed leader and almost a session more before it assigns again, and as
    # long when the second process joins the group the first formed
    process = """
alarms:
  tick_s: 0.2
  rules:
    - {id: jitter, kind: rate_of_change, signal: temperature_0, identity: "sim-.*",
       max_rate: 0.6}
distributed:
  leader_session_timeout_s: 6
"""
    # and a faust session of 6 s (10 s in millrace) for the same reason: the killed
    # process's worker holds the alarms' fold for a session and a rebalance
    short = {"MILLRACE_TEST_FAUST_SESSION_S": "6"}
    a = d.start("process-a", "process", process, short)
    b = d.start("process-b", "process", process, short)
    # the rule is in force before any reading arrives, so a clean pass over the log
    # judges every reading under it, as the runners do
    d.wait(
        lambda: rows(store, "SELECT 1 FROM millrace.alarm_rules FINAL WHERE rule_id = 'jitter'"),
        "the rule in the store",
        90,
    )
    d.wait(lambda: a.leads("alarms") or b.leads("alarms"), "an alarm runner", 60)
    connect = d.start(
        "connect",
        "connect",
        "connections:\n  sim:\n    protocol: simulator\n    devices: 10\n"
        "    signals: 1\n    interval_ms: 200\n",
    )

    def alarm_count() -> int:
        return int(rows(store, "SELECT count() FROM millrace.alarms FINAL")[0][0])

    d.wait(lambda: alarm_count() >= 5, "the first alarms", 90)

    # the runner that leads now: on a loaded machine a lease may have lapsed and
    # leadership moved since the first term (each process then has a "leader" line)
    def sole_leader() -> Role | None:
        leading = [r for r in (a, b) if r.leading("alarms")]
        return leading[0] if len(leading) == 1 else None

    active = d.wait(sole_leader, "exactly one alarm runner leading", 60)
    other = b if active is a else a
    active.proc.send_signal(signal.SIGKILL)
    active.proc.wait(10)
    killed_at_us = time.time_ns() // 1000
    before = alarm_count()
    d.wait(lambda: other.leading("alarms"), "the other process taking over", 60)
    d.wait(lambda: alarm_count() >= before + 5, "alarms after the failover", 90)
    assert connect.stop() == 0, connect.output()[-3000:]

    expected, on_log = asyncio.run(reference_alarms(d.bootstrap, d.prefix))

    def stored() -> set[str]:
        return {str(r[0]) for r in rows(store, "SELECT alarm_id FROM millrace.alarms FINAL")}

    def differences() -> str:
        got = stored()
        missing = sorted(expected - got)
        return (
            f"{len(expected)} expected, {len(got)} stored, missing (id, times on the log) "
            f"{[(i, on_log.get(i, 0)) for i in missing[:5]]}, killed at {killed_at_us}, "
            f"unexpected {sorted(got - expected)[:5]}"
        )

    d.wait(lambda: stored() >= expected, "every expected alarm in the store", 90, differences)
    time.sleep(2)  # a late or doubled alarm would land now
    got = stored()
    assert got == expected, (sorted(got - expected), sorted(expected - got))
    assert (
        rows(
            store,
            "SELECT alarm_id, count() c FROM millrace.alarms FINAL GROUP BY alarm_id HAVING c > 1",
        )
        == []
    )
    onsets = [int(r[0]) for r in rows(store, "SELECT raised_us FROM millrace.alarms FINAL")]
    # both runners raised some: the failover happened mid-stream
    assert min(onsets) < killed_at_us < max(onsets)
    # alarms the killed runner appended again after its checkpoint are on the log twice
    # and folded once (the outbox argument); say how many there were
    print(f"{len(expected)} alarms, {sum(on_log.values()) - len(on_log)} repeated on the log")
    assert other.stop() == 0, other.output()[-3000:]
