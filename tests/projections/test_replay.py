"""Replay while running (``projections.replay``): a live runtime folds what an ingest
loop appends while a replay rebuilds the projections beside it and swaps them in; a
query loop reads throughout. Compared with sums computed here from what was sent."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.tasks import TaskContext, TaskKinds, TaskRunner, create_task, register_kind
from millrace.pipeline.topics import TELEMETRY
from millrace.projections import shadow
from millrace.projections.replay import (
    REPLAYABLE,
    Replay,
    ReplayError,
    ReplayParts,
    UnknownProjectionError,
    plan,
    replay_handler,
)
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

T0 = 1_760_000_000_000_000
S = 1_000_000


@dataclass
class Sent:
    """What the test sent: readings per (identity, signal), their sum and last value."""

    count: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    total: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    last: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    batches: int = 0

    def batch(self, i: int) -> tuple[str, dict[str, object]]:
        identity = f"dev-{i % 3}"
        samples = []
        for j in range(5):
            ts = T0 + (i * 5 + j) * S
            values = {"s0": float(i + j), "s1": float((i * j) % 7)}
            samples.append({"ts_us": ts, "values": values, "quality": 0})
            for name, v in values.items():
                key = (identity, name)
                self.count[key] += 1
                self.total[key] += v
                if key not in self.last or self.last[key][0] <= ts:
                    self.last[key] = (ts, v)
        self.batches += 1
        batch = {"identity": identity, "source": "t", "received_us": T0, "samples": samples}
        return identity, batch


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[LocalEventLog]:
    log = LocalEventLog(tmp_path / "log")
    yield log
    await log.close()


@pytest.fixture
def clean(store: ChdbStore) -> ChdbStore:
    shadow.drop_all(store)
    return store


async def ingest(
    log: LocalEventLog, sent: Sent, start: int, n: int, live: EmbeddedRuntime | None
) -> None:
    pub = LogPublisher(log)
    for i in range(start, start + n):
        await pub.publish(TELEMETRY, [sent.batch(i)])
        if live is not None:
            live.wake()
        if i % 5 == 0:
            await asyncio.sleep(0.01)


def readings_by_series(store: ChdbStore) -> dict[tuple[str, str], tuple[int, float]]:
    rows = store.execute(
        "SELECT identity, signal, count(), sum(value) FROM millrace.readings "
        "GROUP BY identity, signal"
    ).rows
    return {(str(a), str(b)): (int(c), float(d)) for a, b, c, d in rows}


def check_equal_to_sent(store: ChdbStore, sent: Sent) -> None:
    got = readings_by_series(store)
    want = {k: (sent.count[k], sent.total[k]) for k in sent.count}
    assert got.keys() == want.keys()
    for k, (c, total) in want.items():
        assert got[k][0] == c, k
        assert got[k][1] == pytest.approx(total), k
    agg = store.execute(
        "SELECT identity, signal, sum(count), sum(sum) FROM millrace.agg_1m "
        "GROUP BY identity, signal"
    ).rows
    # the values are small integers: their float sums are exact
    assert {(str(a), str(b)): (int(c), float(d)) for a, b, c, d in agg} == want
    latest = store.execute("SELECT identity, signal, value FROM millrace.latest FINAL").rows
    assert {(str(a), str(b)): float(v) for a, b, v in latest} == {
        k: v for k, (_, v) in sent.last.items()
    }


class QueryLoop:
    """Counts readings and 1m aggregate counts on a thread until stopped; records errors
    and any count that went down."""

    def __init__(self, store: ChdbStore) -> None:
        # sessions of its own, as the API's reads have
        self.store = ChdbStore(store.path, sessions=1)
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.drops: list[tuple[str, int, int]] = []
        self.queries = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seen = {"readings": 0, "agg": 0}
        sql = {
            "readings": "SELECT count() FROM millrace.readings",
            "agg": "SELECT sum(count) FROM millrace.agg_1m",
        }
        while not self.stop.is_set():
            for name, q in sql.items():
                try:
                    n = int(self.store.execute(q).rows[0][0])
                except Exception as exc:  # any failure is the finding
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if n < seen[name]:
                    self.drops.append((name, seen[name], n))
                seen[name] = max(seen[name], n)
                self.queries += 1
            time.sleep(0.002)

    def __enter__(self) -> QueryLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        self.store.close()


def spoil(store: ChdbStore, table: str, where: str = "1") -> None:
    """A projection gone wrong (as after a fold bug): values the replay must repair."""
    store.execute(
        f"ALTER TABLE millrace.{table} UPDATE value = -1 WHERE {where} SETTINGS mutations_sync = 1"
    )


async def behind(live: EmbeddedRuntime, log: LocalEventLog) -> bool:
    for tp in live.topic_partitions():
        if live.position(tp) < (await log.offsets(tp.topic, tp.partition))[1]:
            return True
    return False


async def drain(live: EmbeddedRuntime) -> None:
    while await live.step():
        pass


async def test_replay_while_ingesting_swaps_in_a_clean_pass(
    clean: ChdbStore, log: LocalEventLog
) -> None:
    store = clean
    sent = Sent()
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors(), max_records=50)
    await ingest(log, sent, 0, 120, live)
    await drain(live)
    spoil(store, "readings", "signal = 's0'")
    stop = asyncio.Event()
    reports: list[dict[str, int]] = []

    async def report(counts: dict[str, int]) -> None:
        reports.append(counts)

    with QueryLoop(store) as queries:
        running = asyncio.create_task(live.run(stop))
        feeding = asyncio.create_task(ingest(log, sent, 120, 200, live))
        own = ChdbStore(store.path)  # the replay's own session, as in the engine
        try:
            parts = ReplayParts(log, own, live, max_records=40)
            counts = await Replay(parts, "t1").run(report, asyncio.Event())
        finally:
            own.close()
        await feeding
        live.wake()
        while await behind(live, log):
            await asyncio.sleep(0.02)
        stop.set()
        await running
    assert counts is not None and counts["readings"] > 0
    assert reports and reports[-1]["records"] == counts["records"]
    assert queries.errors == []
    assert queries.drops == []
    assert queries.queries > 0
    check_equal_to_sent(store, sent)
    names = shadow.comments(store)
    assert not [n for n in names if n.endswith(shadow.SUFFIX)]  # old tables dropped
    assert names["readings"].startswith("swap:t1.")
    consumers = store.execute("SELECT DISTINCT consumer FROM millrace.progress FINAL").rows
    assert not [c for (c,) in consumers if str(c).startswith("replay:")]


async def test_named_projections_only_are_rebuilt(clean: ChdbStore, log: LocalEventLog) -> None:
    store = clean
    sent = Sent()
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors())
    await ingest(log, sent, 0, 30, live)
    await drain(live)
    for table in ("readings", "latest"):
        spoil(store, table)
    await Replay(ReplayParts(log, store, live), "t2", ["readings"]).run(_quiet, asyncio.Event())
    assert readings_by_series(store) == {
        k: (sent.count[k], pytest.approx(sent.total[k])) for k in sent.count
    }
    # latest was not named: still as it was
    assert {float(v) for (v,) in store.execute("SELECT value FROM millrace.latest").rows} == {-1.0}
    names = shadow.comments(store)
    assert names["readings"].startswith("swap:t2.")
    assert not names["latest"].startswith("swap:")
    assert not [n for n in names if n.endswith(shadow.SUFFIX)]


def test_plan_names_and_state_tables() -> None:
    swapped, built = plan(["readings", "readings"])
    assert swapped == ["readings"]
    assert set(built) >= {"readings", "identities", "alarms", "resource_states"}
    assert plan(None)[0] == list(REPLAYABLE)
    with pytest.raises(UnknownProjectionError, match="nope"):
        plan(["readings", "nope"])


async def _quiet(counts: dict[str, int]) -> None:
    pass


class Crash(Exception):
    pass


async def test_crash_mid_build_leaves_old_tables_and_a_retry_completes(
    clean: ChdbStore, log: LocalEventLog
) -> None:
    store = clean
    sent = Sent()
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors(), max_records=20)
    await ingest(log, sent, 0, 60, live)
    await drain(live)
    spoil(store, "readings")
    broken = readings_by_series(store)
    folds = 0

    def crash_in_third_fold(phase: str) -> None:
        nonlocal folds
        folds += phase == "fold"
        if folds == 3:
            raise Crash

    parts = ReplayParts(log, store, live, max_records=5)
    first = Replay(parts, "t3")
    first.before = crash_in_third_fold
    with pytest.raises(Crash):
        await first.run(_quiet, asyncio.Event())
    assert readings_by_series(store) == broken  # the old tables, untouched
    assert shadow.building(store, first.built) is not None  # the build is kept
    await ingest(log, sent, 60, 20, live)
    await drain(live)
    counts = await Replay(parts, "t3").run(_quiet, asyncio.Event())  # resumes
    assert counts is not None
    check_equal_to_sent(store, sent)


async def test_crash_mid_swap_is_finished_by_recover(clean: ChdbStore, log: LocalEventLog) -> None:
    store = clean
    sent = Sent()
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors())
    await ingest(log, sent, 0, 20, live)
    await drain(live)
    spoil(store, "readings")
    named = ["readings", "latest", "agg_1m"]
    replay = Replay(ReplayParts(log, store, live), "t4", named)
    real_execute = store.execute
    exchanged: list[str] = []

    def one_pair_then_crash(phase: str) -> None:
        if phase != "swap":
            return

        def execute(sql: str, *a: object, **kw: object) -> object:
            if sql.startswith("EXCHANGE TABLES"):
                # the first pair goes through, then the process "dies"
                first = sql[len("EXCHANGE TABLES ") :].split(", ")[0]
                real_execute(f"EXCHANGE TABLES {first}")
                exchanged.append(first)
                raise Crash
            return real_execute(sql, *a, **kw)  # type: ignore[arg-type]

        store.execute = execute  # type: ignore[method-assign]

    replay.before = one_pair_then_crash
    try:
        with pytest.raises(Crash):
            await replay.run(_quiet, asyncio.Event())
    finally:
        store.execute = real_execute  # type: ignore[method-assign]
    assert exchanged == ["millrace.readings AND millrace.readings__shadow"]
    done = shadow.recover(store)  # what the engine runs at start
    assert sorted(done) == ["agg_1m", "latest"]
    assert shadow.recover(store) == []  # once
    counts = await Replay(ReplayParts(log, store, live), "t4", named).run(_quiet, asyncio.Event())
    assert counts == {"records": 0}  # the task resumed after the swap: it only cleans up
    check_equal_to_sent(store, sent)
    assert not [n for n in shadow.comments(store) if n.endswith(shadow.SUFFIX)]


async def test_start_time_folds_from_the_first_record_appended_after_it(
    clean: ChdbStore, log: LocalEventLog
) -> None:
    store = clean
    sent = Sent()
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors())
    await ingest(log, sent, 0, 10, live)
    records = [
        r for p in range(log.partitions(TELEMETRY)) for r in await log.read(TELEMETRY, p, 0, 100)
    ]
    later = Sent()
    await asyncio.sleep(0.01)
    cut = max(r.timestamp_us for r in records) + 1
    await asyncio.sleep(0.01)
    await ingest(log, later, 10, 10, live)
    await drain(live)
    counts = await Replay(ReplayParts(log, store, live), "t5", ["readings"], cut).run(
        _quiet, asyncio.Event()
    )
    assert counts is not None
    got = readings_by_series(store)
    assert sum(c for c, _ in got.values()) == sum(later.count.values())


async def test_replay_task_runs_through_the_task_runner(
    clean: ChdbStore, log: LocalEventLog
) -> None:
    store = clean
    sent = Sent()
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors())
    await ingest(log, sent, 0, 30, live)
    await drain(live)
    spoil(store, "readings")
    kinds = TaskKinds()
    register_kind("replay", replay_handler(lambda: ReplayParts(log, store, live)), kinds)
    publisher = LogPublisher(log)
    task_id = await create_task(publisher, "replay", {"projections": ["readings"]})
    runner = TaskRunner(log, publisher, kinds, poll_s=0.01, progress_interval_s=0.0)
    stop = asyncio.Event()
    running = [asyncio.create_task(live.run(stop)), asyncio.create_task(runner.run(stop))]
    status = ""
    for _ in range(3000):  # bounded wait, not a timed assertion
        rows = store.execute(
            "SELECT status, progress FROM millrace.tasks FINAL WHERE task_id = {t:String}",
            params={"t": task_id},
        ).rows
        status = str(rows[0][0]) if rows else ""
        if status in ("completed", "failed"):
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.gather(*running)
    assert status == "completed", rows
    assert dict(rows[0][1])["readings"] == sum(sent.count.values())
    check_equal_to_sent(store, sent)


async def test_replay_task_without_a_live_fold_fails_saying_why(
    clean: ChdbStore, log: LocalEventLog
) -> None:
    handler = replay_handler(lambda: None)
    ctx = TaskContext("t6", "replay", {}, LogPublisher(log), asyncio.Event())
    with pytest.raises(ReplayError, match="needs the live fold"):
        await handler(ctx)
