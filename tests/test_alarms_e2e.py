"""Alarms end to end under a real ``millrace run``: a simulator signal crossing a limit
raises an alarm that shows in the list and on the live stream; an operator acknowledges
it; the value returns under the limit and the alarm clears — and every step is on the
stream and in the audit trail."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.connectors.test_run_config_e2e import free_port
from tests.millrace_process import millrace_run
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration]

KEY = "alarms-e2e-admin-key-0123456789"
SIGNAL = "temperature_0"


def config(port: int) -> str:
    # the simulator's settable signal follows a set value from its next tick, which
    # lets the test drive it across the limit and back
    return f"""
service: alarms
connections:
  sim:
    protocol: simulator
    devices: 1
    signals: 2
    interval_ms: 100
    identity_prefix: "oven-"
alarms:
  tick_s: 0.2
  rules:
    - {{id: oven-hot, kind: limit, type: high_temperature, signal: {SIGNAL},
       identity: "oven-.*", high: 100, deadband: 5, priority: 200,
       message: "{{identity}} {{signal}} at {{value}} above {{limit}}"}}
api:
  port: {port}
"""


class StreamReader(threading.Thread):
    """Reads one SSE connection into a queue of (event, id, data) in a thread."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events: queue.Queue[tuple[str, str | None, Any]] = queue.Queue()
        self.stop = threading.Event()

    def run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=60)) as client,
            client.stream("GET", self.url) as r,
        ):
            event, eid, data = "message", None, ""
            for line in r.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("id:"):
                    eid = line[3:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "":
                    if data:
                        self.events.put((event, eid, json.loads(data)))
                    event, eid, data = "message", None, ""

    def next(self, event: str, timeout: float = 60) -> tuple[str | None, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {event} event on the stream"
            name, eid, data = self.events.get(timeout=left)
            if name == event:
                # items carry the subscriptions they matched and the item itself
                return eid, data.get("data", data) if "subscriptions" in data else data


def test_raise_acknowledge_clear_in_the_list_and_on_the_stream(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "alarms.yaml"
    cfg.write_text(config(port))
    base = f"http://127.0.0.1:{port}/api/v1"
    headers = {"Authorization": f"Bearer {KEY}"}
    with (
        millrace_run(cfg, tmp_path / "data", KEY),
        httpx.Client(base_url=base, headers=headers, timeout=15) as client,
    ):
        _exercise(base, client)


def _exercise(base: str, client: httpx.Client) -> None:

    def up() -> bool:
        try:
            return client.get("/status").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, "the API")
    # the rule of the file is in force
    rule = wait_until(lambda: client.get("/alarm-rules/oven-hot").status_code == 200, "the rule")
    assert rule
    r = client.put(f"/resources/{SIGNAL}", json={"settable": True})
    assert r.status_code in (200, 201), r.text
    r = client.post("/identities", json={"identity": "oven-0"})
    assert r.status_code == 201, r.text

    # a browser-style stream (key in the query), subscribed to this device's alarms
    reader = StreamReader(f"{base}/stream?access_token={KEY}")
    reader.start()
    _, hello = reader.next("hello", 30)
    stream_id = hello["stream_id"]
    r = client.post(
        f"/stream/{stream_id}/subscriptions",
        json={"kind": "alarm", "filters": {"identity": ["oven-0"], "priority_range": "100,255"}},
    )
    assert r.status_code == 201, r.text

    # cross the limit: the device follows the set value
    r = client.post("/identities/oven-0/state", json={SIGNAL: 150.0})
    assert r.status_code == 202, r.text

    def active() -> list[dict[str, Any]]:
        r = client.get("/alarms", params={"identity": "oven-0", "state": "active"})
        return list(r.json()["data"])

    [alarm] = wait_until(active, "the raised alarm")
    assert alarm["type"] == "high_temperature" and alarm["priority"] == 200
    assert alarm["trigger_value"] == 150.0
    assert alarm["message"] == f"oven-0 {SIGNAL} at 150.0 above 100"
    assert alarm["management"]["status"] == "pending"
    _, raised = reader.next("alarm")
    assert (raised["alarm_id"], raised["event"]) == (alarm["alarm_id"], "RAISED")

    r = client.post(f"/alarms/{alarm['alarm_id']}/acknowledge", json={"note": "on it"})
    assert r.status_code == 200, r.text
    _, acked = reader.next("alarm")
    assert (acked["alarm_id"], acked["event"]) == (alarm["alarm_id"], "ACKNOWLEDGED")

    # 98 stays inside the deadband (above 100 - 5): still active; 50 clears
    client.post("/identities/oven-0/state", json={SIGNAL: 98.0})
    wait_until(
        lambda: client.get("/identities/oven-0/state").json()[SIGNAL]["reported"] == 98.0,
        "the report of 98",
    )
    assert client.get(f"/alarms/{alarm['alarm_id']}").json()["state"] == "active"
    client.post("/identities/oven-0/state", json={SIGNAL: 50.0})

    def cleared() -> dict[str, Any] | None:
        a = client.get(f"/alarms/{alarm['alarm_id']}").json()
        return a if a["state"] == "cleared" else None

    done = wait_until(cleared, "the clear")
    assert done["clear_value"] == 50.0
    assert done["management"]["status"] == "acknowledged"
    assert done["management"]["acknowledged_by"]
    _, clear_item = reader.next("alarm")
    assert (clear_item["alarm_id"], clear_item["event"]) == (alarm["alarm_id"], "CLEARED")
    # one alarm for the whole episode: the dip to 98 did not raise again
    assert len(client.get("/alarms", params={"identity": "oven-0"}).json()["data"]) == 1
    # the acknowledgement is in the audit trail and among the activities
    audits = client.get("/audits", params={"target_id": alarm["alarm_id"]}).json()["data"]
    assert [a["action"] for a in audits] == ["acknowledge"]
    kinds = {
        a["activity_type"]
        for a in client.get("/activities", params={"identity": "oven-0"}).json()["data"]
    }
    assert kinds == {"alarm", "audit"}
    reader.stop.set()
    client.close()
