"""Operations in the distributed deployment, with the real ``millrace api``,
``connect`` and ``process`` processes on librdkafka's mock cluster (issue 16):

* connector control: ``POST /connectors/{name}/stop|start`` on ``millrace api`` answers
  202 and reaches the connector in ``millrace connect`` through the audit topic; the
  connector's own report (folded by ``millrace process``) then says so;
* figures: ``/health/ready``'s lag is the processing group's Kafka lag (checked against
  the offsets read by the test before and after), ``/metrics`` carries the workers'
  counters from their heartbeats (readings = the rows in the store), the paused state
  from the audit topic and the alarm runner's lag from its checkpoint;
* a ``millrace process`` started while the pipeline is paused starts paused (it folds
  nothing until the resume), then everything lands once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.store.chdb import ChdbStore
from tests.connectors.test_run_config_e2e import free_port
from tests.distributed import (
    Deployment,
    cluster,  # noqa: F401
    deployment,  # noqa: F401
    group_progress,
    publish,
    rows,
)

pytest.importorskip("faust")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = 1_767_225_600_000_000
TOPICS = sorted({t for p in processors() for t in p.topics})
READY_MAX_LAG = 5


def batches(start: int, n: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "ops-dev",
            {
                "identity": "ops-dev",
                "source": "t",
                "received_us": T0,
                "samples": [{"ts_us": T0 + i * 1_000_000, "values": {"x": float(i)}, "quality": 0}],
            },
        )
        for i in range(start, start + n)
    ]


def kafka_lag(d: Deployment) -> int:
    """The processing group's lag over the processors' topics, read by the test."""
    total = 0
    for topic in TOPICS:
        done, end = asyncio.run(group_progress(d.bootstrap, d.prefix, topic))
        total += end - done
    return total


def families(client: httpx.Client, base: str) -> dict[str, Any]:
    text = client.get(f"{base}/metrics").text
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], name: str) -> float:
    return float(fams[name].samples[0].value)


@pytest.mark.timeout(420)
def test_connector_control_figures_and_a_worker_started_paused(
    deployment: Deployment,  # noqa: F811
    store: ChdbStore,
) -> None:
    d = deployment
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = d.start("process", "process", "")
    d.start("api", "api", f"api:\n  port: {port}\n  ready_max_lag: {READY_MAX_LAG}\n")
    connect = d.start(
        "connect",
        "connect",
        "connections:\n  sim: {protocol: simulator, devices: 1, signals: 1, interval_ms: 200,"
        ' identity_prefix: "ops-sim-"}\n',
    )
    with d.api(port, timeout=60) as client:

        def connector() -> dict[str, Any] | None:
            r = client.get("/connectors/sim")
            return r.json()["data"] if r.status_code == 200 else None

        def desired(state: str) -> bool:
            c = connector()
            return c is not None and c["desired_state"] == state

        d.wait(lambda: desired("running"), "the connector's report through the store", 120)

        # -- connector control through the log ------------------------------------------
        r = client.post("/connectors/sim/stop")
        assert r.status_code == 202, r.text
        assert r.json()["data"]["desired_state"] == "stopped"
        assert client.post("/connectors/nope/stop").status_code == 404
        connect.wait_for_line("connector sim: stop through the log")
        d.wait(lambda: desired("stopped"), "the stopped report", 60)
        stopped_end = asyncio.run(group_progress(d.bootstrap, d.prefix))[1]
        r = client.post("/connectors/sim/start")
        assert r.status_code == 202, r.text
        connect.wait_for_line("connector sim: start through the log")
        d.wait(lambda: desired("running"), "the running report", 60)
        d.wait(
            lambda: asyncio.run(group_progress(d.bootstrap, d.prefix))[1] > stopped_end,
            "telemetry after the start",
            60,
        )
        assert client.post("/connectors/sim/stop").status_code == 202
        d.wait(lambda: desired("stopped"), "the connector stopped again", 60)

        # -- the workers' figures ---------------------------------------------------------
        def ready() -> dict[str, Any]:
            return httpx.get(f"{base}/health/ready", timeout=60).json()

        # the heartbeats keep appending: both read 0 between two of them
        d.wait(lambda: ready()["checks"]["lag"]["records"] == 0 and kafka_lag(d) == 0, "lag 0", 60)
        folded_at = time.time_ns() // 1000

        def heard() -> dict[str, Any] | None:
            workers = client.get("/status").json()["data"].get("workers") or []
            return next((w for w in workers if w["ts_us"] > folded_at), None)

        d.wait(heard, "a heartbeat of the worker after everything was folded", 60)
        stored = int(rows(store, "SELECT count() FROM millrace.readings")[0][0])
        fams = families(client, base)
        assert value(fams, "millrace_ingest_readings") == stored > 0
        assert value(fams, "millrace_runtime_records") > 0
        assert value(fams, "millrace_runtime_paused") == 0
        states = {
            (s.labels["connector"], s.labels["state"]): s.value
            for s in fams["millrace_connector_state"].samples
        }
        assert states[("sim", "stopped")] == 1, states
        # the alarm runner's checkpoint in the store reaches the log's end (without it
        # read, the whole log would count)
        d.wait(
            lambda: value(families(client, base), "millrace_alarm_runner_lag_records") == 0,
            "the alarm runner caught up",
            60,
        )

        # -- pause: the lag grows; a worker started now starts paused ------------------
        assert client.post("/pipeline/pause").json()["data"]["paused"] is True
        worker.wait_for_line("runtime paused through the log")
        worker.stop_cleanly()
        n = 2 * READY_MAX_LAG
        asyncio.run(publish(d.bootstrap, d.prefix, TELEMETRY, batches(0, n)))
        committed_before = asyncio.run(group_progress(d.bootstrap, d.prefix))[0]
        later = d.start("process-b", "process", "")
        later.wait_for_line("runtime paused through the log")
        later.wait_for_line("held: the runtime is paused")
        assert asyncio.run(group_progress(d.bootstrap, d.prefix))[0] == committed_before

        low = kafka_lag(d)
        got = httpx.get(f"{base}/health/ready", timeout=60)
        high = kafka_lag(d)
        assert got.status_code == 503, got.text
        lag = got.json()["checks"]["lag"]
        assert not lag["ok"] and low <= lag["records"] <= high and lag["records"] >= n
        fams = families(client, base)
        assert value(fams, "millrace_runtime_paused") == 1
        assert value(fams, "millrace_runtime_lag_records") >= n
        assert client.get("/system/info").json()["data"]["paused"] is True

        # -- resume: everything lands once -------------------------------------------
        assert client.post("/pipeline/resume").json()["data"]["paused"] is False
        d.wait(lambda: ready()["status"] == "ok", "ready again (lag drained)", 120)
        d.wait(
            lambda: (
                rows(store, "SELECT count() FROM millrace.readings WHERE identity = 'ops-dev'")
                == [(n,)]
            ),
            "the readings published while paused",
            60,
        )
        mine = "SELECT count(), sum(value) FROM millrace.readings WHERE identity = 'ops-dev'"
        assert rows(store, mine) == [(n, float(sum(range(n))))]
        assert int(rows(store, "SELECT count() FROM millrace.readings")[0][0]) == stored + n
    for role in reversed(d.roles):
        if not role.stopped:
            role.stop_cleanly()
