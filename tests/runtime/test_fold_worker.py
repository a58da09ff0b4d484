"""The fold worker (issue 18 item 3): telemetry decoded and folded in a child process
gives the rows the runtime folds in-process, and a worker killed at any point of a
batch loses and doubles nothing."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import Any

import pytest

from millrace.api.stream_tail import LogTail
from millrace.pipeline.alarms.runner import MemoryCheckpoints
from millrace.pipeline.batches import Applied
from millrace.pipeline.codec import default_codec
from millrace.pipeline.errors import ConfigError, MillraceError
from millrace.pipeline.events import identity_event
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.processors.identity import IdentityProcessor
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.runtime.worker import FoldWorker
from millrace.pipeline.sink import MemoryProjectionSink
from millrace.pipeline.topics import IDENTITY, TELEMETRY

T0 = 1_760_000_000_000_000
S = 1_000_000


def batch(identity: str, i: int, batch_id: str | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {"temp": 20.0 + i, "count": i, "on": i % 2 == 0, "mode": f"m{i % 3}"}
    out: dict[str, Any] = {
        "identity": identity,
        "source": "t",
        "received_us": T0 + i * S,
        "samples": [{"ts_us": T0 + i * S, "values": values, "quality": 0}],
    }
    if batch_id is not None:
        out["batch_id"] = batch_id
    return out


async def fill(log: MemoryEventLog) -> None:
    pub = LogPublisher(log, default_codec())
    for i in range(40):
        for device in ("press-1", "press-2", "press-3"):
            # every fifth batch is sent twice with its id: the second is dropped
            bid = f"{device}-{i}" if i % 5 == 0 else None
            await pub.publish(TELEMETRY, [(device, batch(device, i, bid))])
            if bid is not None:
                await pub.publish(TELEMETRY, [(device, batch(device, i, bid))])
        if i == 7:
            await log.append(TELEMETRY, [Message(value=b"\x00garbage", key=b"press-1")])
    await pub.publish(TELEMETRY, [("press-9", batch("press-9", -2_000_000_000))])  # before 1970
    # a stateful fold's topic, folded in the runtime beside the worker's
    created = identity_event("press-1", "CREATED", T0, event_id="e1", tags={"line": ["1"]})
    await pub.publish(IDENTITY, [("press-1", created)])


def rows(sink: MemoryProjectionSink) -> dict[str, list[str]]:
    out = {}
    for table, got in sink.rows.items():
        out[table] = sorted(repr(sorted(r.items())) for r in got)
    return out


class KillingSink(MemoryProjectionSink):
    """Kills the worker when it asks for applied batch ids (mid-fold) ``kills`` times."""

    def __init__(self) -> None:
        super().__init__()
        self.worker: FoldWorker | None = None
        self.kills = 0

    def applied_batches(
        self, partition: int, since_us: int, keys: Sequence[str] | None = None
    ) -> dict[str, Applied]:
        if self.kills and self.worker is not None and self.worker.pid is not None:
            self.kills -= 1
            os.kill(self.worker.pid, signal.SIGKILL)
        return super().applied_batches(partition, since_us, keys)


async def run(
    runtime: EmbeddedRuntime, failing: tuple[type[Exception], ...] = (MillraceError,)
) -> int:
    """Step until idle; a step failed by ``failing`` is reset and retried, as
    ``run_steps`` does; return how many failed."""
    failures = 0
    for _ in range(500):
        try:
            if await runtime.step() == 0:
                return failures
        except failing as exc:
            failures += 1
            runtime._failed(exc, 0)
    raise AssertionError("the runtime never went idle")


@pytest.fixture
def worker() -> Any:
    made: list[FoldWorker] = []

    def make() -> FoldWorker:
        made.append(FoldWorker(processors(), [TELEMETRY]))
        return made[-1]

    yield make
    for w in made:
        w.close()


def runtime_on(
    log: MemoryEventLog, sink: MemoryProjectionSink, max_records: int, fold: FoldWorker | None
) -> EmbeddedRuntime:
    return EmbeddedRuntime(
        log, sink, processors(), max_records=max_records, publish_deadletters=False, worker=fold
    )


async def folded_here(
    partitions: int, max_records: int
) -> tuple[MemoryEventLog, MemoryProjectionSink]:
    """A filled log, and what the runtime folds of it in its own process."""
    log = MemoryEventLog(partitions=partitions)
    await fill(log)
    here = MemoryProjectionSink()
    await run(runtime_on(log, here, max_records, None))
    return log, here


async def test_the_worker_folds_what_the_runtime_folds_in_process(worker: Any) -> None:
    log, here = await folded_here(2, 7)
    there = MemoryProjectionSink()
    fold = worker()
    runtime = runtime_on(log, there, 7, fold)
    assert await run(runtime) == 0
    assert fold.starts == 1 and runtime.health()["worker_starts"] == 1
    assert rows(there) == rows(here)
    # what the comparison covers: readings, aggregates, dropped resends, dead letters
    assert len(here.rows["readings"]) == 3 * 40 * 4
    ids = [r for r in here.rows["applied_batches"] if str(r["batch_key"]).startswith("press")]
    assert len(ids) == 3 * 8  # each resent id applied once (480 readings, not 576)
    assert len(here.rows["identities"]) >= 1
    assert runtime.stats.deadletters == 2  # the garbage record and the reading before 1970


@pytest.mark.parametrize("kills", [1, 3])
async def test_a_worker_killed_mid_fold_loses_and_doubles_nothing(worker: Any, kills: int) -> None:
    log, want = await folded_here(2, 7)
    sink = KillingSink()
    fold = sink.worker = worker()
    sink.kills = kills
    assert await run(runtime_on(log, sink, 7, fold)) == kills  # each kill failed one step
    assert fold.starts == kills + 1
    assert rows(sink) == rows(want)


async def test_a_worker_killed_between_batches_is_restarted(worker: Any) -> None:
    log, want = await folded_here(1, 9)
    sink = MemoryProjectionSink()
    fold = worker()
    runtime = runtime_on(log, sink, 9, fold)
    await runtime.step()
    assert fold.pid is not None
    os.kill(fold.pid, signal.SIGKILL)
    await run(runtime)
    assert fold.starts == 2
    assert rows(sink) == rows(want)


def test_stateful_folds_stay_in_the_runtime() -> None:
    with pytest.raises(ConfigError, match="IdentityProcessor"):
        FoldWorker([IdentityProcessor()], [IDENTITY])


async def test_readers_decode_the_offloaded_topics_themselves(worker: Any) -> None:
    """The feed carries no events of the worker's topics: the alarm runner and the tail
    read those from the log (never waiting for events that will not come)."""
    from tests.runtime.test_decoded_feed import (
        Recorder,
        alarms_of,
        counting_codec,
        items_of,
        reference,
        runner_on,
    )
    from tests.runtime.test_decoded_feed import fill as fill_rules_and_readings

    codec = counting_codec()
    want_alarms, want_items = await reference(codec)
    codec.decoded = {}
    log = MemoryEventLog()
    runtime = EmbeddedRuntime(
        log, MemoryProjectionSink(), processors(), codec=codec, max_records=4, worker=worker()
    )
    hub = Recorder()
    tail = LogTail(log, codec, hub, feed=runtime.feed)
    await tail.start()
    runner = runner_on(log, codec, MemoryCheckpoints(), runtime.feed)
    await fill_rules_and_readings(log, codec)
    for _ in range(200):
        n = await runtime.step() + await runner.step(now_us=T0) + await tail.step()
        if n == 0:
            break
    telemetry = sum([(await log.offsets(TELEMETRY, p))[1] for p in range(4)])
    assert codec.decoded[TELEMETRY] == 2 * telemetry  # the runner's and the tail's
    assert await alarms_of(log, codec) == want_alarms
    assert items_of(hub) == want_items
