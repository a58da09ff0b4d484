"""What the OpenAPI fuzz tests share: a real ``millrace run`` to fuzz, its admin key,
the checks every answer must pass, and the generation settings.

``tests/test_fuzz_openapi.py`` calls every operation with generated input;
``tests/test_fuzz_openapi_stateful.py`` follows the document's links. They are two files
so that pytest-xdist (``--dist loadfile``) runs them on two workers, each file with an
engine of its own (a module-scoped fixture).

The number of examples per operation is bounded (``EXAMPLES``) so that the modules take
a few minutes of the suite; raise it locally to fuzz harder, e.g.
``MILLRACE_FUZZ_EXAMPLES=200 pytest tests/test_fuzz_openapi.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.connectors.test_run_config_e2e import free_port
from tests.millrace_process import millrace_run
from tests.waiting import wait_until

KEY = "fuzz-openapi-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = int(os.environ.get("MILLRACE_FUZZ_EXAMPLES", "10"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


def config(port: int) -> str:
    return f"""
service: fuzz
connections:
  sim:
    protocol: simulator
    devices: 2
    signals: 2
    interval_ms: 250
    identity_prefix: "fz-"
alarms:
  tick_s: 0.5
  rules:
    - {{id: fz-low, kind: limit, signal: temperature_0, identity: "fz-.*", low: -1000}}
api:
  port: {port}
runtime:
  # the simulator's trickle folded every 5 s instead of every second: a step writes a
  # dozen tables whatever its size, and the engine spent ~0.45 of a core on it (0.18
  # now) beside every call; the API's writes wake the runtime (read-your-writes), so
  # they are answered as soon as before
  linger_ms: 5000
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``millrace run`` with a simulator, one resource, one identity and one alarm rule
    of its own (so lists have rows), at a base URL."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    cfg = tmp / "fuzz.yaml"
    cfg.write_text(config(port))
    base = f"http://127.0.0.1:{port}"
    with (
        millrace_run(cfg, tmp / "data", KEY),
        httpx.Client(base_url=base, headers=AUTH, timeout=30) as client,
    ):

        def up() -> bool:
            try:
                return client.get("/api/v1/status").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, "millrace run answering", timeout=90, interval=0.3)
        assert client.put("/api/v1/resources/temperature_0", json={}).status_code in (200, 201)
        assert client.post("/api/v1/identities", json={"identity": "fz-seed"}).status_code == 201
        yield base


@pytest.fixture(scope="module")
def api_schema(engine: str) -> Any:
    return schemathesis.openapi.from_url(f"{engine}/openapi.json")
