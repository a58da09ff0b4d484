"""Schemathesis over the whole OpenAPI document, against a real ``millrace run``.

Every operation is called with generated input (valid and invalid), with an admin key
so that every route is reached: no answer is a server error, and every answer has a
documented status, content type and body (``api.models``). The stateful phase follows
the document's links (create -> get / update -> delete of identities, resources and
alarm rules). Without a key, only the device-facing routes answer anything but 401.

The number of examples per operation is bounded (``EXAMPLES``) so that the module
takes a few minutes of the suite; raise it locally to fuzz harder, e.g.
``MILLRACE_FUZZ_EXAMPLES=200 pytest tests/test_fuzz_openapi.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from millrace.api.app import create_app
from millrace.api.auth import KeyStore
from millrace.api.context import AppContext
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.projections.store.base import ProjectionStore
from tests.connectors.test_run_config_e2e import free_port
from tests.millrace_process import millrace_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "fuzz-openapi-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = int(os.environ.get("MILLRACE_FUZZ_EXAMPLES", "10"))
STATEFUL_SCENARIOS = int(os.environ.get("MILLRACE_FUZZ_SCENARIOS", "50"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: the live streams never end: a request for one waits until the client times out (and
#: leaves its socket open); tests/api/test_stream*.py and test_operations.py test them
ENDLESS = {("GET", "/api/v1/stream"), ("GET", "/api/v1/logs/stream")}
#: (method, path) of the operations a device reaches without an API key
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
STATEFUL_SETTINGS = settings(
    max_examples=STATEFUL_SCENARIOS,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.generate],
)
#: rounds at most (each of STATEFUL_SCENARIOS scenarios); the loop stops as soon as
#: every link was followed to a 2xx. A round ran only a few scenarios while scenarios
#: left their objects behind: hypothesis replays the first steps of earlier scenarios,
#: a replayed create met its own leftover (409, not 201), the next draws differed and
#: hypothesis ended the run ("inconsistent data generation"); the state machine's
#: teardown now deletes what its scenario created
STATEFUL_ROUNDS = 60
DEVICE_ROUTES = {
    ("POST", "/api/v1/provision"),
    ("POST", "/api/v1/identities/{identity}/data"),
}


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
"""


