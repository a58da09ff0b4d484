"""The distributed deployment: two ``millrace connect`` roles (the one assembly, on
Kafka: librdkafka's mock cluster) with different runner names; a service installed for
one runner runs there only, a service for every runner runs in both, a removal stops it
everywhere. The services stage follows the services topic on Kafka."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from millrace.pipeline.cli.assembly import Assembly, distributed_adapters
from millrace.pipeline.cli.config import load_config
from millrace.pipeline.events import service_event
from millrace.pipeline.log.kafka import KafkaEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.stage import run_stages

pytestmark = [pytest.mark.integration]


def sim(sid: str, conn: str) -> str:
    return (
        f"service: {sid}\nconnections:\n  {conn}: {{protocol: simulator, devices: 1,"
        " signals: 1, interval_ms: 100}\n"
    )


async def scenario(bootstrap: str, tmp_path: Path) -> None:
    prefix = f"svc-{os.getpid()}-"
    overrides = {
        ("distributed", "kafka_bootstrap"): bootstrap,
        ("distributed", "topic_prefix"): prefix,
    }
    runners: dict[str, Assembly] = {}
    stop = asyncio.Event()
    tasks = []
    for name in ("edge-1", "edge-2"):
        cfg = load_config(None, {**overrides, ("data_dir",): tmp_path / name})
        adapters = distributed_adapters(cfg, store="optional")
        assert isinstance(adapters.log, KafkaEventLog)
        await adapters.log.start()
        asm = runners[name] = Assembly(cfg, adapters, runner_name=name)
        tasks.append(asyncio.create_task(run_stages(asm.build(["connect"]), stop)))
    publisher = LogPublisher(runners["edge-1"].log)

    async def until(check: object, what: str) -> None:
        for _ in range(600):
            if check():  # type: ignore[operator]
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not reached: {what}")

    def running(name: str) -> set[str]:
        m = runners[name].manager
        return set(m.connectors) if m is not None else set()

    try:
        one = service_event("one", "installed", text=sim("one", "sim-one"), runners=["edge-2"])
        both = service_event("both", "installed", text=sim("both", "sim-both"))
        await publisher.publish("services", [("one", one), ("both", both)])
        await until(lambda: running("edge-2") == {"sim-one", "sim-both"}, "edge-2 runs both")
        await until(lambda: running("edge-1") == {"sim-both"}, "edge-1 runs its share")
        await publisher.publish("services", [("both", service_event("both", "removed"))])
        await until(lambda: running("edge-1") == set(), "removed on edge-1")
        await until(lambda: running("edge-2") == {"sim-one"}, "removed on edge-2")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for asm in runners.values():
            asm.close()
            await asm.log.close()


def test_each_connect_runs_the_services_assigned_to_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    asyncio.run(scenario(kafka_bootstrap, tmp_path))
