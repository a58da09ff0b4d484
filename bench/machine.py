"""The machine a bench ran on, and how busy the rest of it was meanwhile."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def python_speed_s(iterations: int = 2_000_000, tries: int = 3) -> float:
    """CPU seconds of a fixed pure-Python loop of 10 million steps in a function (best of
    ``tries`` runs of ``iterations``, scaled): the machine's speed for interpreted code
    (0.73 s on the machine of 2026-12-07 18:00)."""
    best = float("inf")
    for _ in range(tries):
        start = time.process_time()
        total = 0
        for i in range(iterations):
            total += i * i
        best = min(best, time.process_time() - start)
    return best * 10_000_000 / iterations


def syscall_us(calls: int = 200_000, tries: int = 3) -> float:
    """Microseconds per ``getppid()`` from Python (best of ``tries``): the cost of
    entering the kernel, which every log append, fsync, chDB call, futex and page fault
    pays. 1.09 µs on the virtual machine of 2026-12-07 evening (~0.1-0.2 µs is usual,
    Python's call included), where the same code's figures were 2-3x below those of that
    morning's machine while a pure-Python loop ran at a normal speed."""
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(calls):
            os.getppid()
        best = min(best, time.perf_counter() - start)
    return best / calls * 1e6


def fresh_memory_s_per_gib(mib: int = 256) -> float:
    """Seconds to allocate and first touch a GiB of memory (``mib`` of it, scaled): page
    faults, which a virtual machine whose host backs memory lazily makes far dearer (2.3
    s per GiB on the machine of 2026-12-07 evening against 0.2 s for pages touched
    before in the same process)."""
    import numpy as np

    start = time.perf_counter()
    block = np.ones(mib * 1024 * 1024 // 8)
    elapsed = time.perf_counter() - start
    del block
    return elapsed * 1024 / mib


def describe() -> dict[str, str]:
    """CPU model, cores, RAM, OS, Python and library versions, date, and the machine's
    speeds that told VMs of the same kind apart: interpreted code
    (:func:`python_speed_s`), kernel entry (:func:`syscall_us`) and first-touched memory
    (:func:`fresh_memory_s_per_gib`)."""
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "ram": f"{_ram_gib():.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "chdb": _version("chdb"),
        "pyarrow": _version("pyarrow"),
        "fastavro": _version("fastavro"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python loop, 10M steps": f"{python_speed_s():.2f} s CPU (lower is faster)",
        "kernel entry": f"{syscall_us():.2f} µs per getppid() from Python",
        "fresh memory": f"{fresh_memory_s_per_gib():.2f} s per GiB first touched",
    }


def _busy_jiffies() -> int:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle


@dataclass
class Load:
    """CPU use during one stretch: the whole machine, and our child processes."""

    wall_s: float
    machine_cores: float  # busy cores, every process
    ours_cores: float  # the bench's waited-for children (workers and their children)

    @property
    def others_cores(self) -> float:
        return max(0.0, self.machine_cores - self.ours_cores)


class LoadMeter:
    """``with LoadMeter() as m: run a child; m.load``: what else ran meanwhile."""

    def __enter__(self) -> LoadMeter:
        self._t = time.perf_counter()
        self._busy = _busy_jiffies()
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._ours = r.ru_utime + r.ru_stime
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t
        hz = os.sysconf("SC_CLK_TCK")
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours = r.ru_utime + r.ru_stime - self._ours
        busy = (_busy_jiffies() - self._busy) / hz
        self.load = Load(wall, busy / wall, ours / wall)
