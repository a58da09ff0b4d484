"""The archive: bytes per reading and archiving throughput (``archive`` group).

The simulator (1000 devices x 25 signals, one TelemetryBatch per device per tick, one
tick per second from 2025-11-24T16:00Z) is encoded and appended to a LocalEventLog (4
partitions, fsync=never) first; then one :class:`Archiver` pass with a flush copies the
telemetry topic to a local-directory archive store, timed. Figures::

    python -m bench.archive_bench [--ticks 120] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from millrace.connectors.simulator import SimulatorConfig, SimulatorConnector
from millrace.pipeline.archive.archiver import Archiver
from millrace.pipeline.archive.config import ArchiveConfig
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig
from millrace.pipeline.topics import TELEMETRY

T0 = 1_764_000_000_000_000
DEVICES, SIGNALS = 1000, 25
Figures = dict[str, tuple[float, str]]


def _fill(log: LocalEventLog, ticks: int) -> int:
    sim = SimulatorConnector(
        SimulatorConfig(devices=DEVICES, signals=SIGNALS, start_us=T0, realtime=False)
    )
    codec = default_codec()
    payload = 0
    for tick in range(ticks):
        ts = T0 + tick * 1_000_000
        msgs = [
            Message(codec.encode(TELEMETRY, ev), identity.encode(), ts)
            for identity, ev in sim.generate_tick(tick, ts)
        ]
        payload += sum(len(m.value) for m in msgs)
        log.append_sync(TELEMETRY, msgs)
    return payload


def _archive(log: LocalEventLog, url: Path, codec: str) -> tuple[float, int, int, int]:
    """(seconds, records, readings, bytes) of one archiver pass over the log."""
    cfg = ArchiveConfig(url=str(url), codec=codec, idle_close_s=10**9)  # type: ignore[arg-type]
    store = ArchiveStore(str(url))
    archiver = Archiver(log, store, cfg, topics=(TELEMETRY,))
    start = time.perf_counter()
    asyncio.run(archiver.step(flush=True))
    elapsed = time.perf_counter() - start
    windows = store.list_windows(TELEMETRY)
    return (
        elapsed,
        sum(m.records for m in windows),
        sum(m.readings for m in windows),
        sum(m.bytes for m in windows),
    )


def run(ticks: int, workdir: Path) -> Figures:
    """The figures, measured in a fresh directory under ``workdir`` (removed after: an
    archive left by an earlier run was counted again, 'archived 6000000 readings of
    3000000')."""
    base = Path(tempfile.mkdtemp(prefix="millrace-archive-bench-", dir=workdir))
    try:
        return _run(ticks, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run(ticks: int, workdir: Path) -> Figures:
    log = LocalEventLog(workdir / "log", LocalLogConfig(partitions=4, fsync="never"))
    figs: Figures = {}
    try:
        payload = _fill(log, ticks)
        readings = ticks * DEVICES * SIGNALS
        figs["archive_log_payload_bytes_per_reading"] = (payload / readings, "B")
        for codec in ("zstandard", "deflate"):
            s, records, got, size = _archive(log, workdir / f"archive-{codec}", codec)
            if got != readings:
                raise RuntimeError(f"{codec}: archived {got} readings of {readings}")
            tag = "" if codec == "zstandard" else "_deflate"
            figs[f"archive{tag}_bytes_per_reading"] = (size / readings, "B")
            figs[f"archive{tag}_readings_per_s"] = (readings / s, "readings/s")
            figs[f"archive{tag}_records_per_s"] = (records / s, "records/s")
            figs[f"archive{tag}_log_mb_per_s"] = (payload / s / 1e6, "MB/s")
        figs["archive_readings"] = (float(readings), "readings")
    finally:
        log.close_sync()
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
