"""The control loop end to end under a real ``millrace run``: an operator sets a desired
value through the API; it becomes a Command; the identity's connector writes it to the
device (pymodbus's server, and the simulator); the device reports it back; the watch
acknowledges it. Also: a value breaking its definition that a connector brings goes to
``deadletter``, and the registry sees the devices online from their telemetry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.connectors.test_run_config_e2e import Peers, free_port
from tests.millrace_process import millrace_run
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[1]
KEY = "control-loop-admin-key-0123456789"


def config(peers: Peers, port: int) -> str:
    return f"""
service: loop
connections:
  plc:
    protocol: modbus
    host: 127.0.0.1
    port: {peers.modbus.port}
    reconnect: {{initial_ms: 100, max_ms: 1000}}
  sim:
    protocol: simulator
    devices: 1
    signals: 2
    interval_ms: 100
    identity_prefix: "oven-"
endpoints:
  - {{connection: plc, identity: press-1, signal: setpoint, register: holding, address: 1,
     data_type: uint16, interval_ms: 100, writable: true}}
  - {{connection: plc, identity: press-1, signal: strokes, register: holding, address: 0,
     data_type: uint16, interval_ms: 100}}
identities:
  inactivity_timeout_s: 30
  command_timeout_s: 60
api:
  port: {port}
"""


def test_set_command_write_report_acknowledge(tmp_path: Path) -> None:
    port = free_port()
    with Peers() as peers:
        cfg = tmp_path / "loop.yaml"
        cfg.write_text(config(peers, port))
        with millrace_run(cfg, tmp_path / "data", KEY):
            _exercise(port, peers)


def _exercise(port: int, peers: Peers) -> None:
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}/api/v1",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=15,
    )

    def up() -> bool:
        try:
            return client.get("/status").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, "the API")
    sim_signal = "temperature_0"
    for name, body in [
        ("setpoint", {"settable": True, "allowed": [{"min": 0, "max": 500}], "unit": "bar"}),
        (sim_signal, {"settable": True}),
        ("strokes", {"allowed": [{"min": 0, "max": 100}]}),
    ]:
        r = client.put(f"/resources/{name}", json=body)
        assert r.status_code in (200, 201), r.text
    for identity in ("press-1", "oven-0"):
        r = client.post("/identities", json={"identity": identity})
        assert r.status_code == 201, r.text

    # Modbus: holding register 1 is the setpoint
    r = client.post("/identities/press-1/state", json={"setpoint": 321})
    assert r.status_code == 202, r.text
    assert r.json()["state"]["setpoint"]["pending"] is True

    def acknowledged(identity: str, resource: str) -> dict[str, Any] | None:
        s = client.get(f"/identities/{identity}/state").json().get(resource)
        return s if s and s["acknowledged_us"] and not s["pending"] else None

    state = wait_until(lambda: acknowledged("press-1", "setpoint"), "the Modbus acknowledgement")
    assert state["set"] == 321 and state["reported"] == 321
    assert peers.run(peers.modbus.get(3, 1, 1)) == [321]  # the device really holds it

    # simulator: the device reports the written value from its next tick
    r = client.post("/identities/oven-0/state", json={sim_signal: 77.5})
    assert r.status_code == 202, r.text
    state = wait_until(lambda: acknowledged("oven-0", sim_signal), "the simulator acknowledgement")
    assert state["reported"] == 77.5

    # the registry saw both devices online from their telemetry
    def online() -> bool:
        r = client.get("/identities/count", params={"status": "online"})
        return bool(r.json()["count"] == 2)

    wait_until(online, "both identities online")

    # strokes = 4321 (holding register 0) breaks its definition: dead letters, no readings
    peers.run(peers.modbus.set(3, 0, [4321]))

    def dead() -> list[dict[str, Any]]:
        r = client.get("/deadletters", params={"limit": 100})
        return [d for d in r.json()["data"] if "strokes" in d["reason"]]

    [first, *_] = wait_until(dead, "a dead letter for strokes")
    assert "allowed" in first["reason"]
    r = client.post(
        "/sql",
        json={
            "query": "SELECT count() FROM millrace.readings WHERE signal = 'strokes' "
            "AND value = 4321"
        },
    )
    assert r.json()["rows"] == [[0]]
    client.close()
