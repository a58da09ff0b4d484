"""Runtime settings through the log, in both deployments (issue 16, Deliver 5):

* distributed: ``PATCH /api/v1/config`` on ``millrace api`` reaches ``millrace
  process``: its identity watch disconnects a device at the new inactivity timeout (the
  file's 3600 s would keep it connected for the whole test), the API's own view of the
  device follows, and the worker's log level changes;
* embedded: a restarted ``millrace run`` runs with the patched values (its config
  follower applies the last changes on the log over the file's).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from millrace.pipeline.topics import TELEMETRY
from millrace.projections.store.chdb import ChdbStore
from tests.connectors.test_run_config_e2e import free_port
from tests.distributed import (
    KEY,
    Deployment,
    Role,
    cluster,  # noqa: F401
    deployment,  # noqa: F401
    publish,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOW = "identities:\n  inactivity_timeout_s: 3600\n"


def identity(client: httpx.Client, name: str) -> dict[str, Any]:
    r = client.get(f"/identities/{name}")
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.timeout(420)
def test_a_patch_through_millrace_api_reaches_millrace_process(
    deployment: Deployment,  # noqa: F811
    store: ChdbStore,
) -> None:
    pytest.importorskip("faust")
    d = deployment
    port = free_port()
    worker = d.start("process", "process", SLOW)
    api = d.start("api", "api", f"{SLOW}api:\n  port: {port}\n")
    name = f"cfg-{uuid.uuid4().hex[:8]}"
    with d.api(port, timeout=60) as client:
        assert client.post("/identities", json={"identity": name}).status_code == 201
        now = time.time_ns() // 1000
        batch = {
            "identity": name,
            "source": "t",
            "received_us": now,
            "samples": [{"ts_us": now, "values": {"x": 1.0}, "quality": 0}],
        }
        asyncio.run(publish(d.bootstrap, d.prefix, TELEMETRY, [(name, batch)]))
        # the watch of millrace process sees it sending: CONNECTED
        d.wait(lambda: identity(client, name)["connected_us"], "the device connected", 120)
        seen = identity(client, name)
        assert seen["disconnected_us"] is None and seen["inactivity_timeout_s"] == 3600

        r = client.patch("/config", json={"identities.inactivity_timeout_s": 2})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["identities.inactivity_timeout_s"] == 2
        worker.wait_for_line("setting identities.inactivity_timeout_s = 2")
        # silent for more than 2 s: the worker's watch disconnects it
        gone = d.wait(
            lambda: (lambda i: i if i["disconnected_us"] else None)(identity(client, name)),
            "the device disconnected at the new timeout",
            120,
        )
        assert gone["disconnected_us"] > gone["connected_us"]
        # millrace api judges "online" with the same setting
        assert gone["inactivity_timeout_s"] == 2 and gone["online"] is False

        r = client.patch("/config", json={"log_level": "debug"})
        assert r.status_code == 200 and r.json()["data"]["log_level"] == "DEBUG"
        worker.wait_for_line("setting log_level = 'DEBUG'")
        view = client.get("/config").json()["data"]["runtime"]
        assert view == {
            "log_level": "DEBUG",
            "identities.inactivity_timeout_s": 2,
            "identities.command_timeout_s": view["identities.command_timeout_s"],
        }
    # the API process applied its own PATCHes at once; its follower found them in force
    assert "setting identities.inactivity_timeout_s" not in api.output()


@pytest.mark.timeout(300)
def test_a_restarted_millrace_run_keeps_the_patched_values(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"{SLOW}simulator: {{devices: 0}}\napi: {{port: {port}}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLRACE_")}
    env["MILLRACE_API_KEY"] = KEY
    args = ["run", "--config", cfg, "--data-dir", data]

    def serve(name: str) -> tuple[Role, httpx.Client]:
        role = Role(name, args, env, tmp_path)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        deadline = time.monotonic() + 120
        while True:
            role.alive()
            try:
                if client.get("/config").status_code == 200:
                    return role, client
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, role.output()[-3000:]
            time.sleep(0.25)

    first, client = serve("run-1")
    try:
        before = client.get("/config").json()["data"]["runtime"]
        assert before["identities.inactivity_timeout_s"] == 3600
        r = client.patch(
            "/config", json={"identities.inactivity_timeout_s": 7, "log_level": "WARNING"}
        )
        assert r.status_code == 200, r.text
    finally:
        client.close()
        first.stop_cleanly()

    second, client = serve("run-2")
    try:
        runtime = client.get("/config").json()["data"]["runtime"]
        assert runtime["identities.inactivity_timeout_s"] == 7
        assert runtime["log_level"] == "WARNING"
        # the file still says 3600: the value is the log's
        assert "3600" in cfg.read_text()
    finally:
        client.close()
        second.stop_cleanly()
