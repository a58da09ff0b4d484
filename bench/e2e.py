"""``millrace bench``: end-to-end throughput of the embedded deployment.

Simulated devices -> Avro -> :class:`LocalEventLog` (``fsync=batch``) ->
:class:`EmbeddedRuntime` -> chDB projections, on a fresh data directory. Two producers:

``loop``
    the :class:`SimulatorConnector` (``realtime=False``) publishes through the real
    :class:`LogPublisher` on the runtime's asyncio loop, exactly as ``millrace run``.
``process``
    the simulator and the Avro encoding run in a child process (as a connector
    process of the distributed deployment would); the parent appends the encoded
    records to the log (``fsync=batch``) on the runtime's loop. Same code, but the
    connector's Python work no longer competes for the runtime's GIL.

Either producer is held back while the runtime is more than ``max_lag`` records
behind (a bounded connector buffer), so it runs as fast as the pipeline absorbs
readings; with ``rate`` it is paced at that many readings/s instead. Throughput
counts what the projections hold at the end (``SELECT count() FROM
millrace.readings``), not what was published, over the wall time from the first
publish until the runtime has stopped.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from bench.procstat import RssSampler
from millrace.connectors.simulator import SimulatorConfig, SimulatorConnector
from millrace.pipeline.codec import default_codec
from millrace.pipeline.connector import Event, EventPublisher
from millrace.pipeline.log.base import Message, TopicPartition
from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.runtime.gc_policy import GcConfig, apply
from millrace.pipeline.runtime.worker import FoldWorker
from millrace.pipeline.runtime.worker_config import WorkerConfig
from millrace.pipeline.telemetry_columns import iter_samples
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.migrations import migrate
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

Figures = dict[str, tuple[float, str]]
Producer = Literal["loop", "process"]
#: simulated time starts here (2025-01-01T00:00:00Z); one tick = one second
START_US = 1_735_689_600_000_000
TICK_US = 1_000_000
CONSUMER = "projections"
#: called after each tick is appended: (perf_counter before the append, the tick's
#: sample time ts_us, seconds the append took)
PublishHook = Callable[[float, int, float], None]


def scalar(store: ChdbStore, sql: str) -> float:
    """The first column of the first row of ``sql`` (0 when empty or NULL)."""
    rows = store.execute(sql).rows
    return float(rows[0][0] or 0) if rows and rows[0] else 0.0


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cpu_s() -> float:
    """User + system CPU seconds of this process (every thread, chDB's included) and
    of its children that ended (the producer process)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Pipeline:
    """The embedded deployment as ``Engine`` wires it (log, chDB, runtime), without
    the API and connectors; ``directory`` must be fresh (chDB: one process per data
    directory)."""

    def __init__(self, directory: Path, max_records: int = 5000) -> None:
        self.directory = directory
        self.log = LocalEventLog(directory / "log", LocalLogConfig(fsync="batch"))
        # two sessions, as millrace run's pipeline store: a fold ahead's reads beside inserts
        self.store = ChdbStore(directory / "chdb", sessions=2)
        self.codec = default_codec()
        self.publisher = LogPublisher(self.log, self.codec)
        folds = processors()
        # telemetry folded in a worker process as runtime.worker.enabled's default says;
        # MILLRACE_BENCH_WORKER=0 or 1 overrides (its CPU counts once the runtime ended it)
        default = "1" if WorkerConfig().enabled else "0"
        offload = os.environ.get("MILLRACE_BENCH_WORKER", default) != "0"
        worker = FoldWorker(folds, [TELEMETRY]) if offload else None
        self.runtime = EmbeddedRuntime(
            self.log,
            ProjectionWriter(self.store),
            folds,
            codec=self.codec,
            max_records=max_records,
            consumer=CONSUMER,
            worker=worker,
        )
        self.appended = 0  # telemetry records appended, by either producer
        #: the inserts sent to chDB, while :meth:`record_inserts` records them
        self.recorded: list[tuple[str, pa.Table, Mapping[str, Any] | None]] | None = None
        self.child_pids: set[int] = set()  # the process producer, while it runs

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log.open()
        migrate(self.store)

    def behind(self) -> int:
        """Records appended but not yet processed by the runtime (cheap, in memory)."""
        return self.appended - self.runtime.stats.records

    def committed(self) -> int:
        """Telemetry records the runtime committed (the log starts at offset 0)."""
        return sum(
            self.log.committed_sync(CONSUMER, TopicPartition(TELEMETRY, p)) or 0
            for p in range(self.log.partitions(TELEMETRY))
        )

    def lag_records(self) -> int:
        """Telemetry records in the log past the runtime's committed positions."""
        ends = sum(
            self.log.offsets_sync(TELEMETRY, p)[1] for p in range(self.log.partitions(TELEMETRY))
        )
        return ends - self.committed()

    def readings(self) -> int:
        return int(scalar(self.store, "SELECT count() FROM millrace.readings"))

    def record_inserts(self) -> None:
        """Keep every insert the run sends to chDB (SQL, Arrow table, settings), for
        :meth:`store_limit`. The tables are held, not copied (a 60 s run: a few GB)."""
        self.recorded = recorded = []
        insert = self.store.insert_arrow

        def recording(sql: str, table: pa.Table, settings: Mapping[str, Any] | None = None) -> None:
            recorded.append((sql, table, settings))
            insert(sql, table, settings)

        self.store.insert_arrow = recording  # type: ignore[method-assign]

    def store_limit(self, readings: int, readings_per_s: float) -> Figures:
        """chDB's own insert rate for the same rows into the same tables: the inserts
        the run sent (:meth:`record_inserts`: the projections' rows and the progress
        rows, each with its SQL and settings) sent again, one after the other as the
        runtime sends them, into freshly migrated empty projections, timed. The limit is
        ``readings`` over that time: what chDB takes for what our pipeline produced,
        without the log, decode or fold; our ratio is the run's rate over it."""
        recorded = self.recorded or []
        vars(self.store).pop("insert_arrow", None)  # the store's own insert again
        self.store.execute("DROP DATABASE IF EXISTS millrace SYNC")
        migrate(self.store)
        c0, t0 = time.process_time(), time.perf_counter()
        for sql, table, settings in recorded:
            self.store.insert_arrow(sql, table, settings)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        landed = self.readings()
        self.recorded = None
        limit = readings / elapsed if elapsed > 0 else float("nan")
        return {
            "store_limit_readings_per_s": (limit, "readings/s"),
            "store_limit_cpu_us_per_reading": (cpu / max(readings, 1) * 1e6, "us/reading"),
            "store_limit_inserts": (float(len(recorded)), "inserts"),
            "store_limit_readings_missing": (float(readings - landed), "readings"),
            "e2e_ratio_to_store_limit": (readings_per_s / limit if limit else float("nan"), "x"),
        }

    def storage(self, signals: int) -> Figures:
        """OPTIMIZE ... FINAL every projection, then bytes on disk per reading of
        ``millrace.readings``, of all millrace tables, and of the telemetry log."""
        rows = max(self.readings(), 1)
        tables = self.store.execute(
            "SELECT name FROM system.tables "
            "WHERE database = 'millrace' AND engine LIKE '%MergeTree'"
        ).rows
        for (name,) in tables:
            self.store.execute(f"OPTIMIZE TABLE millrace.`{name}` FINAL")
        parts = "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'millrace' AND active"
        in_log = max(self.appended * signals, 1)
        return {
            "chdb_bytes_per_reading": (
                scalar(self.store, parts + " AND table = 'readings'") / rows,
                "B/reading",
            ),
            "chdb_total_bytes_per_reading": (scalar(self.store, parts) / rows, "B/reading"),
            "log_bytes_per_reading": (
                dir_bytes(self.log.directory / TELEMETRY) / in_log,
                "B/reading",
            ),
        }

    async def close(self) -> None:
        await self.log.close()
        self.store.close()


async def _hold(pipeline: Pipeline, max_lag: int) -> float:
    """Wait while the runtime is more than ``max_lag`` records behind; seconds waited."""
    if pipeline.behind() <= max_lag:
        return 0.0
    t = time.perf_counter()
    while pipeline.behind() > max_lag:
        await asyncio.sleep(0.002)
    return time.perf_counter() - t


class _Throttled(EventPublisher):
    """The loop producer's publisher: :class:`LogPublisher` behind a bounded buffer."""

    def __init__(self, pipeline: Pipeline, max_lag: int, hook: PublishHook | None) -> None:
        self.pipeline, self.max_lag, self.hook = pipeline, max_lag, hook
        self.waited_s = 0.0
        self.ticks = 0

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        self.waited_s += await _hold(self.pipeline, self.max_lag)
        start = time.perf_counter()
        await self.pipeline.publisher.publish(topic, events)
        self.pipeline.appended += len(events)
        self.pipeline.runtime.wake()
        if self.hook is not None and events:
            ts_us = int(next(iter_samples(events[0][1]))[0])
            self.hook(start, ts_us, time.perf_counter() - start)
        self.ticks += 1


def _child(
    conn: Connection, devices: int, signals: int, start_us: int, batch_ticks: int = 1
) -> None:
    """Child process: generate and Avro-encode ticks (``batch_ticks`` rows per
    device's batch), send them until the pipe closes."""
    sim = SimulatorConnector(
        SimulatorConfig(
            devices=devices, signals=signals, start_us=start_us, interval_ms=1000, realtime=False
        )
    )
    codec = default_codec()
    tick = 0
    while True:
        events = sim.generate_ticks(tick, batch_ticks, start_us + tick * TICK_US, TICK_US)
        keys = [identity.encode() for identity, _ in events]
        values = [codec.encode(TELEMETRY, event) for _, event in events]
        try:
            conn.send((keys, values))
        except (BrokenPipeError, ConnectionResetError, EOFError):
            return
        tick += batch_ticks


@dataclass
class Run:
    """What one :func:`drive` measured."""

    elapsed_s: float = 0.0
    readings: int = 0
    ticks: int = 0
    lag_records: int = 0
    committed: int = 0  # telemetry records the runtime committed
    producer_wait_s: float = 0.0
    runtime_batches: int = 0
    runtime_errors: int = 0
    cpu_s: float = 0.0


async def drive(
    pipeline: Pipeline,
    seconds: float,
    *,
    devices: int,
    signals: int,
    producer: Producer = "process",
    max_lag: int = 40_000,
    rate: float | None = None,
    hook: PublishHook | None = None,
    drain: bool = False,
    batch_ticks: int = 1,
) -> Run:
    """Produce for ``seconds`` while the runtime runs, then stop the producer, let the
    runtime finish its batch (or, with ``drain``, everything appended) and count what
    is queryable."""
    stop = asyncio.Event()
    rt = pipeline.runtime
    interval_s = devices * signals / rate if rate else 0.0
    cpu0 = cpu_s()
    runtime_task = asyncio.create_task(rt.run(stop), name="runtime")
    start = time.perf_counter()
    if producer == "loop":
        sim = SimulatorConnector(
            SimulatorConfig(
                devices=devices,
                signals=signals,
                start_us=START_US,
                interval_ms=max(1, round(interval_s * 1000)) if rate else 1000,
                realtime=rate is not None,
                batch_ticks=batch_ticks,
            )
        )
        publisher = _Throttled(pipeline, max_lag, hook)
        await sim.start(publisher)
        await asyncio.sleep(seconds)
        await sim.stop()
        ticks, waited = publisher.ticks, publisher.waited_s
    else:
        ticks, waited, start = await append_from_child(
            pipeline, seconds, devices, signals, max_lag, interval_s, hook, batch_ticks=batch_ticks
        )
    while drain and pipeline.behind() > 0 and not runtime_task.done():
        await asyncio.sleep(0.005)
    stop.set()
    rt.wake()
    await runtime_task
    elapsed = time.perf_counter() - start
    return Run(
        elapsed_s=elapsed,
        readings=await asyncio.to_thread(pipeline.readings),
        ticks=ticks,
        lag_records=pipeline.lag_records(),
        committed=pipeline.committed(),
        producer_wait_s=waited,
        runtime_batches=rt.stats.batches,
        runtime_errors=rt.stats.errors,
        cpu_s=cpu_s() - cpu0,
    )


async def append_from_child(
    pipeline: Pipeline,
    seconds: float,
    devices: int,
    signals: int,
    max_lag: int,
    interval_s: float = 0.0,
    hook: PublishHook | None = None,
    until: asyncio.Event | None = None,
    batch_ticks: int = 1,
) -> tuple[int, float, float]:
    """Append the child's ticks (one every ``interval_s``, or as fast as allowed) for
    ``seconds`` or until ``until`` is set; (ticks appended, seconds held back,
    perf_counter of the first append)."""
    ctx = mp.get_context("spawn")  # never fork a process that holds chDB threads
    parent, child_end = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_child, args=(child_end, devices, signals, START_US, batch_ticks), daemon=True
    )
    child.start()
    child_end.close()
    if child.pid is not None:
        pipeline.child_pids.add(child.pid)
    loop = asyncio.get_running_loop()
    ticks, waited, origin = 0, 0.0, time.perf_counter()
    try:
        keys, values = await asyncio.to_thread(parent.recv)  # the child has started
        origin = time.perf_counter()
        deadline = origin + seconds
        while time.perf_counter() < deadline and not (until and until.is_set()):
            if interval_s:
                due = origin + ticks * interval_s
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
            waited += await _hold(pipeline, max_lag)
            if time.perf_counter() >= deadline:
                break
            start = time.perf_counter()
            messages = [Message(v, key=k) for k, v in zip(keys, values, strict=True)]
            await pipeline.log.append(TELEMETRY, messages)
            pipeline.appended += len(messages)
            pipeline.runtime.wake()
            if hook is not None:
                hook(start, START_US + ticks * TICK_US, time.perf_counter() - start)
            ticks += 1
            keys, values = await loop.run_in_executor(None, parent.recv)
    finally:
        parent.close()
        await asyncio.to_thread(child.join, 10)
        if child.is_alive():
            child.kill()
        pipeline.child_pids.discard(child.pid or 0)
    return ticks, waited, origin


