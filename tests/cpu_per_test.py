"""An opt-in pytest plugin: the CPU each test costs, its whole process tree included.

The suite is CPU-bound on small machines (its time is its CPU), and a test's wall time
says little about its CPU: a test that waits on a browser or an engine lets other
workers run. This plugin records, per test (setup, call and teardown), the CPU seconds
of the pytest process and of every process below it — live ones read from ``/proc``,
finished ones through the children's times their parents collected (an engine, a
browser and the driver that reaped it, a broker).

Use it with ``-p tests.cpu_per_test`` and ``MILLRACE_CPU_PER_TEST=<dir>``: each worker
appends JSON lines ``{"id", "cpu", "wall"}`` to ``<dir>/<worker>.jsonl``;
``python -m tests.cpu_per_test <dir>`` sums them per file. Linux only (``/proc``).
A process started in one test and still running in the next (a module's engine) is
counted in the tests it runs beside.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
DIR_ENV = "MILLRACE_CPU_PER_TEST"


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of the children it reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # gone meanwhile
    # after the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / TICK


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and of every live process below it, each with the times
    of the children it collected."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (got := _stat(name)) is not None:
            parents[int(name)], cpu[int(name)] = got
    total = 0.0
    for pid, seconds in cpu.items():
        up, hops = pid, 0
        while up != root and up in parents and hops < 64:
            up, hops = parents[up], hops + 1
        if up == root:
            total += seconds
    return total


class _Recorder:
    def __init__(self, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.out: IO[str] = (into / f"{worker}.jsonl").open("a")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        me = os.getpid()
        before, began = tree_cpu(me), time.monotonic()
        yield
        row = {
            "id": item.nodeid,
            "cpu": round(tree_cpu(me) - before, 3),
            "wall": round(time.monotonic() - began, 3),
        }
        self.out.write(json.dumps(row) + "\n")
        self.out.flush()


def pytest_configure(config: pytest.Config) -> None:
    into = os.environ.get(DIR_ENV)
    if into and sys.platform.startswith("linux"):
        config.pluginmanager.register(_Recorder(Path(into)), "cpu_per_test_recorder")


def per_file(into: Path) -> list[tuple[str, float, float, int]]:
    """(file, CPU s, wall s, tests) from the workers' lines, the costliest first."""
    cpu: Counter[str] = Counter()
    wall: Counter[str] = Counter()
    tests: Counter[str] = Counter()
    for path in sorted(into.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row: dict[str, Any] = json.loads(line)
            name = str(row["id"]).split("::")[0]
            cpu[name] += float(row["cpu"])
            wall[name] += float(row["wall"])
            tests[name] += 1
    return [(f, c, wall[f], tests[f]) for f, c in cpu.most_common()]


if __name__ == "__main__":
    rows = per_file(Path(sys.argv[1]))
    print(f"{sum(r[1] for r in rows):.0f} s of CPU in {sum(r[3] for r in rows)} tests")
    for name, c, w, n in rows[: int(sys.argv[2]) if len(sys.argv) > 2 else 40]:
        print(f"{c:8.1f} s CPU {w:8.1f} s wall {n:5d}  {name}")
