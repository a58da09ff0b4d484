"""Two faust worker processes share the partitions of one group; one is killed with
SIGKILL mid-stream and restarted, the other is frozen, dropped and resumed as
a zombie while the group is rebalancing. The projections must equal values computed
here: no reading lost, none doubled (librdkafka's mock cluster, chDB shared through
tests/store_server).

The coordinator drops the killed and the frozen member at once, through the LeaveGroup a
clean close would send, sent here on their behalf (``tests.kafka_mock.leave_group``):
the mock handles it exactly as a session expiry (the member removed, a rebalance
started), without waiting out the session first. The two workers start together,
so that both join in the group's first rebalance (a later join waits almost a session).
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.telemetry_columns import samples_of
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.kafka_mock import MockKafkaCluster, leave_group
from tests.runtime.test_faust_runtime import produce, telemetry
from tests.store_server import RemoteStore, StoreServer

pytest.importorskip("faust")

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
# librdkafka's mock holds every rebalance of a formed group open for the session timeout
# less 1 s (it never ends a join round early when all members are in), so the session
# is the price of each of the scenario's four or five rebalances. It also evicts a member
# whose rejoin takes longer than its session (heartbeats during a rebalance do not count
# as activity): 8 s is slack for a loaded machine. No step waits for a session expiry:
# the killed and the frozen worker are dropped through LeaveGroup (see above).
SESSION_TIMEOUT_S = 8
GROUP = "faust-app"
#: how long the frozen worker stays frozen after it was dropped: it resumes while the
#: rebalance that drop started is still open (SESSION_TIMEOUT_S - 1 s)
ZOMBIE_S = 3.5


class Worker:
    """A worker process (started at once; :meth:`started` waits until it runs)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.runtime.worker_main", *args],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    def started(self) -> Worker:
        assert self.proc.stdout is not None
        # faust's start can wait forever on a wedged group coordinator of the mock
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "started":
            self.stop()
            raise Stuck(f"worker did not start: {self.log.read_text()[-2000:]}")
        return self

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def member_id(self) -> str | None:
        """The member id of its last join (aiokafka's INFO line; worker_main keeps a
        member's id across rejoins)."""
        joined = re.findall(rf"Joined group '{GROUP}' .* member_id (\S+)", self.log.read_text())
        return joined[-1] if joined else None

    def drop_from_group(self, bootstrap: str) -> None:
        """The coordinator forgets it now (see the module docstring); a member that has
        not joined yet leaves nothing to drop."""
        member = self.member_id()
        if member is not None:
            asyncio.run(leave_group(bootstrap, GROUP, member))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def committed(writer: ProjectionWriter, ends: dict[TopicPartition, int]) -> tuple[int, bool]:
    p = writer.progress("faust-app")
    done = sum(min(p.positions.get(tp, 0), e) for tp, e in ends.items())
    return done, not p.pending