def e2e(
    seconds: float,
    devices: int = 1000,
    signals: int = 25,
    *,
    producer: Producer = "process",
    workdir: Path | None = None,
    max_records: int = 5000,
    max_lag: int | None = None,
    storage: bool = True,
    gc_policy: bool = True,
    rss_interval_s: float | None = None,
    batch_ticks: int = 1,
    limit: bool = False,
) -> tuple[Figures, Run]:
    """One end-to-end run on a fresh directory under ``workdir``: (figures, run).

    ``gc_policy``: the collector policy ``millrace run`` applies once its stages have
    started (``pipeline.runtime.gc_policy``), applied here after the pipeline opened;
    False keeps the interpreter's defaults. The summed RSS of this process and the
    producer child is sampled every ``rss_interval_s`` (default: a tenth of the run,
    at most 5 s). ``batch_ticks``: ticks per device's TelemetryBatch (the simulator's
    ``batch_ticks``); the producer's bound on records behind shrinks by as much, so the
    readings held back stay the same. ``limit``: also chDB's own insert rate for the
    same inserts (:meth:`Pipeline.store_limit`; the run's RSS then holds them)."""
    base = Path(tempfile.mkdtemp(prefix="millrace-bench-", dir=workdir))
    try:
        pipeline = Pipeline(base / "data", max_records=max_records)
        pipeline.open()
        if limit:
            pipeline.record_inserts()
        apply(GcConfig(enabled=gc_policy))
        lag = (
            max_lag
            if max_lag is not None
            else 2 * max_records * pipeline.log.partitions(TELEMETRY) // batch_ticks
        )
        interval = rss_interval_s or min(5.0, max(0.5, seconds / 10))
        with RssSampler(lambda: [None, *pipeline.child_pids], interval) as rss:
            run = asyncio.run(
                drive(
                    pipeline,
                    seconds,
                    devices=devices,
                    signals=signals,
                    producer=producer,
                    max_lag=lag,
                    batch_ticks=batch_ticks,
                )
            )
        figs: Figures = {
            "e2e_readings_per_s": (run.readings / run.elapsed_s, "readings/s"),
            "e2e_batches_per_s": (run.readings / signals / run.elapsed_s, "batches/s"),
            "runtime_lag_records": (float(run.lag_records), "records"),
            # exactly-once check: every committed record's readings, none twice
            "e2e_readings_unaccounted": (
                float(run.readings - run.committed * signals * batch_ticks),
                "readings",
            ),
            "e2e_cpu_cores": (run.cpu_s / run.elapsed_s, "cores"),
            "e2e_cpu_us_per_reading": (run.cpu_s / max(run.readings, 1) * 1e6, "us/reading"),
            "e2e_gc_policy": (1.0 if gc_policy else 0.0, "on"),
            "e2e_batch_ticks": (float(batch_ticks), "rows/batch"),
            **rss.figures("e2e"),
        }
        if storage:
            figs.update(pipeline.storage(signals * batch_ticks))  # readings per record
        if limit:
            figs.update(pipeline.store_limit(pipeline.readings(), figs["e2e_readings_per_s"][0]))
        asyncio.run(pipeline.close())
        return figs, run
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_bench(seconds: float, devices: int = 1000, signals: int = 25) -> Figures:
    """The end-to-end figures of ``millrace bench`` (see the module doc)."""
    figs, _ = e2e(seconds, devices, signals)
    return figs