def _wait_up(client: httpx.Client, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.get("/api/v1/status").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "millrace run did not answer"
        time.sleep(0.3)


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
        _wait_up(client)
        assert client.put("/api/v1/resources/temperature_0", json={}).status_code in (200, 201)
        assert client.post("/api/v1/identities", json={"identity": "fz-seed"}).status_code == 201
        yield base


@pytest.fixture(scope="module")
def api_schema(engine: str) -> Any:
    return schemathesis.openapi.from_url(f"{engine}/openapi.json")


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation, from the app itself (no engine needed to
    collect the tests)."""
    ctx = AppContext(
        store=cast(ProjectionStore, None),
        publisher=LogPublisher(MemoryEventLog()),
        keys=KeyStore(None),
    )
    doc = create_app(ctx).openapi()
    return sorted((m.upper(), p) for p, ops in doc["paths"].items() for m in ops)


OPERATIONS = [op for op in _operations() if op not in ENDLESS]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_answers_as_documented(api_schema: Any, method: str, path: str) -> None:
    """Valid and invalid input, ``EXAMPLES`` cases each: no 5xx, every answer as the
    document says (status, content type, headers, body)."""
    operation = api_schema[path][method]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(generation_mode=mode))
        @FUZZ_SETTINGS
        def call(case: Any) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=30)

        call()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_without_a_key_only_device_routes_answer(api_schema: Any, method: str, path: str) -> None:
    """No Authorization header: 401 with the error body everywhere but on the device
    routes (provisioning, and ingest, which takes the device's own credential)."""
    operation = api_schema[path][method]
    statuses: list[int] = []

    @given(case=operation.as_strategy())
    @settings(FUZZ_SETTINGS, max_examples=3)
    def call(case: Any) -> None:
        case.headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
        }
        response = case.call(timeout=30)
        case.validate_response(response, checks=CHECKS)
        statuses.append(response.status_code)

    call()
    assert statuses
    if (method, path) not in DEVICE_ROUTES:
        assert set(statuses) == {401}, statuses
    elif path.endswith("/data"):
        assert set(statuses) <= {400, 401, 404}, statuses


#: the links of the document (api.openapi.LINKS) the stateful phase must follow to a
#: success: a created object read, changed and deleted through its link
LINKS = {
    "GetIdentity",
    "UpdateIdentity",
    "DeleteIdentity",
    "GetResource",
    "ReplaceResource",
    "DeleteResource",
    "GetAlarmRule",
    "ReplaceAlarmRule",
    "DeleteAlarmRule",
}


#: collection path -> the created object's id in a 201 body (a resource is created at
#: its own path)
CREATED_ID = {"/api/v1/identities": "identity", "/api/v1/alarm-rules": "id"}


def _created_url(case: Any, response: Any) -> str:
    path = str(case.formatted_path)
    key = CREATED_ID.get(path)
    return path if key is None else f"{path}/{quote(str(response.json()[key]), safe='')}"


def test_stateful_links_create_read_update_delete(engine: str, api_schema: Any) -> None:
    """Sequences of calls joined by the document's links (and the ones schemathesis
    infers) over identities, resources and alarm rules: every declared link is
    followed at least once to a 2xx answer, and every answer on the way is as
    documented."""
    followed: set[tuple[str, int]] = set()
    failures: list[str] = []
    client = httpx.Client(base_url=engine, headers=AUTH, timeout=30)
    crud = api_schema.include(
        path_regex=r"^/api/v1/(identities|resources|alarm-rules)(/\{[a-z_]+\})?$"
    )

    class Workflow(crud.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            self.created: list[str] = []

        def teardown(self) -> None:
            # every scenario starts from the engine's own state: hypothesis replays the
            # first steps of earlier scenarios, and a create met by its own leftover (409
            # instead of 201) draws differently ("inconsistent data generation")
            for url in reversed(self.created):
                status = client.delete(url).status_code
                if status not in (204, 404):
                    failures.append(f"DELETE {url} (cleanup): {status}")

        def before_call(self, case: Any) -> None:
            # the generated security header (often "Bearer " or a random token) would
            # win over the call's headers: a fifth of the steps answered 401 and followed
            # nothing; test_without_a_key_only_device_routes_answer covers the 401s
            case.headers = {
                **{k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"},
                **AUTH,
            }

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": AUTH, "timeout": 30}

        def step(self, input: Any) -> Any:
            output = super().step(input)
            if output.response.status_code == 201:
                self.created.append(_created_url(input.case, output.response))
            if input.transition is not None and input.is_applied:
                # "POST /api/v1/identities -> [201] GetIdentity -> GET /api/v1/identities/{..}"
                link = input.transition.id.split(" -> ")[1].partition("] ")[2]
                followed.add((link, output.response.status_code))
            return output

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            try:
                case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)
            except Exception as exc:
                failures.append(f"{case.method} {case.formatted_path}: {exc}")
                raise

    def ok() -> set[str]:
        return {link for link, status in followed if status < 300}

    for _ in range(STATEFUL_ROUNDS):
        try:
            Workflow.run(settings=STATEFUL_SETTINGS)
        except Flaky:
            # no step raises: hypothesis ends a run when a scenario that starts like an
            # earlier one draws differently because the engine answered differently;
            # with the teardown's cleanup this no longer happens in practice, but a live
            # engine may still differ (schemathesis's own runner ends a round here too).
            # A failed check is in ``failures`` either way.
            pass
        if failures or ok() >= LINKS:
            break
    client.close()
    assert not failures, "\n\n".join(failures[:5])
    assert ok() >= LINKS, f"links never followed to a 2xx: {sorted(LINKS - ok())}"
