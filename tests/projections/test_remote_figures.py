"""What a distributed API process reads of the other processes (projections.remote_figures),
folded by the real status fold into chDB: the connections as their connectors reported
them, and the figures of the workers whose heartbeat is recent and running (a stale one
and a stopped one left out; a connect runner's heartbeat carries no figures)."""

from __future__ import annotations

import asyncio
from typing import Any

from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.events import status_event
from millrace.pipeline.heartbeat import RunnerHeartbeat
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.status import StatusProcessor
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.projections.remote_figures import stored_connectors, worker_figures
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

NOW = 1_767_225_600_000_000


def beat(name: str, ts: int, state: str, figures: dict[str, float] | None) -> dict[str, Any]:
    hb = RunnerHeartbeat(
        MemoryEventPublisher(),
        name,
        10.0,
        clock=lambda: ts,
        figures=(lambda: figures) if figures is not None else None,
    )
    return hb.event(state)


async def fold(store: ChdbStore, events: list[dict[str, Any]]) -> None:
    log = MemoryEventLog()
    await LogPublisher(log).publish("status", [(e["resource_id"], e) for e in events])
    await EmbeddedRuntime(log, ProjectionWriter(store), [StatusProcessor()]).run_until_idle()


def test_connections_and_fresh_running_workers(store: ChdbStore) -> None:
    figures = {"records": 12, "readings": 30, "paused": 1}
    events = [
        beat("w1/process", NOW - 5_000_000, "running", figures),
        beat("w2/process", NOW - 60_000_000, "running", {"records": 99}),  # stale
        beat("w3/process", NOW - 1_000_000, "stopped", {"records": 7}),  # stopped
        beat("edge", NOW - 1_000_000, "running", None),  # a connect runner: no figures
        status_event(
            "modbus:plc-1",
            service_id="svc",
            resource_type="connection",
            desired_state="stopped",
            current_state="stopped",
            info="stopped by an operator",
            runner="edge",
            ts_us=NOW - 2_000_000,
            metrics={"readings": 41.0, "reconnects": 2.0},
        ),
    ]
    asyncio.run(fold(store, events))

    assert worker_figures(store, NOW - 35_000_000) == [
        {
            "runner": "w1/process",
            "ts_us": NOW - 5_000_000,
            "figures": {k: float(v) for k, v in figures.items()},
        }
    ]
    [conn] = stored_connectors(store)
    assert conn == {
        "name": "plc-1",
        "protocol": "modbus",
        "resource_id": "modbus:plc-1",
        "service_id": "svc",
        "desired_state": "stopped",
        "current_state": "stopped",
        "info": "stopped by an operator",
        "runner": "edge",
        "ts_us": NOW - 2_000_000,
        "metrics": {"readings": 41.0, "reconnects": 2.0},
    }
