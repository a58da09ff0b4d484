"""Strings and documents the API must refuse with a 400 naming the field, never a 500:
lone surrogates (``"\\ud800"``: valid JSON escapes, but no UTF-8 can carry them), numbers
of thousands of digits, JSON nested 100,000 deep, and invalid UTF-8 percent-encoded in a
query or a path.

Every JSON body goes through :func:`millrace.api.jsonbody.parse_json` (the route class
:class:`millrace.api.routing.StrictRoute`); the walks below take the operations from the app's
own OpenAPI, so a route added later is covered without being named here.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from millrace.api.routers import ingest
from millrace.api.routing import StrictRoute
from millrace.pipeline.topics import ALARMS
from tests.api.conftest import NOW_US, V1, Api, error_of, uid

SURROGATE = b'"\\ud800"'
HUGE_INT = b"9" * 5000
#: deeper than orjson's 1024 and the stdlib's recursion limit, small enough for any route
DEEP = b"[" * 2_000 + b"]" * 2_000
#: the issue's 100,000 levels: 200 kB, over the body limit of most routes
VERY_DEEP = b"[" * 100_000 + b"]" * 100_000


def json_with(body: Any) -> bytes:
    """``body`` as JSON bytes, ASCII-escaped (the stdlib writes ``\\ud800`` as is)."""
    return json.dumps(body).encode()


async def send(
    api: Api, method: str, path: str, content: bytes, ctype: str = "application/json"
) -> httpx.Response:
    return await api.client.request(
        method,
        f"{V1}{path}" if not path.startswith(V1) else path,
        content=content,
        headers={"content-type": ctype, **api.auth(api.admin)},
    )


def assert_body_refused(r: httpx.Response, where: str) -> None:
    assert r.status_code == 400, f"{where}: {r.status_code} {r.text[:300]}"
    err = error_of(r)
    assert err["details"], f"{where}: {err}"
    field = err["details"][0]["field"]
    assert field == "body" or field.startswith(("body.", "body[")), f"{where}: {err}"
    assert "body" in err["message"], f"{where}: {err}"


# -- the routes that answered 500 ---------------------------------------------------------


async def _alarm(api: Api, identity: str) -> str:
    alarm_id = uid("alarm-")
    event = {
        "alarm_id": alarm_id,
        "ts_us": NOW_US,
        "type": "RAISED",
        "rule_id": "rule-high",
        "rule_type": "high_temp",
        "identity": identity,
        "signal": "temp",
        "priority": 100,
        "message": "hot",
        "trigger_value": 91.5,
        "user": None,
        "note": None,
        "requires_ack": True,
        "definition": None,
    }
    await api.ctx.publisher.publish(ALARMS, [(alarm_id, event)])
    await api.sync()
    return alarm_id


async def test_lone_surrogates_on_the_routes_that_answered_500(api: Api) -> None:
    """Each of these bodies is valid JSON for the stdlib and passed validation; writing
    the string on (the log, the response) then failed with a 500."""
    bad = "\ud800"
    name, settable = uid("dev"), uid("label")
    r = await send(api, "POST", "/identities", json_with({"identity": name}))
    assert r.status_code == 201, r.text
    r = await send(
        api, "PUT", f"/resources/{settable}", json_with({"format": "string", "settable": True})
    )
    assert r.status_code in (200, 201), r.text
    alarm_id = await _alarm(api, name)
    rule = {"kind": "limit", "type": "high_temp", "signal": "temp", "high": 80, "priority": 1}
    cases: list[tuple[str, str, Any]] = [
        ("POST", "/identities", {"identity": uid("dev"), "attributes": {"site": bad}}),
        ("POST", "/identities", {"identity": uid("dev"), "tags": {"line": [bad]}}),
        ("PATCH", f"/identities/{name}", {"attributes": {"site": bad}}),
        ("POST", f"/identities/{name}/tags", {"tags": {bad: ["x"]}}),
        ("POST", f"/identities/{name}/state", {settable: bad}),
        ("POST", f"/alarms/{alarm_id}/annotations", {"text": bad}),
        ("POST", f"/alarms/{alarm_id}/acknowledge", {"note": bad}),
        ("POST", "/alarm-rules", {**rule, "id": uid("rule-"), "message": bad}),
        ("PUT", f"/resources/{uid('res')}", {"format": "string", "description": bad}),
        ("POST", "/keys", {"name": bad, "role": "viewer"}),
        ("POST", "/sql", {"query": f"SELECT '{bad}'"}),
        ("POST", f"/identities/{name}/data", [{"timestamp": NOW_US, "values": {"t": bad}}]),
    ]
    for method, path, body in cases:
        r = await send(api, method, path, json_with(body))
        assert_body_refused(r, f"{method} {path}")
        assert "surrogate" in error_of(r)["message"], r.text


async def test_the_error_names_the_position(api: Api) -> None:
    r = await send(api, "POST", "/keys", b'{"role": "viewer", "name": ' + HUGE_INT + b"}")
    assert_body_refused(r, "POST /keys")
    err = error_of(r)
    assert err["details"][0]["position"] == 27, err
    assert "character 27" in err["message"], err


# -- every JSON body of the API -----------------------------------------------------------


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: uid("x"), path)


def _json_operations(api: Api) -> list[tuple[str, str]]:
    ops = []
    for path, methods in api.app.openapi()["paths"].items():
        for method, op in methods.items():
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                ops.append((method.upper(), path))
    return ops


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": ' + SURROGATE + b', "x": [' + SURROGATE + b"]}",
        b"[" + SURROGATE + b"]",
        b'{"name": ' + HUGE_INT + b"}",
        b"[" + HUGE_INT + b"]",
        DEEP,
        b'{"a": ' + DEEP + b"}",
    ],
    ids=["surrogate-object", "surrogate-array", "int-object", "int-array", "deep", "deep-object"],
)
async def test_every_json_body_refuses_what_utf8_or_int64_cannot_hold(
    api: Api, body: bytes
) -> None:
    ops = _json_operations(api)
    assert len(ops) >= 20, ops  # the walk found the API
    for method, path in ops:
        r = await send(api, method, _fill(path), body)
        assert_body_refused(r, f"{method} {path}")


async def test_every_json_body_refuses_100k_levels(api: Api) -> None:
    """400 where the route takes a body that large, else 413 (its body limit)."""
    for method, path in _json_operations(api):
        r = await send(api, method, _fill(path), VERY_DEEP)
        if r.status_code == 413:
            assert error_of(r)["details"][0]["field"] == "body", r.text
        else:
            assert_body_refused(r, f"{method} {path}")


async def test_json_subtypes_and_charset_are_parsed_strictly_too(api: Api) -> None:
    for ctype in ("application/json; charset=utf-8", "application/merge-patch+json"):
        r = await send(api, "POST", "/keys", b'{"name": ' + SURROGATE + b"}", ctype)
        assert_body_refused(r, ctype)


def test_every_api_route_parses_json_strictly() -> None:
    """A router created without ``route_class=StrictRoute`` would parse its bodies with
    the stdlib again (FastAPI keeps each route's own class when including a router)."""
    import millrace.api.routers

    modules = [
        importlib.import_module(f"millrace.api.routers.{m.name}")
        for m in pkgutil.iter_modules(millrace.api.routers.__path__)
    ]
    # helper modules of a router (alarm_common) hold no router of their own
    routers = [m.router for m in modules if hasattr(m, "router")]
    assert len(routers) >= 15
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and router is not ingest.router:
                assert isinstance(route, StrictRoute), (route.path, route.methods)


async def test_a_body_that_is_fine_still_works(api: Api) -> None:
    r = await send(
        api, "POST", "/keys", json_with({"name": "caf\u00e9 \U0001f600", "role": "viewer"})
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"]["name"] == "caf\u00e9 \U0001f600"
    # a big number that still fits a double is a number, not an error of its own
    r = await send(
        api, "POST", "/keys", b'{"name": "n", "role": "viewer", "x": 1' + b"0" * 30 + b"}"
    )
    assert r.status_code == 400 and error_of(r)["details"][0]["field"] == "body.x", r.text


# -- commissioning files (YAML or JSON) ---------------------------------------------------


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/json", b'{"connections": {' + SURROGATE + b": {}}}"),
        ("application/json", b'{"connections": ' + HUGE_INT + b"}"),
        ("application/json", DEEP),
        ("application/yaml", b'connections:\n  "\\ud800": {protocol: modbus}\n'),
        ("application/yaml", b"connections:\n  plc: {protocol: modbus, port: " + HUGE_INT + b"}\n"),
        ("application/yaml", b"connections: " + VERY_DEEP + b"\n"),
        ("application/yaml", b"connections: " + b"{a: " * 5_000 + b"1" + b"}" * 5_000 + b"\n"),
        ("text/plain", b"\xed\xa0\x80: 1\n"),
        ("application/yaml", b'connections: "\\UFFFFFFFF"\n'),
        ("application/yaml", b"connections: &a [*a]\n"),
    ],
    ids=[
        "json-surrogate",
        "json-int",
        "json-deep",
        "yaml-surrogate",
        "yaml-int",
        "yaml-deep-flow",
        "yaml-deep-map",
        "yaml-invalid-utf8",
        "yaml-escape-out-of-range",
        "yaml-recursive-alias",
    ],
)
async def test_config_validate_refuses_hostile_documents(api: Api, ctype: str, body: bytes) -> None:
    r = await send(api, "POST", "/config/validate", body, ctype)
    assert_body_refused(r, ctype)


