"""A small world for restore tests: a log of telemetry (with batch ids, id-less batches
and resends), the live fold into chDB, an archive of the log, a task runner with the
restore kind, and the projections computed independently of the pipeline."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from millrace.pipeline.archive.format import HOUR_US, Manifest, window_start
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import EventLog, Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.restore import KIND, RestoreTask
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.tasks import TaskKinds, TaskRunner, create_task
from millrace.projections.replay import forget
from millrace.projections.restore import held_readings
from millrace.projections.store.base import ProjectionStore
from millrace.projections.writer import ProjectionWriter

MINUTE = 60_000_000
#: recent: the applied-batch ids of the live fold must not have expired
T0 = window_start(now_us() - 3 * HOUR_US, HOUR_US)

Sample = tuple[str, int, dict[str, float]]  # identity, µs after T0, values


def telemetry_log(n: int = 120, resend_every: int = 10) -> tuple[MemoryEventLog, list[Sample]]:
    """``n`` batches over two hours (five identities), every other one with a batch id;
    every ``resend_every``-th id'd batch is appended twice (a client retry). Returns the
    log and the samples that count (each once)."""
    log = MemoryEventLog(partitions=2)
    codec = default_codec()
    kept: list[Sample] = []
    messages: list[Message] = []
    for i in range(n):
        identity = f"dev-{i % 5}"
        at = i * (2 * 60 * MINUTE // n)
        values = {"t": float(i % 7) / 2, "p": float(-i)}
        event: dict[str, Any] = {
            "identity": identity,
            "source": "test",
            "received_us": T0 + at,
            "samples": [{"ts_us": T0 + at, "values": values, "quality": 0}],
        }
        if i % 2 == 0:
            event["batch_id"] = f"test:{i}"
        msg = Message(codec.encode("telemetry", event), identity.encode(), T0 + at)
        messages.append(msg)
        kept.append((identity, at, values))
        if i % 2 == 0 and i % resend_every == 0:
            messages.append(msg)  # a resend: same id, later offset
    asyncio.run(log.append("telemetry", messages))
    return log, kept


async def live_fold(log: MemoryEventLog, store: ProjectionStore) -> None:
    await EmbeddedRuntime(
        log, ProjectionWriter(store), processors(), max_records=50
    ).run_until_idle()


def archive(
    log: MemoryEventLog, url: str | Path, topics: tuple[str, ...] = ("telemetry",)
) -> tuple[ArchiveStore, list[Manifest]]:
    """Every record of the log's ``topics`` into hour windows of the archive store."""
    store = ArchiveStore(str(url))
    out = []
    for topic in topics:
        for p in range(log.partitions(topic)):
            records = asyncio.run(log.read(topic, p, 0, 1_000_000))
            by_window: dict[int, list[Any]] = defaultdict(list)
            for r in records:
                by_window[window_start(r.timestamp_us, HOUR_US)].append(r)
            for ws, recs in sorted(by_window.items()):
                out.append(store.write_window(recs, ws, ws + HOUR_US))
    return store, out


def expected(samples: list[Sample]) -> dict[str, Any]:
    readings: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for identity, at, values in samples:
        for sig, v in values.items():
            readings[(identity, sig)].append((T0 + at, v))
    agg: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for (identity, sig), pts in readings.items():
        for ts, v in pts:
            agg[(identity, sig, (ts - ts % MINUTE) // 1_000_000)].append(v)
    latest = {k: max(pts) for k, pts in readings.items()}
    return {"count": sum(len(p) for p in readings.values()), "agg": agg, "latest": latest}


def check(store: ProjectionStore, samples: list[Sample]) -> None:
    """The projections equal one clean pass over ``samples``, computed here."""
    exp = expected(samples)
    count = store.execute("SELECT count() FROM millrace.readings").rows[0][0]
    assert int(count) == exp["count"]
    got = {
        (i, s, int(b)): (int(c), float(total), float(lo), float(hi))
        for i, s, b, c, total, lo, hi in store.execute(
            "SELECT identity, signal, toUnixTimestamp(bucket), sum(count), sum(sum), min(min), "
            "max(max) FROM millrace.agg_1m GROUP BY identity, signal, bucket"
        ).rows
    }
    assert set(got) == set(exp["agg"])
    for k, vals in exp["agg"].items():
        c, total, lo, hi = got[k]
        assert c == len(vals), k
        assert math.isclose(total, sum(vals), abs_tol=1e-9), k
        assert (lo, hi) == (min(vals), max(vals)), k
    hourly = store.execute("SELECT sum(count) FROM millrace.agg_1h").rows[0][0]
    assert int(hourly) == exp["count"]
    latest = {
        (i, s): (int(ts), float(v))
        for i, s, ts, v in store.execute(
            "SELECT identity, signal, toUnixTimestamp64Micro(ts), value FROM millrace.latest FINAL"
        ).rows
    }
    assert latest == exp["latest"]


def progress_rows(store: ProjectionStore, task_id: str) -> int:
    """The sink progress rows the restore task's files left."""
    found = store.execute(
        "SELECT count() FROM millrace.progress WHERE startsWith(consumer, {p:String})",
        params={"p": f"restore/{task_id}/"},
    )
    return int(found.rows[0][0])


class Runner:
    """A task runner with the restore kind, over its own memory log for tasks."""

    def __init__(
        self,
        store: ProjectionStore,
        archive_store: ArchiveStore | None,
        *,
        allowed: tuple[str, ...] = (),
        chunk: int = 20_000,
        on_chunk: Callable[[], None] | None = None,
        held: bool = True,
        log: EventLog | None = None,
    ) -> None:
        self.log = MemoryEventLog(partitions=1)
        self.publisher = LogPublisher(self.log)
        self.kinds = TaskKinds()
        self.handler = RestoreTask(
            ProjectionWriter(store),
            archive_store,
            self.publisher,
            allowed_prefixes=allowed,
            chunk=chunk,
            on_chunk=on_chunk,
            held=held_readings(store) if held else None,
            forget=partial(forget, store),
            log=log,  # where foreign files go (None: folded straight in)
        )
        self.kinds.register(KIND, self.handler)
        self.runner = TaskRunner(self.log, self.publisher, self.kinds, poll_s=0.01)

    async def create(self, params: dict[str, Any]) -> str:
        return await create_task(self.publisher, KIND, params, actor="test")

    async def run(self, task_id: str) -> dict[str, Any]:
        """Run until the task is completed or failed; its state."""
        stop = asyncio.Event()
        job = asyncio.create_task(self.runner.run(stop))
        try:
            for _ in range(20_000):
                await asyncio.sleep(0.01)
                await self.runner.catch_up()
                state = self.runner.states.get(task_id)
                if state is not None and state["status"] in ("completed", "failed"):
                    return state
            raise AssertionError(f"task {task_id} did not finish")
        finally:
            stop.set()
            await job
