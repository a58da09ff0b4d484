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


def describe() -> dict[str, str]:
    """CPU model, cores, RAM, OS, Python and library versions, date."""
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
