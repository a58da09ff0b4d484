"""A real ``millrace process`` worker (faust, chDB in its data directory, librdkafka's
mock cluster) pauses on the pause event on the audit topic — what
``POST /api/v1/pipeline/pause`` appends — and folds nothing more until the resume
event, then everything: counts and sums against what the test produced."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from millrace.pipeline.events import audit_event
from millrace.pipeline.topics import AUDIT, TELEMETRY
from tests.distributed import (
    Role,
    committed_records,
    kafka_env,
    publish,
    readings_sum,
    until_folded,
)

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


def test_a_worker_pauses_and_resumes_through_the_log(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"pause-{os.getpid()}-"
    asyncio.run(publish(kafka_bootstrap, prefix, TELEMETRY, batches(0, 30)))
    data = tmp_path / "data"
    worker = Role(
        "process", ["process", "--data-dir", data], kafka_env(kafka_bootstrap, prefix), tmp_path
    )
    try:
        until_folded(kafka_bootstrap, prefix, worker)
        assert committed_records(kafka_bootstrap, prefix) == 30
        asyncio.run(publish(kafka_bootstrap, prefix, AUDIT, [("runtime", control("pause"))]))
        worker.wait_for_line("runtime paused through the log")
        asyncio.run(publish(kafka_bootstrap, prefix, TELEMETRY, batches(30, 30)))
        # the worker took the new records and holds them (a worker ignoring the pause
        # never writes this line)
        worker.wait_for_line("held: the runtime is paused")
        assert committed_records(kafka_bootstrap, prefix) == 30
        asyncio.run(publish(kafka_bootstrap, prefix, AUDIT, [("runtime", control("resume"))]))
        until_folded(kafka_bootstrap, prefix, worker)
    finally:
        code = worker.stop()
    assert code == 0, worker.output()[-3000:]
    assert readings_sum(data) == f"60,{float(sum(range(60)))}".replace(".0", "")
