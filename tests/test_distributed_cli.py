"""``millrace connect`` and ``millrace api`` as processes, against librdkafka's mock
cluster (started in a helper process by the ``kafka_bootstrap`` fixture)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.kafka import KafkaEventLog, KafkaLogConfig
from millrace.pipeline.telemetry_columns import samples_of
from millrace.pipeline.topics import TELEMETRY
from tests.distributed import Role, kafka_env, publish, readings_sum, until_folded

pytestmark = [pytest.mark.integration]


def test_connect_produces_simulator_batches_to_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("simulator:\n  devices: 5\n  signals: 3\n  interval_ms: 100\n")
    prefix = f"connect-{os.getpid()}-"

    async def read_all() -> list[dict[str, object]]:
        log = KafkaEventLog(KafkaLogConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix))
        await log.start(("telemetry",))
        events = []
        try:
            for p in range(log.partitions("telemetry")):
                offset = 0
                while recs := await log.read("telemetry", p, offset, 500):
                    events += [default_codec().decode("telemetry", r.value) for r in recs]
                    offset = recs[-1].offset + 1
        finally:
            await log.close()
        return events

    def ticks(events: list[dict[str, object]]) -> dict[str, int]:
        n: dict[str, int] = {}
        for ev in events:
            n[str(ev["identity"])] = n.get(str(ev["identity"]), 0) + len(samples_of(ev))  # type: ignore[arg-type]
        return n

    connect = Role(
        "connect", ["connect", "--config", config], kafka_env(kafka_bootstrap, prefix), tmp_path
    )
    try:
        # until every device's first ten ticks are on Kafka (not a fixed time: a slow
        # start-up left too few)
        deadline = time.monotonic() + 120
        while len(n := ticks(asyncio.run(read_all()))) < 5 or min(n.values()) < 10:
            connect.alive()
            assert time.monotonic() < deadline, n
            time.sleep(0.3)
    finally:
        code = connect.stop()
    assert code == 0, connect.output()[-3000:]

    events = asyncio.run(read_all())
    by_identity: dict[str, list[int]] = {}
    for ev in events:
        # the simulator is a batching connector: a batch holds one or more ticks
        assert len(samples_of(ev)) >= 1  # type: ignore[arg-type]
        for sample in samples_of(ev):  # type: ignore[attr-defined]
            assert len(sample["values"]) == 3
            by_identity.setdefault(str(ev["identity"]), []).append(int(sample["ts_us"]))
    assert sorted(by_identity) == [f"sim-{i}" for i in range(5)]
    for stamps in by_identity.values():
        assert len(stamps) >= 10
        # one device, one partition: in order, and no tick twice
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_api_without_a_clickhouse_url_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLRACE_")}
    r = subprocess.run(
        [sys.executable, "-m", "millrace.pipeline.cli.main", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 1
    assert "MILLRACE_CLICKHOUSE_URL" in r.stderr


def test_process_worker_folds_kafka_into_projections(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`millrace process` (a faust worker, chDB in --data-dir) projects what is on
    Kafka; counts and sums compared with what the test produced."""
    prefix = f"process-{os.getpid()}-"
    t0 = 1_767_225_600_000_000
    batches = [
        (
            f"dev-{i % 3}",
            {
                "identity": f"dev-{i % 3}",
                "source": "t",
                "received_us": t0,
                "samples": [{"ts_us": t0 + i * 1_000_000, "values": {"x": float(i)}, "quality": 0}],
            },
        )
        for i in range(90)
    ]
    asyncio.run(publish(kafka_bootstrap, prefix, TELEMETRY, batches))
    data = tmp_path / "data"
    worker = Role(
        "process", ["process", "--data-dir", data], kafka_env(kafka_bootstrap, prefix), tmp_path
    )
    try:
        until_folded(kafka_bootstrap, prefix, worker)
    finally:
        code = worker.stop()
    assert code == 0, worker.output()[-3000:]
    assert readings_sum(data) == f"90,{float(sum(range(90)))}".replace(".0", "")
