"""The operations API under a real ``millrace run`` (the one stage assembly): health
probes without a key, ``/metrics`` parsed by prometheus_client, pause while readings
keep arriving (lag grows, the projections do not move) and resume (everything sent
is there, counted by the test), runtime settings, and no secret sent in requests in
the process's output or its log ring."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.connectors.test_run_config_e2e import free_port
from tests.millrace_process import millrace_run
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration]

KEY = "ops-e2e-admin-key-0123456789abcdef"
IDENT = "ops-e2e-press"
SECRETS = [
    "Sup3r-s3cret-passw0rd",
    "mr_0123456789ab_notarealsecretbutlooksalikeone",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMifQ.c2lnbmF0dXJlLXRlc3Q",
]


def _count(client: httpx.Client) -> int:
    r = client.post(
        "/sql",
        json={"query": f"SELECT count() FROM millrace.readings WHERE identity = '{IDENT}'"},
    )
    assert r.status_code == 200, r.text
    return int(r.json()["rows"][0][0])


def _total(client: httpx.Client) -> int:
    r = client.post("/sql", json={"query": "SELECT count() FROM millrace.readings"})
    assert r.status_code == 200, r.text
    return int(r.json()["rows"][0][0])


def _folded(client: httpx.Client, base: str) -> float:
    text = client.get(f"{base}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return float(families["millrace_ingest_readings"].samples[0].value)


def _send(client: httpx.Client, start: int, n: int) -> None:
    now = int(time.time() * 1_000_000)
    body = [
        {"timestamp": now - 60_000_000 + start + i, "values": {"v": float(i)}} for i in range(n)
    ]
    r = client.post(f"/identities/{IDENT}/data", json=body)
    assert r.status_code == 202, r.text


def test_operations_under_millrace_run(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    port = free_port()
    cfg = tmp_path / "millrace.yaml"
    cfg.write_text(
        f"""
service: ops
connections:
  sim: {{protocol: simulator, devices: 1, signals: 2, interval_ms: 100, identity_prefix: "m-"}}
api:
  port: {port}
"""
    )
    base = f"http://127.0.0.1:{port}"
    anon = httpx.Client(base_url=base, timeout=30)
    request.addfinalizer(anon.close)  # closed when an assertion ends the test early too

    def live() -> bool:
        try:
            return anon.get("/health/live").status_code == 200
        except httpx.TransportError:
            return False

    with millrace_run(cfg, tmp_path / "data", KEY) as proc:
        client = httpx.Client(
            base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        )
        request.addfinalizer(client.close)
        wait_until(live, "the API")
        ready = anon.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert {"log", "store", "lag"} <= set(ready.json()["checks"])
        assert anon.get("/metrics").status_code == 401

        info = client.get("/system/info").json()["data"]
        assert info["deployment"] == "embedded" and info["paused"] is False

        # pause: the log keeps accepting, the projections do not move, lag grows
        _send(client, 0, 10)
        wait_until(lambda: _count(client) == 10, "the first readings")
        assert client.post("/pipeline/pause").json()["data"]["paused"] is True
        lags = [client.get("/status").json()["data"]["lag_records"]]
        for k in range(1, 4):
            _send(client, k * 10, 10)
            lags.append(client.get("/status").json()["data"]["lag_records"])
        assert client.get("/status").json()["data"]["paused"] is True
        assert lags == sorted(lags) and lags[-1] >= lags[0] + 3, lags
        assert _count(client) == 10
        # paused, no batch is in flight: the counter is exactly the readings in the
        # store (the simulator's and the 10 sent over HTTP)
        assert _folded(client, base) == _total(client) >= 10
        assert client.post("/pipeline/resume").json()["data"]["paused"] is False
        wait_until(lambda: _count(client) == 40, "the readings sent while paused")
        # the 30 sent while paused are counted too (the counter once lagged the store:
        # it moved after the log's commit, and a scrape right after the rows showed in
        # SQL missed the batch)
        assert client.post("/pipeline/pause").json()["data"]["paused"] is True
        assert _folded(client, base) == _total(client) >= 40
        assert client.post("/pipeline/resume").json()["data"]["paused"] is False

        # metrics: the expected families, the connector connected
        text = client.get(f"{base}/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for name in (
            "millrace_ingest_readings",
            "millrace_runtime_batch_duration_seconds",
            "millrace_api_request_duration_seconds",
            "millrace_connector_state",
            "millrace_alarm_runner_lag_records",
        ):
            assert name in families, name
        states = {
            (s.labels["connector"], s.labels["state"]): s.value
            for s in families["millrace_connector_state"].samples
        }
        assert states[("sim", "running")] == 1, states

        # runtime settings
        r = client.patch("/config", json={"identities.command_timeout_s": 42})
        assert r.status_code == 200 and r.json()["data"]["identities.command_timeout_s"] == 42
        cfg_view = client.get("/config").json()["data"]
        assert cfg_view["runtime"]["identities.command_timeout_s"] == 42

        # secrets in requests: refused keys, a bad sign-in, a token in the query
        for secret in SECRETS:
            anon.get("/api/v1/identities", headers={"Authorization": f"Bearer {secret}"})
            anon.get("/api/v1/stream", params={"access_token": secret})
        anon.post("/api/v1/login", json={"username": "admin", "password": SECRETS[0]})
        ring = client.get("/logs", params={"limit": 5000}).json()["data"]
        assert any("serving on" in r["message"] for r in ring), ring[:5]
        client.close()
        proc.terminate()  # millrace_run checks the exit; its output is read here
        out, _ = proc.communicate(timeout=60)
    captured = out + str(ring)
    assert "serving on" in out
    for secret in [*SECRETS, KEY]:
        assert secret not in captured

    # a restart keeps the runtime setting (refolded from its audit event)
    with millrace_run(cfg, tmp_path / "data", KEY):
        client = httpx.Client(
            base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        )
        request.addfinalizer(client.close)
        wait_until(live, "the restarted API")
        runtime = client.get("/config").json()["data"]["runtime"]
        assert runtime["identities.command_timeout_s"] == 42
        client.close()
    anon.close()
