"""Ingest-to-queryable latency at a paced load.

The producer of :mod:`bench.e2e` appends one simulator tick (one
TelemetryBatch per device) at a fixed rate while the runtime runs. A poller on a
second chDB session (as the API reads) asks every ``poll_s`` for the newest reading
of one probe device per log partition::

    SELECT count(), min(m) FROM (SELECT identity, toUnixTimestamp64Micro(max(ts)) AS m
    FROM millrace.readings WHERE identity IN (...) AND signal = '<first signal>'
    GROUP BY identity)

A tick is *queryable* when every probe returns its timestamp; its latency is the time
from just before its append to the end of the first poll that saw it (so the figure
includes up to one poll interval and one query time: it is an upper bound).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.e2e import Figures, Pipeline, Producer, drive
from millrace.connectors.simulator.shapes import signal_names
from millrace.pipeline.log.base import partition_for
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.store.chdb import ChdbStore


def probes(devices: int, partitions: int, prefix: str = "sim-") -> list[str]:
    """The first device identity of each log partition (fewer if devices are few)."""
    found: dict[int, str] = {}
    for i in range(devices):
        identity = f"{prefix}{i}"
        found.setdefault(partition_for(identity.encode(), partitions), identity)
        if len(found) == partitions:
            break
    return sorted(found.values())


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def _poll(
    store: ChdbStore, sql: str, n: int, seen: list[tuple[float, int]], every_s: float
) -> None:
    """Append (poll end time, newest ts_us visible for every probe) to ``seen``."""
    while True:
        start = time.perf_counter()
        rows = (await asyncio.to_thread(store.execute, sql)).rows
        if rows and int(rows[0][0]) == n:
            seen.append((time.perf_counter(), int(rows[0][1])))
        await asyncio.sleep(max(0.0, every_s - (time.perf_counter() - start)))


def measure(
    seconds: float,
    rate: float,
    devices: int = 1000,
    signals: int = 25,
    *,
    producer: Producer = "process",
    workdir: Path | None = None,
    poll_s: float = 0.02,
    warmup_s: float = 3.0,
) -> Figures:
    """p50/p99/max ingest-to-queryable latency at ``rate`` readings/s for ``seconds``."""
    base = Path(tempfile.mkdtemp(prefix="millrace-latency-", dir=workdir))
    try:
        pipeline = Pipeline(base / "data")
        pipeline.open()
        reader = ChdbStore(base / "data" / "chdb")  # a second session, like the API's
        ids = probes(devices, pipeline.log.partitions(TELEMETRY))
        quoted = ", ".join(f"'{i}'" for i in ids)
        sql = (
            "SELECT count(), min(m) FROM (SELECT identity, toUnixTimestamp64Micro(max(ts)) AS m "
            f"FROM millrace.readings WHERE identity IN ({quoted}) "
            f"AND signal = '{signal_names(signals)[0]}' GROUP BY identity)"
        )
        appended: list[tuple[float, int, float]] = []  # (start, ts_us, append seconds)
        seen: list[tuple[float, int]] = []

        def hook(start: float, ts_us: int, took: float) -> None:
            appended.append((start, ts_us, took))

        async def main() -> tuple[float, int]:
            poller = asyncio.create_task(_poll(reader, sql, len(ids), seen, poll_s))
            try:
                run = await drive(
                    pipeline,
                    seconds,
                    devices=devices,
                    signals=signals,
                    producer=producer,
                    rate=rate,
                    hook=hook,
                    drain=True,
                )
                await asyncio.sleep(2 * poll_s)  # let the poller see the last batch
            finally:
                poller.cancel()
            return run.elapsed_s, run.readings

        elapsed, readings = asyncio.run(main())
        reader.close()
        asyncio.run(pipeline.close())
    finally:
        shutil.rmtree(base, ignore_errors=True)

    t0 = appended[0][0] if appended else 0.0
    latencies: list[float] = []
    missed = 0
    i = 0
    for start, ts_us, _took in appended:
        while i < len(seen) and seen[i][1] < ts_us:
            i += 1
        if i == len(seen):
            missed += 1  # never seen before the end: not counted, reported
            continue
        if start - t0 >= warmup_s:
            latencies.append(seen[i][0] - start)
    appends = [took for _s, _ts, took in appended]
    produced = len(appended) * devices * signals
    span = (appended[-1][0] - t0) if len(appended) > 1 else 1.0
    return {
        "latency_target_rate": (rate, "readings/s"),
        "latency_achieved_rate": (produced / max(span, 1e-9), "readings/s"),
        "latency_queryable_readings_per_s": (readings / elapsed, "readings/s"),
        "latency_p50_s": (percentile(latencies, 50), "s"),
        "latency_p99_s": (percentile(latencies, 99), "s"),
        "latency_max_s": (max(latencies, default=float("nan")), "s"),
        "latency_mean_s": (statistics.fmean(latencies) if latencies else float("nan"), "s"),
        "latency_samples": (float(len(latencies)), "ticks"),
        "latency_unseen_ticks": (float(missed), "ticks"),
        "latency_append_p99_s": (percentile(appends, 99), "s"),
    }


if __name__ == "__main__":  # pragma: no cover - manual runs
    import sys

    for name, (value, unit) in measure(float(sys.argv[1]), float(sys.argv[2])).items():
        print(f"{name}: {value:.6g} {unit}")
