"""Restore throughput into the projections (``restore`` group).

The simulator (1000 devices x 25 signals, one TelemetryBatch per device per tick, one
tick per second; every other batch with a batch id) is archived as Avro container
files (one hour window per partition, 4 partitions, zstandard) with the archive store;
then one ``restore`` task (the handler the engine's task runner calls) folds every file
into empty chDB projections, timed: read + checksum + decode + batch-id admission +
telemetry fold + inserts, the handler built as the process role builds it (the
projection's readings asked about for batches no id names). A second restore of the
same range (every batch already applied, nothing written but the checks) is timed
too. The collector policy of the process role (``pipeline.runtime.gc_policy``, which
``millrace run`` applies once its stages started: restores run there) is applied after
the store opened. CPU time is the process's (every thread, chDB's among them):
steadier than wall time on a shared machine. Figures::

    python -m bench.restore_bench [--ticks 120] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.procstat import cpu_seconds
from millrace.connectors.simulator import SimulatorConfig, SimulatorConnector
from millrace.pipeline.archive.format import HOUR_US, window_start
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import default_codec
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.log.base import Record, partition_for
from millrace.pipeline.restore import KIND, RestoreParams, RestoreTask
from millrace.pipeline.restore.offload import OffloadedRestoreTask, RestoreWorkers
from millrace.pipeline.runtime.gc_policy import GcConfig, apply
from millrace.pipeline.tasks import TaskContext
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.migrations import migrate
from millrace.projections.restore import held_readings
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

T0 = 1_764_000_000_000_000
DEVICES, SIGNALS, PARTITIONS = 1000, 25, 4
Figures = dict[str, tuple[float, str]]


def _archive(url: Path, ticks: int) -> int:
    """Archive ``ticks`` simulator ticks; returns the readings archived."""
    sim = SimulatorConnector(
        SimulatorConfig(devices=DEVICES, signals=SIGNALS, start_us=T0, realtime=False)
    )
    codec = default_codec()
    parts: dict[int, list[Record]] = defaultdict(list)
    for tick in range(ticks):
        ts = T0 + tick * 1_000_000
        for n, (identity, ev) in enumerate(sim.generate_tick(tick, ts)):
            if n % 2:
                ev = {**ev, "batch_id": f"bench:{tick}:{n}"}
            p = partition_for(identity.encode(), PARTITIONS)
            recs = parts[p]
            recs.append(
                Record(TELEMETRY, p, len(recs), ts, identity.encode(), codec.encode(TELEMETRY, ev))
            )
    store = ArchiveStore(str(url))
    readings = 0
    for recs in parts.values():
        by_window: dict[int, list[Record]] = defaultdict(list)
        for r in recs:
            by_window[window_start(r.timestamp_us, HOUR_US)].append(r)
        for ws, rs in by_window.items():
            readings += store.write_window(rs, ws, ws + HOUR_US).readings
    return readings


async def _restore(handler: RestoreTask, task_id: str, end_us: int) -> dict[str, int]:
    params = RestoreParams(start_us=T0, end_us=end_us).to_json()
    ctx = TaskContext(task_id, KIND, params, MemoryEventPublisher(), asyncio.Event())
    await handler(ctx)
    if ctx.failed:
        raise RuntimeError(f"restore failed: {ctx.failed}")
    totals: dict[str, int] = defaultdict(int)
    for counts in ctx.done.values():
        for k, v in counts.items():
            totals[k] += v
    return dict(totals)


def _children_cpu(workers: RestoreWorkers | None) -> float:
    """CPU seconds of the restore's worker processes alive now (``/proc``: they are not
    reaped between the timings)."""
    return sum(cpu_seconds(pid) for pid in (workers.pids() if workers is not None else ()))


def _cpu(workers: RestoreWorkers | None) -> float:
    """CPU seconds of this process (every thread) and of the restore's workers."""
    return time.process_time() + _children_cpu(workers)


