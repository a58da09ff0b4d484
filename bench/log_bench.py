"""Micro-benchmark of the embedded event log (:class:`LocalEventLog`).

2 KB records, 100 per append, one partition (so one write, and in ``batch`` mode one
fsync, per append), appended with ``fsync=batch`` and ``fsync=never``, then read back
sequentially 1000 at a time.  Figures, not pass/fail::

    python -m bench.log_bench [--seconds 6] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Literal

from millrace.pipeline.log.base import Message
from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig

RECORD_BYTES = 2048
BATCH = 100
READ_BATCH = 1000
MB = 1e6


def _batches() -> list[list[Message]]:
    pool = os.urandom(RECORD_BYTES * 8)
    return [
        [
            Message(pool[k * 64 : k * 64 + RECORD_BYTES], key=b"device-%d" % k, partition=0)
            for k in range(j, j + BATCH)
        ]
        for j in range(0, 4 * BATCH, BATCH)
    ]


def _append(
    directory: Path, fsync: Literal["batch", "never"], seconds: float
) -> tuple[float, float]:
    """(records/s, MB/s) of appends for ``seconds``."""
    batches = _batches()
    with LocalEventLog(directory, LocalLogConfig(partitions=1, fsync=fsync)) as log:
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            log.append_sync("bench", batches[count // BATCH % len(batches)])
            count += BATCH
        elapsed = time.perf_counter() - start
    return count / elapsed, count * RECORD_BYTES / elapsed / MB


def _read(directory: Path, seconds: float) -> tuple[float, float]:
    """(records/s, MB/s) of sequential reads of what the appends left, for ``seconds``."""
    with LocalEventLog(directory, LocalLogConfig(partitions=1)) as log:
        end = log.offsets_sync("bench", 0)[1]
        count = offset = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            records = log.read_sync("bench", 0, offset, READ_BATCH)
            count += len(records)
            offset = records[-1].offset + 1 if offset + len(records) < end else 0
        elapsed = time.perf_counter() - start
    return count / elapsed, count * RECORD_BYTES / elapsed / MB


def run(seconds: float, workdir: Path) -> dict[str, tuple[float, str]]:
    """Spend about ``seconds`` in three phases: append with fsync=batch, append with
    fsync=never, read back.  Data goes under ``workdir``."""
    phase = seconds / 3
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="log_bench-") as tmp:
        batch_rps, batch_mbps = _append(Path(tmp) / "batch", "batch", phase)
        never_rps, never_mbps = _append(Path(tmp) / "never", "never", phase)
        read_rps, read_mbps = _read(Path(tmp) / "never", phase)
    return {
        "log_append_records_per_s": (batch_rps, "records/s"),
        "log_append_mb_per_s": (batch_mbps, "MB/s"),
        "log_append_nofsync_records_per_s": (never_rps, "records/s"),
        "log_append_nofsync_mb_per_s": (never_mbps, "MB/s"),
        "log_read_records_per_s": (read_rps, "records/s"),
        "log_read_mb_per_s": (read_mbps, "MB/s"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    for name, (value, unit) in run(args.seconds, args.workdir).items():
        print(f"{name}: {value:.1f} {unit}")


if __name__ == "__main__":
    main()
