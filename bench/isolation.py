"""Isolation: ingest and API reads while analysts run slow SQL (issue 12).

A real ``millrace run`` (simulator ingesting at a fixed rate, API on 127.0.0.1) is
measured twice for the same time: idle, then while ``queries`` slow analyst queries are
sent at once to ``POST /api/v1/sql`` (each bounded by ``api.sql_timeout_s``). Per phase:

- skipped simulator ticks (ticks the connector dropped because it fell behind) and the
  readings it published per second;
- ingest-to-queryable latency: a probe ``POST /identities/probe-0/data`` of one reading
  stamped now, then ``GET /signals/latest?identities=probe-0`` until it shows (upper
  bound: includes the polls); and the ingest POST's own latency;
- ``GET /signals/latest?limit=1000`` latency (p50, p90, p99, max), sent back to back with the
  probe's polls from one client;
- CPU of the millrace process and of the whole machine (other processes share it).

``python -m bench.isolation --seconds 10`` runs it alone; ``bench.run --only isolation``
runs it as a group; ``tests/test_isolation_e2e.py`` asserts on it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.machine import _busy_jiffies
from bench.procstat import cpu_seconds

Figures = dict[str, tuple[float, str]]
ROOT = Path(__file__).resolve().parents[1]
KEY = "isolation-bench-admin-key-0123456789"
PROBE = "probe-0"

#: an analyst query that runs until its time limit (1000 hashes per reading: ~20 s on
#: one thread for a million readings) in little memory; one allowed table, a subquery
#: and a join, no table function
SLOW_SQL = (
    "SELECT count() FROM millrace.readings AS a "
    "CROSS JOIN (SELECT value FROM millrace.readings LIMIT 1000) AS b "
    "WHERE sipHash64(a.value, b.value) % 7 = 3"
)


def config_yaml(
    port: int,
    devices: int,
    signals: int,
    interval_ms: int,
    sql_timeout_s: float,
    api: dict[str, Any] | None = None,
) -> str:
    extra = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in (api or {}).items())
    return f"""
simulator:
  devices: {devices}
  signals: {signals}
  interval_ms: {interval_ms}
  identity_prefix: "sim-"
