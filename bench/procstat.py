"""Per-process figures from ``/proc`` (Linux; psutil is not a dependency): resident
memory, CPU time, and an RSS sampler that runs in a thread of its own (so a blocked
event loop does not delay the samples).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

Figures = dict[str, tuple[float, str]]
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (this process by default); 0 once it has ended."""
    try:
        with open(f"/proc/{pid or 'self'}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


def rss_anon_bytes(pid: int | None = None) -> int:
    """The anonymous part of the RSS (heap: Python objects, chDB's caches), without
    file pages mapped into memory (e.g. log segments); 0 once the process has ended."""
    try:
        with open(f"/proc/{pid or 'self'}/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of ``pid`` (every thread); 0.0 once it has ended."""
    try:
        with open(f"/proc/{pid or 'self'}/stat", "rb") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # the command name (field 2) may hold spaces: fields after its closing ')'
    fields = text[text.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class RssSampler:
    """Samples the summed RSS of some processes every ``interval_s`` in a daemon thread
    (``with RssSampler(...) as s:``); :meth:`figures` summarises the samples."""

    def __init__(self, pids: Callable[[], Iterable[int | None]], interval_s: float = 5.0) -> None:
        self.pids = pids
        self.interval_s = interval_s
        # (seconds since start, RSS bytes, anonymous RSS bytes)
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._t0 = 0.0

    def _sample(self) -> None:
        pids = list(self.pids())
        total = sum(rss_bytes(pid) for pid in pids)
        anon = sum(rss_anon_bytes(pid) for pid in pids)
        self.samples.append((time.perf_counter() - self._t0, total, anon))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._t0 = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def figures(self, prefix: str) -> Figures:
        """First, last and max RSS (MiB), and the slope (MiB/min, least squares) over
        the samples after the first fifth of the run (start-up and warm-up growth); the
        last anonymous RSS and its slope (file pages mapped in excluded)."""
        if not self.samples:
            return {}
        mib = [(t, b / 2**20) for t, b, _ in self.samples]
        anon = [(t, a / 2**20) for t, _, a in self.samples]
        end = mib[-1][0]
        steady = [(t, m) for t, m in mib if t >= end / 5] or mib
        steady_anon = [(t, m) for t, m in anon if t >= end / 5] or anon
        return {
            f"{prefix}_rss_anon_last_mib": (anon[-1][1], "MiB"),
            f"{prefix}_rss_anon_slope_mib_per_min": (60 * slope(steady_anon), "MiB/min"),
            f"{prefix}_rss_first_mib": (mib[0][1], "MiB"),
            f"{prefix}_rss_last_mib": (mib[-1][1], "MiB"),
            f"{prefix}_rss_max_mib": (max(m for _, m in mib), "MiB"),
            f"{prefix}_rss_slope_mib_per_min": (60 * slope(steady), "MiB/min"),
            f"{prefix}_rss_samples": (float(len(mib)), "samples"),
        }


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points (0.0 for fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx
