"""The services editor's template picker and YAML as written, in a real browser against
a real ``millrace run``: a protocol's template (``GET /config/templates/{protocol}``,
the connector folder's ``sample.yaml``) fills the editor and validates clean; a file
using YAML's own forms (a date, an anchor and a merge key) is validated as YAML and its
violations are marked at their lines. And the console's client without a browser: a
YAML answer comes back as text, a text body goes out with its media type."""

from __future__ import annotations

import importlib.resources
import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from millrace.api.console.client import ConsoleApi
from millrace.api.console.session import Session
from tests.console.harness import Console
from tests.console.test_pages_services import marked, paste

#: YAML a JSON body cannot carry: a date (a string is wanted: line 2) and a merge key
#: whose base has a bad interval (line 7)
YAML_ONLY = """\
service: yaml-only
description: 2024-01-01
connections:
  sim: &base
    protocol: simulator
    devices: 1
    interval_ms: -5
  sim2:
    <<: *base
    interval_ms: 100
"""


@pytest.mark.integration
@pytest.mark.slow
def test_a_template_fills_the_editor_and_yaml_is_validated_as_written(
    console: Console,
) -> None:
    listed = console.api.get("/config/templates").json()["data"]
    assert "simulator" in listed
    template = console.api.get("/config/templates/simulator").text
    shipped = importlib.resources.files("millrace.connectors.simulator") / "sample.yaml"
    assert template == shipped.read_text()

    console.sign_in()
    console.open("/services")
    for name in listed:
        assert console.find(f"[data-testid=template-picker] button[name=template-{name}]")
    console.click("button[name=template-simulator]")
    console.wait(
        lambda: "no violations" in console.text("[data-testid=validation-summary]"), "valid"
    )
    text = console.js(
        "return getElement(arguments[0]).editor.state.doc.toString();",
        int(console.find("[data-testid=service-editor]").get_attribute("id").lstrip("c")),
    )
    assert text == template
    assert marked(console) == []

    paste(console, "service-editor", YAML_ONLY)
    console.click("button[name=validate]")
    lines = console.wait(lambda: marked(console), "the marked lines")
    assert lines == [
        (2, "$.description", "description: 2024-01-01"),
        (7, "$.connections.sim.interval_ms", "    interval_ms: -5"),
    ]
    assert "2 error(s)" in console.text("[data-testid=validation-summary]")


@pytest.mark.asyncio
async def test_the_client_reads_yaml_as_text_and_sends_text_with_its_type() -> None:
    seen: list[tuple[str, bytes]] = []

    async def template(_: Request) -> Response:
        return Response("service: x\n", media_type="application/yaml")

    async def validate(request: Request) -> JSONResponse:
        seen.append((request.headers["content-type"], await request.body()))
        return JSONResponse({"status": "passed", "violations": []})

    app = Starlette(
        routes=[
            Route("/api/v1/config/templates/sim", template),
            Route("/api/v1/config/validate", validate, methods=["POST"]),
        ]
    )
    api = ConsoleApi(app, Session("k"))
    try:
        assert await api.get("/config/templates/sim") == "service: x\n"
        got = await api.request("POST", "/config/validate", text="d: 2024-01-01\n")
        assert got == {"status": "passed", "violations": []}
        assert seen == [("application/yaml", b"d: 2024-01-01\n")]
        await api.post("/config/validate", {"d": 1})
        assert seen[-1][0] == "application/json" and json.loads(seen[-1][1]) == {"d": 1}
    finally:
        await api.close()
