"""The console shows what the API refused: an error's details reach the page, and the
places in a commissioning file they name are marked at their lines; a file that still
holds the masked placeholder of a secret is refused in the page (no browser)."""

from __future__ import annotations

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from millrace.api.console.client import ConsoleApi, ConsoleApiError
from millrace.api.console.session import Session
from millrace.api.console.yaml_lines import Problem, masked_problems, refusal_problems
from millrace.api.service_files import MASKED, masked


def _validating_api() -> Starlette:
    """An API that refuses every file the way ``api/errors.py`` answers (one list of
    violations), or with one object of details."""

    async def services(request: Request) -> JSONResponse:
        if request.query_params.get("one"):
            details: object = {"retry_after": 3}
        else:
            details = [
                {"json_path": "$.connections.sim.interval_ms", "message": "must be > 0"},
                {"json_path": "$.service", "message": "required"},
            ]
        body = {"error": {"code": "invalid_commissioning", "message": "2 violations"}}
        body["error"]["details"] = details  # type: ignore[index]
        return JSONResponse(body, 422)

    return Starlette(routes=[Route("/api/v1/services", services, methods=["POST"])])


@pytest.mark.asyncio
async def test_a_refusal_keeps_the_apis_details() -> None:
    api = ConsoleApi(_validating_api(), Session("k"))
    with pytest.raises(ConsoleApiError) as refused:
        await api.post("/services", {"commissioning": "x"})
    assert (refused.value.status, refused.value.code) == (422, "invalid_commissioning")
    assert [d["json_path"] for d in refused.value.details] == [
        "$.connections.sim.interval_ms",
        "$.service",
    ]
    with pytest.raises(ConsoleApiError) as one:
        await api.post("/services", {}, one="1")
    assert one.value.details == [{"retry_after": 3}]
    assert ConsoleApiError(500, "x", "y").details == []
    await api.close()


FILE = """\
service: s
connections:
  sim:
    protocol: simulator
    interval_ms: 0
"""


def test_a_refusals_paths_are_marked_at_their_lines() -> None:
    details = [
        {  # a violation as the services router answers it
            "field": "$.connections.sim.interval_ms",
            "message": "must be > 0",
            "json_path": "$.connections.sim.interval_ms",
            "description": "must be > 0",
            "level": "error",
        },
        {"field": "$.service", "message": "service id exists"},  # a 409's field
        {"field": "service_id", "message": "unknown service"},  # not a place in the file
    ]
    assert refusal_problems(FILE, details) == [
        Problem(5, "$.connections.sim.interval_ms", "must be > 0"),
        Problem(1, "$.service", "service id exists"),
    ]
    assert refusal_problems("a: [", details[:1]) == [
        Problem(None, "$.connections.sim.interval_ms", "must be > 0")
    ]
    assert refusal_problems(FILE, []) == []


EDITED = """\
service: plc
connections:
  plc1:
    protocol: opcua
    password: "***"
    username: ops
    certificates:
      - key_passphrase: '***'
      - key_passphrase: ${KEY_PASS}
description: "*** not a secret ***"
"""


def test_a_file_that_still_holds_the_masked_placeholder_names_each_place() -> None:
    still = masked_problems(EDITED)
    assert [(p.line, p.json_path) for p in still] == [
        (5, "$.connections.plc1.password"),
        (8, "$.connections.plc1.certificates[0].key_passphrase"),
    ]
    assert all(MASKED in p.description and p.level == "error" for p in still)
    typed = EDITED.replace('"***"', "s3cret").replace("'***'", "${OTHER}")
    assert masked_problems(typed) == []
    assert masked_problems("a: [") == []  # not YAML: the validation says so, not this


def test_the_placeholder_is_what_the_api_shows() -> None:
    shown = masked({"connections": {"c": {"password": "x", "host": "h"}}})
    assert shown["connections"]["c"]["password"] == MASKED
    assert [p.json_path for p in masked_problems(yaml.safe_dump(shown))] == [
        "$.connections.c.password"
    ]