api:
  port: {port}
  sql_timeout_s: {sql_timeout_s}
{extra}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def millrace(config: Path, data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """``millrace run`` with the bench's admin key; stopped (SIGTERM) on leaving."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "millrace.pipeline.cli.main", "run"),
            *("--config", str(config), "--data-dir", str(data_dir)),
        ],
        cwd=ROOT,
        env={**os.environ, "MILLRACE_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if proc.returncode != 0:
            print(f"millrace run exited {proc.returncode}:\n{out[-4000:]}", file=sys.stderr)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Phase:
    """What one phase measured."""

    wall_s: float = 0.0
    latest_ms: list[float] = field(default_factory=list)
    ingest_ms: list[float] = field(default_factory=list)
    queryable_s: list[float] = field(default_factory=list)
    unseen_probes: int = 0
    ticks: int = 0
    skipped_ticks: int = 0
    readings: int = 0
    lag_records: int = 0
    millrace_cores: float = 0.0
    machine_cores: float = 0.0

    def figures(self, prefix: str) -> Figures:
        p = prefix
        return {
            f"{p}_readings_per_s": (self.readings / self.wall_s, "readings/s"),
            f"{p}_skipped_ticks": (float(self.skipped_ticks), "ticks"),
            f"{p}_queryable_p50_s": (_pct(self.queryable_s, 0.5), "s"),
            f"{p}_queryable_max_s": (max(self.queryable_s, default=float("nan")), "s"),
            f"{p}_probes": (float(len(self.queryable_s)), "probes"),
            f"{p}_unseen_probes": (float(self.unseen_probes), "probes"),
            f"{p}_ingest_post_p50_ms": (_pct(self.ingest_ms, 0.5), "ms"),
            f"{p}_ingest_post_max_ms": (max(self.ingest_ms, default=float("nan")), "ms"),
            f"{p}_latest_1000_p50_ms": (_pct(self.latest_ms, 0.5), "ms"),
            f"{p}_latest_1000_p90_ms": (_pct(self.latest_ms, 0.9), "ms"),
            f"{p}_latest_1000_p99_ms": (_pct(self.latest_ms, 0.99), "ms"),
            f"{p}_latest_1000_max_ms": (max(self.latest_ms, default=float("nan")), "ms"),
            f"{p}_latest_requests": (float(len(self.latest_ms)), "requests"),
            f"{p}_lag_records": (float(self.lag_records), "records"),
            f"{p}_millrace_cores": (self.millrace_cores, "cores"),
            f"{p}_other_cores": (max(0.0, self.machine_cores - self.millrace_cores), "cores"),
        }


def _simulator(status: dict[str, Any]) -> dict[str, Any]:
    for c in status["connectors"]:
        if c["name"] == "simulator":  # the simulator: section's connection
            stats: dict[str, Any] = c["metrics"]
            return stats
    raise LookupError("no simulator in /status")


def _shows(client: httpx.Client, value: int) -> bool:
    r = client.get("/signals/latest", params={"identities": PROBE})
    r.raise_for_status()
    return any(row["value"] == value for row in r.json()["data"])


def measure_phase(client: httpx.Client, pid: int, seconds: float, pause_s: float = 0.02) -> Phase:
    """Probe ingest and reads for ``seconds``; counters from ``/status`` around it."""
    phase = Phase()
    before = client.get("/status").json()["data"]
    cpu0, busy0, t0 = cpu_seconds(pid), _busy_jiffies(), time.monotonic()
    seq = 0
    probe: tuple[int, float] | None = None  # (value, wall time of the POST)
    while time.monotonic() - t0 < seconds:
        if probe is None:
            seq += 1
            sent = time.time()
            r = client.post(
                f"/identities/{PROBE}/data",
                json=[{"timestamp": int(sent * 1e6), "values": {"probe": seq}}],
            )
            phase.ingest_ms.append((time.time() - sent) * 1000)
            r.raise_for_status()
            probe = (seq, sent)
        started = time.perf_counter()
        r = client.get("/signals/latest", params={"limit": 1000})
        phase.latest_ms.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
        if _shows(client, probe[0]):
            phase.queryable_s.append(time.time() - probe[1])
            probe = None
        time.sleep(pause_s)
    phase.wall_s = time.monotonic() - t0
    phase.millrace_cores = (cpu_seconds(pid) - cpu0) / phase.wall_s
    phase.machine_cores = (_busy_jiffies() - busy0) / os.sysconf("SC_CLK_TCK") / phase.wall_s
    after = client.get("/status").json()["data"]
    if probe is not None:
        # the last probe is followed until it shows (or 10 s), outside the phase
        while not _shows(client, probe[0]):
            if time.time() - probe[1] > 10:
                phase.unseen_probes = 1
                break
            time.sleep(pause_s)
        else:
            phase.queryable_s.append(time.time() - probe[1])
    b, a = _simulator(before), _simulator(after)
    phase.ticks = a["ticks"] - b["ticks"]
    phase.skipped_ticks = a["skipped_ticks"] - b["skipped_ticks"]
    phase.readings = a["readings"] - b["readings"]
    phase.lag_records = int(after["lag_records"])
    return phase


@dataclass
class Analysts:
    """Threads sending ``sql`` once each, at the same moment, one viewer key each (so
    that the per-key limit does not decide how many run)."""

    base: str
    keys: list[str]
    sql: str = SLOW_SQL
    answers: list[tuple[int, str, float]] = field(default_factory=list)  # status, code, s
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        go = threading.Barrier(len(self.keys))
        lock = threading.Lock()

        def one(key: str) -> None:
            with httpx.Client(
                base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=120
            ) as c:
                go.wait()
                t = time.monotonic()
                try:
                    r = c.post("/sql", json={"query": self.sql})
                    code = r.json().get("error", {}).get("code", "ok") if r.content else "ok"
                    answer = (r.status_code, str(code), time.monotonic() - t)
                except httpx.HTTPError as exc:
                    answer = (0, type(exc).__name__, time.monotonic() - t)
                with lock:
                    self.answers.append(answer)

        self._threads = [
            threading.Thread(target=one, args=(key,), daemon=True) for key in self.keys
        ]
        for t in self._threads:
            t.start()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def figures(self) -> Figures:
        codes = [code for _, code, _ in self.answers]
        return {
            "isolation_sql_queries": (float(len(self.keys)), "queries"),
            "isolation_sql_timed_out": (float(codes.count("timeout")), "queries"),
            "isolation_sql_completed": (float(codes.count("ok")), "queries"),
            "isolation_sql_refused_429": (
                float(sum(1 for s, _, _ in self.answers if s == 429)),
                "queries",
            ),
            "isolation_sql_other": (
                float(sum(1 for c in codes if c not in ("timeout", "ok", "too_many_queries"))),
                "queries",
            ),
            "isolation_sql_median_s": (
                statistics.median(s for _, _, s in self.answers) if self.answers else 0.0,
                "s",
            ),
        }


def wait_until_up(client: httpx.Client, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.get("/status").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("millrace run did not come up")
        time.sleep(0.2)


def create_probe(client: httpx.Client, timeout_s: float = 120) -> None:
    """Create the probe identity. On a loaded machine the write may outlast the API's
    read-your-writes wait (it then answers 404 from the pre-write view): wait for it."""
    r = client.post("/identities", json={"identity": PROBE})
    assert r.status_code in (201, 404, 409), r.text
    deadline = time.monotonic() + timeout_s
    while client.get(f"/identities/{PROBE}").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"identity {PROBE} was not applied")
        time.sleep(0.2)


@dataclass
class Run:
    """Both phases and the analysts' answers."""

    idle: Phase
    load: Phase
    analysts: Analysts
    rate: float

    def figures(self) -> Figures:
        figs: Figures = {"isolation_rate_readings_per_s": (self.rate, "readings/s")}
        figs.update(self.idle.figures("isolation_idle"))
        figs.update(self.load.figures("isolation_load"))
        figs.update(self.analysts.figures())
        return figs


def run(
    workdir: Path,
    *,
    devices: int = 1000,
    signals: int = 25,
    interval_ms: int = 200,
    seconds: float = 10.0,
    warmup_s: float = 5.0,
    queries: int = 7,
    sql_timeout_s: float = 10.0,
    api: dict[str, Any] | None = None,
    log: Any = None,
) -> Run:
    """Start ``millrace run`` in ``workdir``, warm up, measure idle then loaded."""
    port = free_port()
    cfg = workdir / "isolation.yaml"
    cfg.write_text(config_yaml(port, devices, signals, interval_ms, sql_timeout_s, api))
    base = f"http://127.0.0.1:{port}/api/v1"
    say = log or (lambda msg: None)
    with (
        millrace(cfg, workdir / "data") as proc,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c,
    ):
        wait_until_up(c)
        create_probe(c)
        time.sleep(warmup_s)  # tables filled, caches warm
        say("idle phase")
        idle = measure_phase(c, proc.pid, seconds)
        keys = []
        for i in range(queries):
            r = c.post("/keys", json={"name": f"analyst-{i}", "role": "viewer"})
            r.raise_for_status()
            keys.append(r.json()["data"]["key"])
        analysts = Analysts(base, keys)
        say(f"{queries} analyst queries")
        analysts.start()
        time.sleep(0.5)  # they are running
        load = measure_phase(c, proc.pid, seconds)
        analysts.join(4 * sql_timeout_s)
    rate = devices * signals * 1000 / interval_ms
    return Run(idle, load, analysts, rate)


def measure(seconds: float, workdir: Path, rate: float | None = None) -> Figures:
    """The bench group: 25-signal devices every 200 ms, as many as give ``rate``."""
    devices = max(1, round((rate or 125_000) * 0.2 / 25))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        result = run(Path(tmp), devices=devices, seconds=seconds)
    return result.figures()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--signals", type=int, default=25)
    parser.add_argument("--interval-ms", type=int, default=200)
    parser.add_argument("--queries", type=int, default=7)
    parser.add_argument("--sql-timeout-s", type=float, default=10.0)
    parser.add_argument(
        "--api", default="{}", help='api settings of the config, JSON: {"sql_max_threads": 1}'
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(
            Path(tmp),
            devices=args.devices,
            signals=args.signals,
            interval_ms=args.interval_ms,
            seconds=args.seconds,
            queries=args.queries,
            sql_timeout_s=args.sql_timeout_s,
            api=json.loads(args.api),
            log=lambda m: print(f"# {m}", file=sys.stderr, flush=True),
        )
    figs = result.figures()
    for name, (value, unit) in figs.items():
        print(f"{name}: {value:.6g} {unit}")
    print(json.dumps([list(a) for a in result.analysts.answers]), file=sys.stderr)


if __name__ == "__main__":
    main()