async def test_config_validate_yaml_aliases_cannot_multiply(api: Api) -> None:
    """A billion laughs: nine levels of nine aliases would be 387 million strings."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    doc = "\n".join(lines).encode() + b"\n"
    r = await send(api, "POST", "/config/validate", doc, "application/yaml")
    assert_body_refused(r, "billion laughs")
    assert "aliases are expanded" in error_of(r)["message"], r.text
    # aliases within reason are YAML like any other
    lines = [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 3)}]" for i in range(1, 6)]
    doc = ("a0: &a0 [1, 2, 3]\n" + "\n".join(lines) + "\n").encode()
    r = await send(api, "POST", "/config/validate", doc, "application/yaml")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed"  # not a commissioning file, but a YAML document


async def test_config_validate_yaml_errors_are_still_violations(api: Api) -> None:
    r = await send(api, "POST", "/config/validate", b"connections: [\n", "application/yaml")
    assert r.status_code == 200, r.text
    [violation] = r.json()["violations"]
    assert violation["json_path"] == "$" and "not valid YAML" in violation["description"]


# -- strings in queries and paths ---------------------------------------------------------

#: a UTF-8 encoded surrogate (invalid UTF-8), and a byte that starts no character
INVALID_UTF8 = ("%ED%A0%80", "%FF")


def _operations(api: Api) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path, methods in api.app.openapi()["paths"].items():
        for method, op in methods.items():
            out.append((method.upper(), path, op))
    return out


async def test_invalid_utf8_in_a_query_parameter_is_refused_naming_it(api: Api) -> None:
    for method, path, op in _operations(api):
        for param in op.get("parameters", []):
            if param["in"] != "query":
                continue
            for raw in INVALID_UTF8:
                url = f"{_fill(path)}?{param['name']}={raw}"
                r = await api.client.request(
                    method, url, headers={"content-type": "application/json", **api.auth(api.admin)}
                )
                where = f"{method} {url}"
                assert r.status_code == 400, f"{where}: {r.status_code} {r.text[:300]}"
                err = error_of(r)
                assert err["details"][0]["field"] == param["name"], f"{where}: {err}"
                assert "UTF-8" in err["message"], f"{where}: {err}"


async def test_invalid_utf8_in_a_path_parameter_is_refused_naming_it(api: Api) -> None:
    for method, path, op in _operations(api):
        params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
        for name in params:
            url = re.sub(r"\{" + name + r"\}", "ab%ED%A0%80", path)
            url = _fill(url)
            r = await api.client.request(
                method, url, headers={"content-type": "application/json", **api.auth(api.admin)}
            )
            where = f"{method} {path} ({name})"
            assert r.status_code == 400, f"{where}: {r.status_code} {r.text[:300]}"
            err = error_of(r)
            assert err["details"][0]["field"] == name, f"{where}: {err}"


async def test_valid_utf8_in_queries_and_paths_still_works(api: Api) -> None:
    r = await api.get("/identities", tag="caf%C3%A9")
    assert r.status_code == 200, r.text
    name = uid("d\u00e9v")
    r = await api.client.get(f"{V1}/identities/{name}", headers=api.auth(api.viewer))
    assert r.status_code in (400, 404), r.text
    assert "UTF-8" not in r.text
