"""Restore throughput into the projections (``restore`` group).

The simulator (1000 devices x 25 signals, one TelemetryBatch per device per tick, one
tick per second; every other batch with a batch id) is archived as Avro container
files (one hour window per partition, 4 partitions, zstandard) with the archive store;
then one ``restore`` task (the handler the engine's task runner calls) folds every file
into empty chDB projections, timed: read + checksum + decode + batch-id admission +
telemetry fold + inserts. A second restore of the same range (every batch already
applied, nothing written but the checks) is timed too. Figures::

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

from millrace.connectors.simulator import SimulatorConfig, SimulatorConnector
from millrace.pipeline.archive.format import HOUR_US, window_start
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import default_codec
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.log.base import Record, partition_for
from millrace.pipeline.restore import KIND, RestoreParams, RestoreTask
from millrace.pipeline.tasks import TaskContext
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.migrations import migrate
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


def run(ticks: int, workdir: Path) -> Figures:
    workdir = Path(tempfile.mkdtemp(prefix="restore-bench-", dir=workdir))  # nothing earlier
    readings = _archive(workdir / "archive", ticks)
    store = ChdbStore(workdir / "chdb")
    figs: Figures = {}
    try:
        migrate(store)
        handler = RestoreTask(
            ProjectionWriter(store), ArchiveStore(str(workdir / "archive")), MemoryEventPublisher()
        )
        end = T0 + ticks * 1_000_000
        start = time.perf_counter()
        first = asyncio.run(_restore(handler, "bench-1", end))
        elapsed = time.perf_counter() - start
        stored = int(store.execute("SELECT count() FROM millrace.readings").rows[0][0])
        if first["readings"] != readings or stored != readings:
            raise RuntimeError(f"restored {first['readings']} / stored {stored} of {readings}")
        figs["restore_readings_per_s"] = (readings / elapsed, "readings/s")
        figs["restore_records_per_s"] = (first["events"] / elapsed, "records/s")
        figs["restore_archive_mb_per_s"] = (first["bytes"] / elapsed / 1e6, "MB/s")
        start = time.perf_counter()
        again = asyncio.run(_restore(handler, "bench-2", end))
        elapsed = time.perf_counter() - start
        if (
            again["readings"] != 0
            or int(store.execute("SELECT count() FROM millrace.readings").rows[0][0]) != readings
        ):
            raise RuntimeError("the second restore doubled readings")
        figs["restore_again_readings_per_s"] = (readings / elapsed, "readings/s")
        figs["restore_readings"] = (float(readings), "readings")
    finally:
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