def wait_for(
    cond: Any, timeout: float, what: str, logs: Path | None = None, state: Any = None
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            tail = f" (at {state()})" if state is not None else ""
            if logs is not None:
                tail += "\n" + "".join(p.read_text()[-1500:] for p in sorted(logs.glob("*.log")))
            raise Stuck(f"timed out waiting for {what}{tail}")
        time.sleep(0.1)


class Stuck(AssertionError):
    """The group made no progress in time (liveness, not correctness)."""


@pytest.mark.timeout(900)
def test_kill_and_zombie_leave_projections_exact(store: ChdbStore, tmp_path: Path) -> None:
    # librdkafka's mock group coordinator is fragile in rebalances (see worker_main for
    # the two behaviours the workers work around); should the group still not settle,
    # that is liveness of the mock, so the scenario is run again on fresh topics.
    # Correctness is never retried: a wrong count fails at once.
    # a mock cluster of its own per attempt: the session's has the groups of other tests
    for attempt in range(3):
        try:
            with MockKafkaCluster() as cluster:
                scenario(cluster.bootstrap, store, tmp_path / f"attempt{attempt}")
            return
        except Stuck as exc:
            print(f"attempt {attempt} stuck: {exc}", flush=True)
            if attempt == 2:
                # liveness of librdkafka's mock group coordinator (SyncGroup answers
                # InvalidRequest and the group never settles), not of millrace: say so
                # loudly instead of failing the suite; a wrong count still fails
                pytest.skip(f"mock Kafka group coordinator wedged in 3 attempts: {exc}"[:3000])
            drop_projections(store)
            migrate(store)


def scenario(kafka_bootstrap: str, store: ChdbStore, tmp_path: Path) -> None:
    tmp_path.mkdir()
    prefix = f"w{uuid.uuid4().hex[:8]}-"
    first, second = telemetry(1500), telemetry(1500)
    for _, e in second:  # other timestamps than the first half
        # the row-wise samples telemetry() built, in place (samples_of gives copies: the
        # second half would be the first again, and dropped as its copy)
        for s in e["samples"]:
            s["ts_us"] += 10**12
    ends = asyncio.run(produce(kafka_bootstrap, prefix, first, garbage=0))
    total = sum(ends.values())
    with StoreServer(store) as server:
        writer = ProjectionWriter(RemoteStore(server.url))

        def start(name: str) -> Worker:
            args = [kafka_bootstrap, prefix, GROUP, server.url, str(tmp_path / name)]
            args.append(str(SESSION_TIMEOUT_S))
            worker = Worker(args, tmp_path / f"{name}.log")
            workers.append(worker)
            return worker

        workers: list[Worker] = []
        try:
            # started together, so that both join in the group's first rebalance
            a, b = start("a"), start("b")
            a.started()
            b.started()
            wait_for(
                lambda: committed(writer, ends)[0] >= total * 0.2, 90, "a fifth of it", tmp_path
            )
            a.signal(signal.SIGKILL)  # anywhere: mid-write, between intent and commit, ...
            a.proc.wait(10)
            # b takes a's partitions over once the coordinator drops a, and redoes what
            # a left pending. (a2 joins after that: a join while a dead member is still
            # in the group makes the mock abort the sync when that member goes.)
            a.drop_from_group(kafka_bootstrap)
            wait_for(
                lambda: committed(writer, ends) == (total, True),
                90,
                "b taking over",
                tmp_path,
                lambda: committed(writer, ends),
            )
            a2 = start("a2").started()
            ends = asyncio.run(produce(kafka_bootstrap, prefix, second, garbage=0))
            total = sum(ends.values())
            # the ends count both parts: 3/4 is half of the second part folded (at 1/2,
            # b was frozen before it began the second part, with no write in flight)
            wait_for(lambda: committed(writer, ends)[0] >= total * 0.75, 90, "half of it", tmp_path)
            # frozen and dropped, as a session expiry would drop it: the rebalance hands
            # its partitions to a2; b resumes while the rebalance is on, as a zombie with
            # a write possibly in flight, and must be fenced
            b.signal(signal.SIGSTOP)
            b.drop_from_group(kafka_bootstrap)
            time.sleep(ZOMBIE_S)
            b.signal(signal.SIGCONT)
            wait_for(
                lambda: committed(writer, ends) == (total, True),
                90,
                "all of it",
                tmp_path,
                lambda: committed(writer, ends),
            )
            time.sleep(1.5)  # a zombie's late insert would land now
        finally:
            for w in workers:
                w.stop()
        logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert a2.proc.returncode is not None

    events = first + second
    readings = sum(len(samples_of(e)) for _, e in events)
    total_value = sum(s["values"]["t"] for _, e in events for s in samples_of(e))

    def row(sql: str) -> list[Any]:
        return list(store.execute(sql).rows[0])

    assert row(
        "SELECT count(), sum(value), uniqExact(identity, signal, ts) FROM millrace.readings"
    ) == [readings, total_value, readings], logs[-3000:]
    assert row("SELECT sum(count), sum(sum) FROM millrace.agg_1m FINAL") == [
        readings,
        total_value,
    ]
    assert row("SELECT sum(count) FROM millrace.agg_1h FINAL") == [readings]
    assert row("SELECT count() FROM millrace.latest FINAL") == [6]
    if os.environ.get("MILLRACE_KEEP"):
        print(logs)
