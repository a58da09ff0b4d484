"""The console served by ``millrace api`` (the distributed deployment: ``millrace
connect``, ``process`` and ``api`` on librdkafka's mock cluster, on the test session's
chDB): sign in, the overview shows readiness, the process worker's heartbeat and the
ingest rate its heartbeats carry; live data updates from the Kafka log without a
reload; an alarm acknowledged in the console is acknowledged in the API (folded by the
process worker)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from millrace.projections.store.chdb import ChdbStore
from tests.connectors.test_run_config_e2e import free_port
from tests.console import harness
from tests.console.harness import Console, browser_missing, browsing
from tests.console.test_console import number
from tests.console.test_console import (
    test_live_data_updates_without_reload as live_data_updates_without_reload,
)
from tests.console.test_pages_ops import (
    test_alarm_acknowledged_in_the_console as alarm_acknowledged_in_the_console,
)
from tests.distributed import Deployment, cluster  # noqa: F401
from tests.projection_reset import empty_projections
from tests.store_server import StoreServer

pytest.importorskip("faust")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIM = (
    "connections:\n  sim: {protocol: simulator, devices: 3, signals: 4, interval_ms: 200,"
    ' identity_prefix: "c-"}\n'
)


@pytest.fixture(scope="module")
def console(
    cluster: str,  # noqa: F811
    chdb_store: ChdbStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    """The console of a ``millrace api`` beside one ``connect`` and one ``process``."""
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    empty_projections(chdb_store)
    # another test's alarm runner positions would be this deployment's
    chdb_store.execute("TRUNCATE TABLE IF EXISTS millrace.checkpoints")
    tmp = tmp_path_factory.mktemp("api-role")
    with StoreServer(chdb_store) as server:
        d = Deployment(cluster, server.url, tmp)
        d.env["MILLRACE_API_KEY"] = harness.KEY
        d.env["MILLRACE_ADMIN_PASSWORD"] = harness.ADMIN_PASSWORD
        port = free_port()
        try:
            d.start("process", "process", "")
            d.start("connect", "connect", SIM)
            d.start("api", "api", f"api:\n  port: {port}\n")
            base = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                try:
                    return httpx.get(base + "/health/ready", timeout=10).status_code == 200
                except httpx.TransportError:
                    return False

            d.wait(ready, "millrace api ready", 150)
            with browsing(base) as c:
                yield c
        finally:
            d.stop_all()


def test_overview_shows_readiness_and_the_process_worker(console: Console) -> None:
    console.sign_in()
    console.open("/")
    console.wait(lambda: console.text("[data-testid=ready]") == "ready", "readiness shown")
    # the process worker's heartbeat, as /resource-runners reports it
    runners = console.wait(
        lambda: [
            r
            for r in console.api.get("/resource-runners").json()["data"]
            if r["runner"].endswith("/process")
        ],
        "the worker's heartbeat in the API",
    )
    name = runners[0]["runner"]
    console.wait(lambda: name in console.text("[data-testid=runners]"), "the worker shown")
    assert "healthy" in console.text("[data-testid=runners]")
    # the ingest rate from the worker's heartbeats (its counters travel on them)
    console.wait(
        lambda: (n := number(console.text("[data-testid=ingest-rate]"))) is not None and n > 0,
        "a positive ingest rate",
    )
    # the connector, reported by millrace connect and folded by the worker
    console.wait(
        lambda: "connector sim [simulator]: running" in console.text("main"), "the connector"
    )
    # the system page: the group's Kafka lag, the alarm runner's, the worker's figures
    console.open("/system")
    lags = console.wait(
        lambda: (t := console.text("[data-testid=stage-lag] tbody")) and "alarm runner" in t and t,
        "the lag of each stage",
    )
    assert "the processing group's Kafka lag" in lags
    console.wait(
        lambda: any(
            name in line and "readings" in line
            for line in console.text("[data-testid=runner-table] tbody").splitlines()
        ),
        "the worker's figures from its heartbeat",
    )


def test_live_data_updates_from_the_kafka_log(console: Console) -> None:
    live_data_updates_without_reload(console)  # the millrace run test's scenario


def test_alarm_acknowledged_in_the_console_is_acknowledged_in_the_api(console: Console) -> None:
    # one, then a selection with each item's result: the millrace run test's scenario
    alarm_acknowledged_in_the_console(console)
