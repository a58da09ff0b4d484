"""Done-when of the connectors: one commissioning file with a connection of each
protocol — OPC UA (asyncua's server), Modbus TCP (pymodbus's server), MQTT (Mosquitto),
a CSV drop directory and the simulator — runs under ``millrace run --config`` (a real
process) and its data is queryable through the API; connector state and metrics are
visible at /connectors. (Command write-back per protocol is tested in each protocol's
suite and through the manager in test_commissioning.py.)"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from asyncua import ua
from pymodbus.simulator import DataType, SimData

from tests.connectors.modbus.peer import ModbusPeer
from tests.connectors.mqtt.conftest import Broker
from tests.connectors.opcua.conftest import OpcServer
from tests.millrace_process import millrace_run

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
KEY = "e2e-admin-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Peers:
    """The OPC UA and Modbus servers on an event loop of their own (a thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.opc = OpcServer(free_port(), {"Temp": (21.5, ua.VariantType.Double, False)})
        self.modbus = ModbusPeer(holding=[SimData(0, values=[0] * 10, datatype=DataType.REGISTERS)])

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> Peers:
        self.thread.start()
        self.run(self.opc.start())
        self.run(self.modbus.start())
        self.run(self.modbus.set(3, 0, [1234, 7]))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.run(self.opc.stop())
        self.run(self.modbus.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "mosquitto", tls=False)
    b.directory.mkdir()
    b.setup()
    try:
        yield b
    finally:
        b.stop()


def commissioning(peers: Peers, broker: Broker, drop: Path) -> str:
    return f"""
service: e2e
connections:
  opc:
    protocol: opcua
    url: {peers.opc.url}
  plc:
    protocol: modbus
    host: 127.0.0.1
    port: {peers.modbus.port}
    reconnect: {{initial_ms: 100, max_ms: 1000}}
  broker:
    protocol: mqtt
    host: 127.0.0.1
    port: {broker.port}
  drop:
    protocol: files
    directory: {drop}
    poll_ms: 100
    settle_ms: 200
    csv:
      separator: ","
      timestamp: [ts]
      timestamp_format: iso8601
      identity: oven-1
  sim:
    protocol: simulator
    devices: 2
    signals: 2
    interval_ms: 200
endpoints:
  - {{connection: opc, identity: press-1, signal: temp, node_id: "ns=2;s=Temp",
     interval_ms: 100}}
  - {{connection: plc, identity: press-1, signal: strokes, register: holding, address: 0,
     data_type: uint16, interval_ms: 100}}
  - {{connection: plc, identity: press-1, signal: setpoint, register: holding, address: 1,
     data_type: uint16, interval_ms: 100, writable: true, scale: 0.5}}
  - {{connection: broker, identity: "{{1}}", signal: humidity, topic: "hall/+/humidity"}}
api:
  port: {free_port()}
"""


def test_every_protocol_under_millrace_run(tmp_path: Path, broker: Broker) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "oven.csv").write_text(
        "ts,zone1,zone2\n2026-01-01T00:00:00Z,180.5,175\n2026-01-01T00:01:00Z,181.5,176\n"
    )
    with Peers() as peers:
        cfg = tmp_path / "plant.yaml"
        text = commissioning(peers, broker, drop)
        cfg.write_text(text)
        port = int(text.rsplit("port: ", 1)[1].strip())
        check = subprocess.run(
            [sys.executable, "-m", "millrace.pipeline.cli.main", "validate", str(cfg)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        with millrace_run(cfg, tmp_path / "data", KEY):
            _exercise(port, peers, broker)


async def _publish(port: int, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(topic, payload, qos=1)


def _exercise(port: int, peers: Peers, broker: Broker) -> None:
    base = f"http://127.0.0.1:{port}/api/v1"
    h = {"Authorization": f"Bearer {KEY}"}
    client = httpx.Client(base_url=base, headers=h, timeout=10)

    def latest() -> dict[tuple[str, str], Any]:
        try:
            r = client.get("/signals/latest", params={"limit": 1000})
        except httpx.TransportError:
            return {}
        if r.status_code != 200:
            return {}
        return {(d["identity"], d["signal"]): d["value"] for d in r.json()["data"]}

    def wait(cond: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    wait(lambda: bool(latest()), "the API")

    expected = {
        ("press-1", "temp"): 21.5,
        ("press-1", "strokes"): 1234.0,
        ("press-1", "setpoint"): 3.5,  # 7 * 0.5
        ("h7", "humidity"): 41.5,
        ("oven-1", "zone1"): 181.5,
        ("oven-1", "zone2"): 176.0,
    }

    def all_there() -> bool:
        got = latest()
        if ("h7", "humidity") not in got:
            peers.run(_publish(broker.port, "hall/h7/humidity", b"41.5"))
        return all(got.get(k) == v for k, v in expected.items()) and (
            ("sim-1", "temperature_0") in got
        )

    wait(all_there, "a value from every protocol")
    r = client.get(
        "/identities/oven-1/signals/zone1",
        params={"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z"},
    )
    assert r.status_code == 200, r.text
    assert sorted(p["value"] for p in r.json()["data"]["points"]) == [180.5, 181.5]

    connectors = {c["name"]: c for c in client.get("/connectors").json()["data"]}
    assert set(connectors) == {"opc", "plc", "broker", "drop", "sim"}
    for c in connectors.values():
        assert c["current_state"] == "running", c
        assert c["metrics"]["readings"] > 0 or c["name"] == "broker", c

    r = client.post("/sql", json={"query": "SELECT uniqExact(identity) FROM millrace.readings"})
    assert r.status_code == 200 and r.json()["rows"][0][0] == 5  # press-1 h7 oven-1 sim-0/1
    client.close()


def test_millrace_browse_lists_the_servers_variables() -> None:
    from typer.testing import CliRunner

    from millrace.pipeline.cli.main import app

    with Peers() as peers:
        r = CliRunner().invoke(app, ["browse", peers.opc.url, "--format", "json"])
    assert r.exit_code == 0, r.output
    import json

    nodes = {n["node_id"]: n for n in json.loads(r.output)}
    assert nodes["ns=2;s=Temp"]["value"] == 21.5
    assert nodes["ns=2;s=Temp"]["path"] == "/2:Plant/2:Temp"
    r = CliRunner().invoke(app, ["browse", f"opc.tcp://127.0.0.1:{free_port()}"])
    assert r.exit_code == 1 and "error:" in r.output
