"""A real ``millrace process`` worker (faust, chDB in its data directory, librdkafka's
mock cluster) pauses on the pause event on the audit topic — what
``POST /api/v1/pipeline/pause`` appends — and folds nothing more until the resume
event, then everything: counts and sums against what the test produced."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from millrace.pipeline.events import audit_event
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.log.kafka import KafkaEventLog, KafkaLogConfig
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.faust_runtime import FaustRuntimeConfig
from millrace.pipeline.topics import AUDIT, TELEMETRY
from tests.test_distributed_cli import _until_folded

pytestmark = [pytest.mark.integration]

T0 = 1_767_225_600_000_000


def batches(start: int, n: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            f"dev-{i % 3}",
            {
                "identity": f"dev-{i % 3}",
                "source": "t",
                "received_us": T0,
                "samples": [{"ts_us": T0 + i * 1_000_000, "values": {"x": float(i)}, "quality": 0}],
            },
        )
        for i in range(start, start + n)
    ]


def control(action: str) -> dict[str, Any]:
    return audit_event(
        actor="test",
        actor_role="operator",
        action=action,
        target_type="pipeline",
        target_id="runtime",
    )


async def publish(bootstrap: str, prefix: str, topic: str, events: list[Any]) -> None:
    log = KafkaEventLog(KafkaLogConfig(bootstrap_servers=bootstrap, topic_prefix=prefix))
    await log.start()
    try:
        await LogPublisher(log).publish(topic, events)
    finally:
        await log.close()


async def committed(bootstrap: str, prefix: str) -> int:
    group = FaustRuntimeConfig(bootstrap=bootstrap).consumer_name
    log = KafkaEventLog(KafkaLogConfig(bootstrap_servers=bootstrap, topic_prefix=prefix))
    await log.start((TELEMETRY,))
    try:
        total = 0
        for p in range(log.partitions(TELEMETRY)):
            total += await log.committed(group, TopicPartition(TELEMETRY, p)) or 0
        return total
    finally:
        await log.close()


def _wait_for_line(output: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while text not in output.read_text(errors="replace"):
        assert proc.poll() is None, output.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, f"no {text!r}: " + output.read_text()[-3000:]
        time.sleep(0.2)


def test_a_worker_pauses_and_resumes_through_the_log(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"pause-{os.getpid()}-"
    asyncio.run(publish(kafka_bootstrap, prefix, TELEMETRY, batches(0, 30)))
    data = tmp_path / "data"
    env = {
        **os.environ,
        "MILLRACE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MILLRACE_TOPIC_PREFIX": prefix,
    }
    env.pop("MILLRACE_CLICKHOUSE_URL", None)
    output = tmp_path / "process.log"
    with open(output, "wb") as out_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "millrace.pipeline.cli.main", "process", "--data-dir", data],
            env=env,
            stdout=out_file,
            stderr=subprocess.STDOUT,
        )
    try:
        asyncio.run(_until_folded(kafka_bootstrap, prefix, proc, output))
        assert asyncio.run(committed(kafka_bootstrap, prefix)) == 30
        asyncio.run(publish(kafka_bootstrap, prefix, AUDIT, [("runtime", control("pause"))]))
        _wait_for_line(output, "runtime paused through the log", proc)
        asyncio.run(publish(kafka_bootstrap, prefix, TELEMETRY, batches(30, 30)))
        # the worker took the new records and holds them (a worker ignoring the pause
        # never writes this line)
        _wait_for_line(output, "held: the runtime is paused", proc)
        assert asyncio.run(committed(kafka_bootstrap, prefix)) == 30
        asyncio.run(publish(kafka_bootstrap, prefix, AUDIT, [("runtime", control("resume"))]))
        asyncio.run(_until_folded(kafka_bootstrap, prefix, proc, output))
    finally:
        proc.terminate()
        proc.wait(60)
    assert proc.returncode == 0, output.read_text(errors="replace")[-3000:]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "millrace.pipeline.cli.main",
            "sql",
            "SELECT count(), sum(value) FROM millrace.readings",
            "--data-dir",
            str(data),
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == f"60,{float(sum(range(60)))}".replace(".0", "")
