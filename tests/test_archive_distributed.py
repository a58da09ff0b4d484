"""The archive in the distributed deployment (mock Kafka, real ``millrace connect``,
``process`` and ``api``): the archiver runs in ``millrace process`` over Kafka, and a
flush asked of ``millrace api`` reaches it through the log (a task) and answers when
the windows are in the store."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from millrace.pipeline.archive.store import ArchiveStore
from millrace.projections.store.chdb import ChdbStore
from tests.connectors.test_run_config_e2e import free_port
from tests.distributed import KEY, Deployment, cluster, deployment, rows  # noqa: F401

pytest.importorskip("faust")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(240)
def test_flush_through_the_api_reaches_the_archiver_in_process(
    deployment: Deployment,  # noqa: F811
    store: ChdbStore,
    tmp_path: Path,
) -> None:
    d = deployment
    archive = tmp_path / "archive"
    section = f"archive: {{url: '{archive}', poll_ms: 100}}\n"
    port = free_port()
    d.start("process", "process", section)
    d.start("api", "api", f"api:\n  port: {port}\n{section}")
    d.start(
        "connect",
        "connect",
        """
connections:
  sim:
    protocol: simulator
    devices: 2
    signals: 3
    interval_ms: 100
    identity_prefix: "arc-"
""",
    )
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}/api/v1",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=150,
    ) as client:

        def up() -> bool:
            try:
                return client.get("/status").status_code == 200
            except httpx.TransportError:
                return False

        d.wait(up, "the API", 60)
        d.wait(
            lambda: rows(
                store, "SELECT count() > 30 FROM millrace.readings WHERE identity LIKE 'arc-%'"
            )[0][0],
            "readings in the store",
            90,
        )
        r = client.post("/archive/flush", params={"wait_s": 120})
        assert r.status_code == 200, r.text + d.logs()
        windows = client.get("/archive", params={"topic": "telemetry", "limit": 1000}).json()
    archived = sum(w["readings"] for w in windows["data"])
    assert archived >= 30 and archived % 3 == 0
    assert ArchiveStore(str(archive)).verify() == []
    assert any(r.leads("archiver") for r in d.roles), d.logs()
