"""A real ``millrace run`` killed with SIGKILL mid-ingest, restarted, and compared
with counts and aggregates computed here from the log itself (the source of truth)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.telemetry_columns import samples_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "crash-test-admin-key-0123456789"
MINUTE = 60_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Engine:
    def __init__(self, data: Path, config: Path) -> None:
        self.data, self.config = data, config
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}/api/v1"

    def start(self) -> None:
        env = {**os.environ, "MILLRACE_API_KEY": KEY}
        with open(self.data.parent / "engine.log", "ab") as errlog:
            self.proc = self._spawn(env, errlog)
        self._wait_up()

    def _spawn(self, env: dict[str, str], errlog: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "millrace.pipeline.cli.main",
                "run",
                "--data-dir",
                str(self.data),
                "--port",
                str(self.port),
                "--config",
                str(self.config),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )

    def _wait_up(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.data.parent / "engine.log").read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/me", headers=self.headers, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("engine did not come up")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEY}"}

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0

    def wait_caught_up(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = httpx.get(f"{self.url}/status", headers=self.headers, timeout=5).json()["data"]
            if st["lag_records"] == 0:
                return
            time.sleep(0.2)
        raise AssertionError("projections did not catch up")

    def sql(self, query: str) -> list[list[Any]]:
        r = httpx.post(f"{self.url}/sql", headers=self.headers, json={"query": query}, timeout=30)
        assert r.status_code == 200, r.text
        return list(r.json()["rows"])


T0 = (time.time_ns() // 1000 // MINUTE - 120) * MINUTE


def batch(i: int) -> tuple[str, list[dict[str, Any]]]:
    identity = f"dev-{i % 4}"
    samples = [
        {
            "timestamp": T0 + (i * 7 + j) * 1_000_000 * 3,
            "values": {"seq": i, "t": round((i * 31 + j * 7) % 97 / 4, 2), "on": (i + j) % 3 == 0},
        }
        for j in range(20)
    ]
    return identity, samples


class Ingester(threading.Thread):
    """Posts batches in order until told to stop or a request fails."""

    def __init__(
        self, engine: Engine, start: int, stop_at: int, keyed: bool = False, timeout: float = 10
    ) -> None:
        super().__init__(daemon=True)
        self.engine, self.next, self.stop_at = engine, start, stop_at
        self.keyed = keyed  # send Idempotency-Key: batch-<i>
        self.timeout = timeout
        self.acked: list[int] = []
        self.error: httpx.HTTPError | None = None  # what ended it early

    def run(self) -> None:
        with httpx.Client(headers=self.engine.headers, timeout=self.timeout) as client:
            while self.next < self.stop_at:
                identity, samples = batch(self.next)
                headers = {"Idempotency-Key": f"batch-{self.next}"} if self.keyed else {}
                try:
                    r = client.post(
                        f"{self.engine.url}/identities/{identity}/data",
                        json=samples,
                        headers=headers,
                    )
                except httpx.HTTPError as exc:
                    self.error = exc  # the engine was killed (or, unasked, too slow)
                    return
                assert r.status_code == 202, r.text
                self.acked.append(self.next)
                self.next += 1


def from_log(
    log_dir: Path,
) -> tuple[
    dict[tuple[str, str], tuple[int, float]],
    dict[tuple[str, str, int], tuple[int, float, float, float]],
    set[int],
]:
    codec = default_codec()
    log = LocalEventLog(log_dir)
    log.open()
    readings: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    seqs: set[int] = set()
    try:
        for p in range(log.partitions("telemetry")):
            offset = 0
            while True:
                recs = log.read_sync("telemetry", p, offset, 1000)
                if not recs:
                    break
                for rec in recs:
                    ev = codec.decode("telemetry", rec.value)
                    for s in samples_of(ev):
                        seqs.add(int(s["values"]["seq"]))
                        for sig, v in s["values"].items():
                            readings[(ev["identity"], sig)].append((s["ts_us"], float(v)))
                offset = recs[-1].offset + 1
    finally:
        log.close_sync()
    per_signal = {k: (len(v), sum(x for _, x in v)) for k, v in readings.items()}
    agg: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for (identity, sig), pts in readings.items():
        if sig == "on":
            continue
        for ts, v in pts:
            agg[(identity, sig, (ts - ts % MINUTE) // 1_000_000)].append(v)
    aggs = {k: (len(v), sum(v), min(v), max(v)) for k, v in agg.items()}
    return per_signal, aggs, seqs


Projections = tuple[
    dict[tuple[str, str], tuple[int, float]],
    dict[tuple[str, str, int], tuple[int, float, float, float]],
]


def projections_of(engine: Engine) -> Projections:
    """Count and sum per signal of ``millrace.readings``; count, sum, min and max per
    minute bucket of ``millrace.agg_1m`` (numeric signals)."""
    rows = engine.sql(
        "SELECT identity, signal, count(), sum(value) FROM millrace.readings "
        "GROUP BY identity, signal"
    )
    signals = {(i, s): (int(c), float(v)) for i, s, c, v in rows}
    aggs = engine.sql(
        "SELECT identity, signal, toUnixTimestamp(bucket), sum(count), sum(sum), "
        "min(min), max(max) FROM millrace.agg_1m WHERE signal != 'on' "
        "GROUP BY identity, signal, bucket"
    )
    return signals, {
        (i, s, int(b)): (int(c), float(t), float(lo), float(hi)) for i, s, b, c, t, lo, hi in aggs
    }


def assert_matches_log(got: Projections, log_dir: Path, acked: set[int], total: int) -> None:
    """The projections hold what the log implies, every batch ``0..total`` is on the log
    and every acknowledged one among them: nothing lost, nothing counted twice."""
    got_signals, got_aggs = got
    want_signals, want_aggs, seqs_in_log = from_log(log_dir)
    assert acked <= seqs_in_log, "an acknowledged batch is missing from the log"
    assert seqs_in_log == set(range(total))
    assert set(got_signals) == set(want_signals)
    for k, (n, s) in want_signals.items():
        assert got_signals[k][0] == n, k
        assert got_signals[k][1] == pytest.approx(s, rel=1e-9), k
    assert set(got_aggs) == set(want_aggs)
    for k, (n, s, lo, hi) in want_aggs.items():
        c, t, glo, ghi = got_aggs[k]
        assert (c, glo, ghi) == (n, lo, hi), k
        assert t == pytest.approx(s, rel=1e-9, abs=1e-9), k


def test_kill9_mid_ingest_then_restart_loses_and_doubles_nothing(
    tmp_path: Path, engines: list[Engine]
) -> None:
    config = tmp_path / "millrace.yaml"
    config.write_text("simulator:\n  devices: 0\nruntime:\n  max_records: 50\n")
    engine = Engine(tmp_path / "data", config)
    engines.append(engine)
    total = 600
    acked: set[int] = set()
    start = 0
    for kill_after_acks in (120, 90):
        engine.start()
        ingester = Ingester(engine, start, total)
        ingester.start()
        deadline = time.monotonic() + 60
        while len(ingester.acked) < kill_after_acks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ingester.acked, "nothing was ingested before the kill"
        engine.kill9()  # mid-ingest and, with small batches, mid-projection
        ingester.join(15)
        acked.update(ingester.acked)
        start = ingester.next  # the in-flight batch is sent again: the client's retry
    engine.start()
    ingester = Ingester(engine, start, total)
    ingester.run()
    acked.update(ingester.acked)
    engine.wait_caught_up()
    got = projections_of(engine)
    engine.stop()
    assert_matches_log(got, tmp_path / "data" / "log", acked, total)


def test_run_serves_simulator_data_within_seconds(tmp_path: Path, engines: list[Engine]) -> None:
    """`millrace run` with no config: 100 devices x 10 signals, queryable quickly."""
    config = tmp_path / "c.yaml"
    config.write_text("simulator:\n  devices: 100\n  signals: 10\n  interval_ms: 1000\n")
    engine = Engine(tmp_path / "data", config)
    engines.append(engine)
    t0 = time.monotonic()
    engine.start()
    try:
        deadline = time.monotonic() + 20
        total = 0
        while time.monotonic() < deadline:
            r = httpx.get(f"{engine.url}/signals/latest?limit=5", headers=engine.headers, timeout=5)
            assert r.status_code == 200
            total = r.json()["total"]
            if total == 1000:
                break
            time.sleep(0.25)
        assert total == 1000, f"latest values for 100 x 10 signals, got {total}"
        assert time.monotonic() - t0 < 30
    finally:
        engine.stop()


def from_batches(
    total: int,
) -> tuple[dict[tuple[str, str], tuple[int, float]], dict[tuple[str, str, int], tuple[int, float]]]:
    """Counts and sums per signal and per (signal, minute) of batches 0..total-1, each
    once: what the client sent, computed without the log."""
    readings: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for i in range(total):
        identity, samples = batch(i)
        for s in samples:
            for sig, v in s["values"].items():
                readings[(identity, sig)].append((s["timestamp"], float(v)))
    agg: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for (identity, sig), pts in readings.items():
        if sig == "on":  # booleans have counts but no sums in aggregates
            continue
        for ts, v in pts:
            agg[(identity, sig, (ts - ts % MINUTE) // 1_000_000)].append(v)
    return (
        {k: (len(v), sum(x for _, x in v)) for k, v in readings.items()},
        {k: (len(v), sum(v)) for k, v in agg.items()},
    )


def test_kill9_with_idempotency_keys_stores_every_batch_exactly_once(
    tmp_path: Path, engines: list[Engine]
) -> None:
    """Issue 14: after each kill the client sends the last acknowledged batch and the
    one in flight again with their Idempotency-Keys, to a restarted engine that never
    saw the keys (the first is on the log already, maybe folded): every batch is stored
    exactly once, as the client sent it, though the log holds some twice."""
    config = tmp_path / "millrace.yaml"
    config.write_text("simulator:\n  devices: 0\nruntime:\n  max_records: 50\n")
    engine = Engine(tmp_path / "data", config)
    engines.append(engine)
    total, start = 400, 0
    for kill_after_acks in (90, 70):
        engine.start()
        ingester = Ingester(engine, start, total, keyed=True)
        ingester.start()
        deadline = time.monotonic() + 60
        while len(ingester.acked) < kill_after_acks and time.monotonic() < deadline:
            time.sleep(0.01)
        engine.kill9()
        ingester.join(15)
        # the batch in flight is retried with its key, and the last acknowledged one
        # too (as if its answer had been lost): on the log already, maybe folded
        start = max(0, ingester.next - 1)
    engine.start()
    Ingester(engine, start, total, keyed=True).run()
    engine.wait_caught_up()
    got_signals = {
        (i, s): (int(c), float(v))
        for i, s, c, v in engine.sql(
            "SELECT identity, signal, count(), sum(value) FROM millrace.readings "
            "GROUP BY identity, signal"
        )
    }
    got_aggs = {
        (i, s, int(b)): (int(c), float(t))
        for i, s, b, c, t in engine.sql(
            "SELECT identity, signal, toUnixTimestamp(bucket), sum(count), sum(sum) "
            "FROM millrace.agg_1m WHERE signal != 'on' GROUP BY identity, signal, bucket"
        )
    }
    engine.stop()
    want_signals, want_aggs = from_batches(total)
    assert set(got_signals) == set(want_signals)
    for k, (n, total_v) in want_signals.items():
        assert got_signals[k][0] == n, k
        assert got_signals[k][1] == pytest.approx(total_v, rel=1e-9, abs=1e-9), k
    assert set(got_aggs) == set(want_aggs)
    for k, (n, total_v) in want_aggs.items():
        assert got_aggs[k][0] == n, k
        assert got_aggs[k][1] == pytest.approx(total_v, rel=1e-9, abs=1e-9), k
