"""HTTP ingest throughput: ``POST /api/v1/identities/{id}/data`` from several clients.

A real ``millrace run`` (no simulator; API on 127.0.0.1) receives batches of
``samples`` samples x ``signals`` signals from ``clients`` client processes, each
sending back to back over one keep-alive connection for ``seconds`` seconds (bodies
built before the clock starts, so the clients' own JSON work is not in the figure;
every sample has its own timestamp, every request its own identity out of 100 per
client). Figures:

- ``http_ingest_accepted_readings_per_s``: readings in 202 answers / the sending time
  (the API answers 202 once the log has the batch);
- ``http_ingest_landed_readings_per_s``: the same readings / the time until
  ``millrace.readings`` holds every one of them (asked through ``POST /api/v1/sql``),
  i.e. ingest through the fold into chDB;
- ``http_ingest_request_p50_ms`` / ``_p99_ms``: one request's latency at the client;
- ``http_ingest_server_cpu_us_per_reading``: CPU of the ``millrace run`` process
  (every thread) from the first request until the last reading landed / readings;
- ``http_ingest_non_202``: answers other than 202 (must be 0).

On this 2-core machine the clients share the cores with the server: their CPU is
reported (``http_ingest_client_cores``) so the server's share can be read off.

``python -m bench.http_ingest`` runs it alone; ``bench.run --only http_ingest`` as a
group.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.isolation import KEY, free_port, millrace, wait_until_up
from bench.procstat import cpu_seconds

Figures = dict[str, tuple[float, str]]
IDENTITIES_PER_CLIENT = 100


def bodies(client: int, samples: int, signals: int, count: int, start_us: int) -> list[bytes]:
    """``count`` request bodies of ``samples`` samples, distinct timestamps."""
    names = [f"s{i}" for i in range(signals)]
    out = []
    ts = start_us + client * 1_000_000_000
    for _ in range(count):
        rows = []
        for k in range(samples):
            ts += 1000
            rows.append({"timestamp": ts, "values": {n: float(k + j) for j, n in enumerate(names)}})
        out.append(orjson.dumps(rows))
    return out


def _client(
    index: int,
    base: str,
    samples: int,
    signals: int,
    seconds: float,
    start: Any,
    out: Any,
) -> None:
    """One client process: sends until ``seconds`` after ``start`` is set."""
    pool = bodies(index, samples, signals, 50, int(time.time() * 1e6) - 3_600_000_000)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    latencies: list[float] = []
    accepted = other = 0
    cpu0 = cpu_seconds()
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        start.wait()
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            identity = f"http-{index}-{n % IDENTITIES_PER_CLIENT}"
            # a body sent again carries another batch id (no Idempotency-Key): the
            # timestamps repeat, the readings count twice in the table, as sent
            t0 = time.perf_counter()
            r = client.post(f"/identities/{identity}/data", content=pool[n % len(pool)])
            latencies.append(time.perf_counter() - t0)
            if r.status_code == 202:
                accepted += samples * signals
            else:
                other += 1
            n += 1
    out.put((accepted, other, latencies, cpu_seconds() - cpu0))


def _landed(client: httpx.Client) -> int:
    sql = "SELECT count() FROM millrace.readings WHERE startsWith(identity, 'http-')"
    r = client.post("/sql", json={"query": sql})
    r.raise_for_status()
    return int(r.json()["rows"][0][0])


def measure(
    seconds: float,
    workdir: Path,
    *,
    clients: int = 4,
    samples: int = 1000,
    signals: int = 1,
    timeout_s: float = 300.0,
) -> Figures:
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    auth = {"Authorization": f"Bearer {KEY}"}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        cfg = Path(tmp) / "http_ingest.yaml"
        # no simulator (the default runs one of 100 devices): the clients' readings only
        cfg.write_text(f"simulator:\n  devices: 0\napi:\n  port: {port}\n")
        with (
            millrace(cfg, Path(tmp) / "data") as proc,
            httpx.Client(base_url=base, headers=auth, timeout=60) as c,
        ):
            wait_until_up(c)
            ctx = mp.get_context("spawn")
            start, out = ctx.Event(), ctx.Queue()
            procs = [
                ctx.Process(target=_client, args=(i, base, samples, signals, seconds, start, out))
                for i in range(clients)
            ]
            for p in procs:
                p.start()
            time.sleep(3.0)  # the clients built their bodies
            cpu0 = cpu_seconds(proc.pid)
            t0 = time.monotonic()
            start.set()
            results = [out.get(timeout=seconds + 120) for _ in procs]
            sent_s = time.monotonic() - t0
            for p in procs:
                p.join(30)
            accepted = sum(r[0] for r in results)
            deadline = time.monotonic() + timeout_s
            while (landed := _landed(c)) < accepted and time.monotonic() < deadline:
                time.sleep(0.05)
            landed_s = time.monotonic() - t0
            server_cpu = cpu_seconds(proc.pid) - cpu0
    latencies = sorted(x for r in results for x in r[2])
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else 0.0
    return {
        "http_ingest_accepted_readings_per_s": (accepted / sent_s, "readings/s"),
        "http_ingest_landed_readings_per_s": (
            accepted / landed_s if landed >= accepted else 0.0,
            "readings/s",
        ),
        "http_ingest_unlanded": (float(max(0, accepted - landed)), "readings"),
        "http_ingest_request_p50_ms": (
            1000 * statistics.median(latencies) if latencies else 0.0,
            "ms",
        ),
        "http_ingest_request_p99_ms": (1000 * p99, "ms"),
        "http_ingest_server_cpu_us_per_reading": (
            1e6 * server_cpu / accepted if accepted else 0.0,
            "µs",
        ),
        "http_ingest_client_cores": (sum(r[3] for r in results) / sent_s, "cores"),
        "http_ingest_non_202": (float(sum(r[1] for r in results)), "answers"),
        "http_ingest_batch_readings": (float(samples * signals), "readings"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--signals", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(
            args.seconds,
            Path(tmp),
            clients=args.clients,
            samples=args.samples,
            signals=args.signals,
        )
    for name, (value, unit) in figures.items():
        print(f"{name:45s} {value:14,.1f} {unit}")


if __name__ == "__main__":
    main()
