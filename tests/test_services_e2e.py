"""Services under a real ``millrace run`` (a process) against a real Modbus server:
the file's own service installed at start; a service installed at runtime through the
``millrace service`` CLI; disabled; the engine restarted: both services kept, the
disabled one still disabled; enabled again: its readings resume; removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.connectors.test_run_config_e2e import Peers, free_port
from tests.millrace_process import ROOT, millrace_run

pytestmark = [pytest.mark.integration]

KEY = "e2e-services-key-0123456789abcdef"


def service_file(sid: str, conn: str, port: int, signal: str) -> str:
    return f"""
service: {sid}
connections:
  {conn}: {{protocol: modbus, host: 127.0.0.1, port: {port},
           reconnect: {{initial_ms: 100, max_ms: 1000}}}}
endpoints:
  - {{connection: {conn}, identity: press-9, signal: {signal}, register: holding, address: 0,
     data_type: uint16, interval_ms: 100}}
"""


def cli(url: str, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "millrace.pipeline.cli.main", "service", *args, "--url", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "MILLRACE_API_KEY": KEY},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def test_services_through_cli_and_restart(tmp_path: Path) -> None:
    api_port = free_port()
    url = f"http://127.0.0.1:{api_port}/api/v1"
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)

    def count(signal: str) -> int:
        try:
            r = client.get("/identities/press-9/signals/" + signal, params={"limit": 10000})
        except httpx.TransportError:
            return -1
        if r.status_code != 200:
            return -1
        return int(r.json()["meta"]["pagination"]["rows_in_page"])

    def wait(cond: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    with Peers() as peers:
        cfg = tmp_path / "plant.yaml"
        own = service_file("own", "plc-own", peers.modbus.port, "own")
        cfg.write_text(own + f"api:\n  port: {api_port}\n")
        extra = tmp_path / "extra.yaml"
        extra.write_text(service_file("extra", "plc-extra", peers.modbus.port, "extra"))
        data = tmp_path / "data"
        with millrace_run(cfg, data, KEY):
            wait(lambda: count("own") > 0, "the file's service")
            installed = cli(url, "install", str(extra))
            assert installed["data"]["id"] == "extra"
            wait(lambda: count("extra") > 2, "the installed service's readings")
            listed = {s["id"]: s["enabled"] for s in cli(url, "list")["data"]}
            assert listed == {"own": True, "extra": True}
            cli(url, "disable", "extra")
            assert cli(url, "show", "extra")["data"]["status"] == "disabled"
        with millrace_run(cfg, data, KEY):
            wait(lambda: count("own") >= 0, "the API")
            listed = {s["id"]: s["enabled"] for s in cli(url, "list")["data"]}
            assert listed == {"own": True, "extra": False}
            before = count("extra")
            cli(url, "enable", "extra")
            wait(lambda: count("extra") > before + 2, "readings resume")
            cli(url, "remove", "extra")
            assert [s["id"] for s in cli(url, "list")["data"]] == ["own"]
