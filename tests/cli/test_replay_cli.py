"""``millrace replay`` against a running ``millrace run`` while a client ingests: the
replay task completes, queries answer throughout and never see fewer readings than
before, and the projections then equal sums computed here from the log itself."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.test_crash_recovery import KEY, Engine, Ingester, free_port, from_log

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Counter(threading.Thread):
    """Counts readings through the API until stopped; keeps errors and drops."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.halt = threading.Event()
        self.errors: list[str] = []
        self.drops: list[tuple[int, int]] = []
        self.answers = 0

    def run(self) -> None:
        seen = 0
        with httpx.Client(headers=self.engine.headers, timeout=30) as client:
            while not self.halt.is_set():
                query = {"query": "SELECT count() FROM millrace.readings"}
                r = client.post(f"{self.engine.url}/sql", json=query)
                if r.status_code != 200:
                    self.errors.append(f"{r.status_code} {r.text[:200]}")
                    continue
                n = int(r.json()["rows"][0][0])
                if n < seen:
                    self.drops.append((seen, n))
                seen = max(seen, n)
                self.answers += 1
                time.sleep(0.01)


def test_replay_through_the_running_engine(tmp_path: Path) -> None:
    config = tmp_path / "millrace.yaml"
    # the configured API port stays free (the engine gets --port): once the engine is
    # stopped, millrace replay finds no engine there and rebuilds offline
    config.write_text(
        f"simulator:\n  devices: 0\nruntime:\n  max_records: 50\napi:\n  port: {free_port()}\n"
    )
    engine = Engine(tmp_path / "data", config)
    try:
        engine.start()
        # nothing kills this engine: an ingest answered late is slow, not lost (a loaded
        # machine once took over 10 s for one while the replay ran)
        ingester = Ingester(engine, 0, 400, timeout=120)
        ingester.start()
        while len(ingester.acked) < 80 and ingester.is_alive():
            time.sleep(0.01)
        counter = Counter(engine)
        counter.start()
        cli = cli_run("replay", "--url", engine.url, "--projection", "readings", "-p", "agg_1m")
        assert cli.returncode == 0, cli.stderr[-3000:]
        assert "replayed" in cli.stdout
        ingester.join(300)
        assert not ingester.is_alive(), f"ingest stuck at batch {ingester.next}"
        assert ingester.error is None, f"batch {ingester.next} failed: {ingester.error!r}"
        assert ingester.acked == list(range(400))
        engine.wait_caught_up()
        counter.halt.set()
        counter.join(30)
        assert counter.errors == []
        assert counter.drops == []
        assert counter.answers > 0
        tasks = httpx.get(f"{engine.url}/replay", headers=engine.headers, timeout=10).json()
        assert [t["status"] for t in tasks["data"]] == ["completed"]
        rows = engine.sql(
            "SELECT identity, signal, count(), sum(value) FROM millrace.readings "
            "GROUP BY identity, signal"
        )
        got = {(i, s): (int(c), float(v)) for i, s, c, v in rows}
        aggs = engine.sql(
            "SELECT identity, signal, toUnixTimestamp(bucket), sum(count), sum(sum), "
            "min(min), max(max) FROM millrace.agg_1m WHERE signal != 'on' "
            "GROUP BY identity, signal, bucket"
        )
        got_aggs = {
            (i, s, int(b)): (int(c), float(t), float(lo), float(hi))
            for i, s, b, c, t, lo, hi in aggs
        }
        engine.stop()
    finally:
        engine.ensure_stopped()
    want, want_aggs, seqs = from_log(tmp_path / "data" / "log")
    assert seqs == set(range(400))
    assert set(got) == set(want)
    for k, (n, total) in want.items():
        assert got[k][0] == n, k
        assert got[k][1] == pytest.approx(total, rel=1e-9), k
    assert set(got_aggs) == set(want_aggs)
    for k, (n, total, lo, hi) in want_aggs.items():
        c, t, glo, ghi = got_aggs[k]
        assert (c, glo, ghi) == (n, lo, hi), k
        assert t == pytest.approx(total, rel=1e-9, abs=1e-9), k
    # the engine stopped: no engine answers, so the same named replay runs offline
    data = str(tmp_path / "data")
    offline = cli_run("replay", "--data-dir", data, "--config", str(config), "-p", "readings")
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert "replayed" in offline.stdout and "task" not in offline.stdout  # not through an API
    counted = cli_run(
        "sql",
        "SELECT identity, signal, count() FROM millrace.readings GROUP BY identity, signal",
        "--data-dir",
        data,
        "--format",
        "csv",
    )
    assert counted.returncode == 0, counted.stderr[-3000:]
    lines = counted.stdout.strip().splitlines()[1:]
    assert {tuple(line.split(",")[:2]): int(line.split(",")[2]) for line in lines} == {
        k: n for k, (n, _) in want.items()
    }


def cli_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "millrace.pipeline.cli.main", *args],
        env={**os.environ, "MILLRACE_API_KEY": KEY},
        capture_output=True,
        text=True,
        timeout=240,
    )
