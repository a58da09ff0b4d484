"""Schemathesis over the whole OpenAPI document, against a real ``millrace run``
(``tests/fuzz_engine.py``), one operation at a time.

Every operation is called with generated input (valid and invalid), with an admin key
so that every route is reached: no answer is a server error, and every answer has a
documented status, content type and body (``api.models``). Without a key, only the
device-facing routes answer anything but 401. The stateful phase, which follows the
document's links, is ``tests/test_fuzz_openapi_stateful.py``.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given, settings
from schemathesis import GenerationMode

from millrace.api.app import create_app
from millrace.api.auth import KeyStore
from millrace.api.context import AppContext
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.projections.store.base import ProjectionStore
from tests.fuzz_engine import AUTH, CHECKS, FUZZ_SETTINGS, api_schema, engine  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: the live streams never end: a request for one waits until the client times out (and
#: leaves its socket open); tests/api/test_stream*.py and test_operations.py test them
ENDLESS = {("GET", "/api/v1/stream"), ("GET", "/api/v1/logs/stream")}
#: (method, path) of the operations a device reaches without an API key
DEVICE_ROUTES = {
    ("POST", "/api/v1/provision"),
    ("POST", "/api/v1/identities/{identity}/data"),
}


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
def test_every_operation_answers_as_documented(
    api_schema: Any,  # noqa: F811
    method: str,
    path: str,
) -> None:
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
def test_without_a_key_only_device_routes_answer(
    api_schema: Any,  # noqa: F811
    method: str,
    path: str,
) -> None:
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