def _timed(
    figs: Figures,
    prefix: str,
    store: ChdbStore,
    handler: RestoreTask,
    workers: RestoreWorkers | None,
    end: int,
    readings: int,
) -> None:
    """A first restore into empty projections, then the same range again."""
    for name in ("readings", "agg_1m", "agg_5m", "agg_1h", "latest", "applied_batches"):
        store.execute(f"TRUNCATE TABLE millrace.{name}")
    start, cpu, children = time.perf_counter(), _cpu(workers), _children_cpu(workers)
    first = asyncio.run(_restore(handler, f"{prefix}-1", end))
    elapsed, cpu = time.perf_counter() - start, _cpu(workers) - cpu
    children = _children_cpu(workers) - children
    if workers is not None:
        # each side's share: on an idle 2-core machine the slower one sets the pace
        us = 1e6 / readings
        figs[f"{prefix}_engine_cpu_us_per_reading"] = ((cpu - children) * us, "CPU us/reading")
        figs[f"{prefix}_workers_cpu_us_per_reading"] = (children * us, "CPU us/reading")
    stored = int(store.execute("SELECT count() FROM millrace.readings").rows[0][0])
    if first["readings"] != readings or stored != readings:
        raise RuntimeError(f"restored {first['readings']} / stored {stored} of {readings}")
    figs[f"{prefix}_readings_per_s"] = (readings / elapsed, "readings/s")
    figs[f"{prefix}_cpu_us_per_reading"] = (cpu / readings * 1e6, "CPU us/reading")
    figs[f"{prefix}_cpu_cores"] = (cpu / elapsed, "cores")
    figs[f"{prefix}_records_per_s"] = (first["events"] / elapsed, "records/s")
    figs[f"{prefix}_archive_mb_per_s"] = (first["bytes"] / elapsed / 1e6, "MB/s")
    start, cpu = time.perf_counter(), _cpu(workers)
    again = asyncio.run(_restore(handler, f"{prefix}-2", end))
    elapsed, cpu = time.perf_counter() - start, _cpu(workers) - cpu
    if (
        again["readings"] != 0
        or int(store.execute("SELECT count() FROM millrace.readings").rows[0][0]) != readings
    ):
        raise RuntimeError("the second restore doubled readings")
    figs[f"{prefix}_again_readings_per_s"] = (readings / elapsed, "readings/s")
    figs[f"{prefix}_again_cpu_us_per_reading"] = (cpu / readings * 1e6, "CPU us/reading")


def run(ticks: int, workdir: Path) -> Figures:
    workdir = Path(tempfile.mkdtemp(prefix="restore-bench-", dir=workdir))  # nothing earlier
    readings = _archive(workdir / "archive", ticks)
    store = ChdbStore(workdir / "chdb")
    figs: Figures = {}
    workers = RestoreWorkers()
    try:
        migrate(store)
        apply(GcConfig())
        # as the process role builds it (``cli.assembly.process``): with the check of
        # readings the projection holds for batches no id names; in this process, and
        # with the files folded by worker processes (``restore.worker``)
        common: dict[str, Any] = {"held": held_readings(store)}
        archive = ArchiveStore(str(workdir / "archive"))
        writer = ProjectionWriter(store)
        end = T0 + ticks * 1_000_000
        in_process = RestoreTask(writer, archive, MemoryEventPublisher(), **common)
        _timed(figs, "restore", store, in_process, None, end, readings)
        offloaded = OffloadedRestoreTask(
            writer, archive, MemoryEventPublisher(), workers=workers, **common
        )
        # an engine's workers outlive a restore: not timed (per lane of files folding
        # at the same time: the file folding and the next one opened ahead)
        workers.prestart(2 * offloaded.lanes)
        _timed(figs, "restore_worker", store, offloaded, workers, end, readings)
        figs["restore_readings"] = (float(readings), "readings")
    finally:
        workers.close()
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return figs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=120)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figs = run(args.ticks, args.workdir or Path(tmp))
    print(json.dumps({k: round(v, 3) for k, (v, _) in figs.items()}, indent=1))


if __name__ == "__main__":
    main()
