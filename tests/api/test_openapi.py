"""The OpenAPI document lists every endpoint, with its parameters and security."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import V1, Api

ENDPOINTS = {
    ("post", f"{V1}/identities/{{identity}}/data"),
    ("get", f"{V1}/identities/{{identity}}/signals/{{signal}}"),
    ("get", f"{V1}/identities/{{identity}}/signals"),
    ("get", f"{V1}/identities/{{identity}}/signals/{{signal}}/aggregates"),
    ("get", f"{V1}/identities/{{identity}}/signals/aggregates"),
    ("get", f"{V1}/signals/latest"),
    ("post", f"{V1}/sql"),
    ("get", f"{V1}/status"),
    ("get", f"{V1}/me"),
    ("get", f"{V1}/keys"),
    ("post", f"{V1}/keys"),
    ("delete", f"{V1}/keys/{{key_id}}"),
    ("post", f"{V1}/keys/{{key_id}}/rotate"),
    ("get", f"{V1}/deadletters"),
    ("get", f"{V1}/archive"),
    ("post", f"{V1}/archive/flush"),
    ("post", f"{V1}/restore/time"),
    ("post", f"{V1}/restore/url"),
    ("get", f"{V1}/restore"),
    ("get", f"{V1}/restore/{{task_id}}"),
    ("post", f"{V1}/restore/{{task_id}}/retry"),
    ("post", f"{V1}/replay"),
    ("get", f"{V1}/replay"),
    ("get", f"{V1}/replay/{{task_id}}"),
    ("post", f"{V1}/config/validate"),
    ("get", f"{V1}/config/templates"),
    ("get", f"{V1}/config/templates/{{protocol}}"),
    ("get", f"{V1}/config/schema"),
    ("get", f"{V1}/connectors"),
    ("get", f"{V1}/connectors/{{name}}"),
    ("post", f"{V1}/identities"),
    ("get", f"{V1}/identities"),
    ("get", f"{V1}/identities/count"),
    ("post", f"{V1}/identities/bulk/update"),
    ("post", f"{V1}/identities/bulk/delete"),
    ("get", f"{V1}/identities/{{identity}}"),
    ("patch", f"{V1}/identities/{{identity}}"),
    ("delete", f"{V1}/identities/{{identity}}"),
    ("post", f"{V1}/identities/{{identity}}/lock"),
    ("post", f"{V1}/identities/{{identity}}/unlock"),
    ("post", f"{V1}/identities/{{identity}}/tags"),
    ("get", f"{V1}/identities/{{identity}}/tags"),
    ("get", f"{V1}/identities/{{identity}}/tags/{{tag}}"),
    ("delete", f"{V1}/identities/{{identity}}/tags/{{tag}}"),
    ("get", f"{V1}/tags"),
    ("get", f"{V1}/tags/{{tag}}"),
    ("get", f"{V1}/identities/{{identity}}/state"),
    ("post", f"{V1}/identities/{{identity}}/state"),
    ("get", f"{V1}/resources"),
    ("get", f"{V1}/resources/{{name}}"),
    ("post", f"{V1}/resources/{{name}}"),
    ("put", f"{V1}/resources/{{name}}"),
    ("delete", f"{V1}/resources/{{name}}"),
    ("post", f"{V1}/provision"),
    ("get", f"{V1}/metrics/devices"),
    ("get", f"{V1}/alarms"),
    ("get", f"{V1}/alarms/{{alarm_id}}"),
    ("post", f"{V1}/alarms/{{alarm_id}}/acknowledge"),
    ("post", f"{V1}/alarms/{{alarm_id}}/discard"),
    ("post", f"{V1}/alarms/{{alarm_id}}/annotations"),
    ("get", f"{V1}/alarms/{{alarm_id}}/annotations"),
    ("post", f"{V1}/alarms/batch/acknowledge"),
    ("post", f"{V1}/alarms/batch/discard"),
    ("get", f"{V1}/alarm-rules"),
    ("post", f"{V1}/alarm-rules"),
    ("get", f"{V1}/alarm-rules/{{rule_id}}"),
    ("put", f"{V1}/alarm-rules/{{rule_id}}"),
    ("delete", f"{V1}/alarm-rules/{{rule_id}}"),
    ("get", f"{V1}/audits"),
    ("get", f"{V1}/audits/{{audit_id}}"),
    ("get", f"{V1}/activities"),
    ("get", f"{V1}/resources/states"),
    ("get", f"{V1}/resources/states/deviations"),
    ("get", f"{V1}/resources/states/deviations/count"),
    ("get", f"{V1}/resource-runners"),
    ("get", f"{V1}/stream"),
    ("post", f"{V1}/stream/{{stream_id}}/subscriptions"),
    ("get", f"{V1}/stream/{{stream_id}}/subscriptions"),
    ("delete", f"{V1}/stream/{{stream_id}}/subscriptions/{{subscription_id}}"),
    ("post", f"{V1}/login"),
    ("post", f"{V1}/refresh"),
    ("post", f"{V1}/logout"),
    ("post", f"{V1}/auth/keys/rotate"),
    ("put", f"{V1}/me/password"),
    ("get", f"{V1}/users"),
    ("post", f"{V1}/users"),
    ("get", f"{V1}/users/{{username}}"),
    ("patch", f"{V1}/users/{{username}}"),
    ("delete", f"{V1}/users/{{username}}"),
    ("get", f"{V1}/permissions"),
    ("get", f"{V1}/roles"),
    ("post", f"{V1}/roles"),
    ("get", f"{V1}/roles/{{name}}"),
    ("put", f"{V1}/roles/{{name}}"),
    ("delete", f"{V1}/roles/{{name}}"),
    ("get", f"{V1}/system/info"),
    ("get", f"{V1}/system/metrics"),
    ("post", f"{V1}/pipeline/pause"),
    ("post", f"{V1}/pipeline/resume"),
    ("get", f"{V1}/logs"),
    ("get", f"{V1}/logs/stream"),
    ("get", f"{V1}/config"),
    ("patch", f"{V1}/config"),
    ("post", f"{V1}/services"),
    ("get", f"{V1}/services"),
    ("get", f"{V1}/services/{{service_id}}"),
    ("put", f"{V1}/services/{{service_id}}"),
    ("delete", f"{V1}/services/{{service_id}}"),
    ("post", f"{V1}/services/{{service_id}}/enable"),
    ("post", f"{V1}/services/{{service_id}}/disable"),
    ("post", f"{V1}/connectors/{{name}}/{{action}}"),
}
#: device-facing, open by design (see tests/api/test_auth.py OPEN_ROUTES)
OPEN = {
    ("post", f"{V1}/provision"),
    ("post", f"{V1}/login"),
    ("post", f"{V1}/refresh"),
    ("post", f"{V1}/logout"),
}

QUERY_PARAMS = {"start_time", "end_time", "epoch", "limit", "page", "order"}


@pytest.fixture
async def openapi(api: Api) -> dict[str, Any]:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m, p): op for p, ops in doc["paths"].items() for m, op in ops.items()}


async def test_every_endpoint_is_listed(openapi: dict[str, Any]) -> None:
    listed = set(operations(openapi))
    assert listed >= ENDPOINTS, ENDPOINTS - listed
    assert {op for op in listed if op[1].startswith(V1)} == ENDPOINTS


async def test_every_endpoint_needs_the_bearer_key(openapi: dict[str, Any]) -> None:
    schemes = openapi["components"]["securitySchemes"]
    [(name, scheme)] = schemes.items()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for key, op in operations(openapi).items():
        if key in OPEN:
            assert "security" not in op, key
            continue
        assert op.get("security") == [{name: []}], key


async def test_query_parameters_are_documented(openapi: dict[str, Any]) -> None:
    ops = operations(openapi)
    for method, path in ENDPOINTS:
        if "signals" in path and "latest" not in path:
            names = {p["name"] for p in ops[(method, path)].get("parameters", [])}
            assert names >= QUERY_PARAMS, (path, QUERY_PARAMS - names)
            if "aggregates" in path:
                assert {"bucket", "fields"} <= names
    latest = {p["name"] for p in ops[("get", f"{V1}/signals/latest")]["parameters"]}
    assert latest >= {"identities", "signals", "sort_key", "reverse", "epoch", "limit", "page"}


async def test_ingest_documents_the_sample_schema(openapi: dict[str, Any]) -> None:
    op = openapi["paths"][f"{V1}/identities/{{identity}}/data"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "array"
    sample = body["items"]
    assert set(sample["properties"]) == {"timestamp", "values", "quality"}
    assert sample["required"] == ["timestamp", "values"]
    assert sample.get("additionalProperties") is False


ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _schema(response: dict[str, Any]) -> Any:
    return response.get("content", {}).get("application/json", {}).get("schema")


async def test_no_operation_documents_422(openapi: dict[str, Any]) -> None:
    """The API answers invalid input with 400 and the error body, never 422."""
    for key, op in operations(openapi).items():
        assert "422" not in op["responses"], key
    assert "HTTPValidationError" not in openapi["components"]["schemas"]


async def test_every_operation_documents_its_answer(openapi: dict[str, Any]) -> None:
    """A 2xx with a schema that is not ``{}`` (204: no body; text media types: a
    string), and the error body on every documented error status."""
    for key, op in operations(openapi).items():
        ok = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        assert ok, key
        for status, response in ok.items():
            if status == "204":
                assert "content" not in response, key
                continue
            [(media_type, body)] = response["content"].items()
            assert body.get("schema") not in (None, {}), (key, status, media_type)
        errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        for status, response in errors.items():
            assert _schema(response) == ERROR_REF, (key, status)


async def test_errors_are_documented_where_they_can_happen(openapi: dict[str, Any]) -> None:
    """401 and 403 on every authenticated operation; 400 wherever there is input;
    404 wherever the path names an object."""
    for key, op in operations(openapi).items():
        responses = set(op["responses"])
        if op.get("security"):
            assert {"401", "403", "413", "429", "503"} <= responses, key
        if op.get("parameters") or "requestBody" in op:
            assert "400" in responses, key
        if "{" in key[1]:
            assert "404" in responses, key
    ops = operations(openapi)
    assert "409" in ops[("post", f"{V1}/identities")]["responses"]
    assert "409" in ops[("post", f"{V1}/alarm-rules")]["responses"]
    assert "207" in ops[("post", f"{V1}/alarms/batch/acknowledge")]["responses"]


async def test_error_body_schema(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["error"]
    assert set(schemas["ErrorInfo"]["required"]) == {"code", "message", "details"}


LINKED = {
    f"{V1}/identities": ("post", {"GetIdentity", "UpdateIdentity", "DeleteIdentity"}),
    f"{V1}/resources/{{name}}": ("post", {"GetResource", "ReplaceResource", "DeleteResource"}),
    f"{V1}/alarm-rules": ("post", {"GetAlarmRule", "ReplaceAlarmRule", "DeleteAlarmRule"}),
}


async def test_create_operations_link_to_get_update_delete(openapi: dict[str, Any]) -> None:
    ids = {op["operationId"]: key for key, op in operations(openapi).items()}
    for path, (method, names) in LINKED.items():
        [created] = [
            r for s, r in openapi["paths"][path][method]["responses"].items() if s[0] == "2"
        ]
        links = created["links"]
        assert set(links) == names, path
        methods = set()
        for link in links.values():
            target = ids[link["operationId"]]
            methods.add(target[0])
            [(param, expr)] = link["parameters"].items()
            assert f"{{{param}}}" in target[1] and expr.startswith("$response.body#/")
        assert methods in ({"get", "patch", "delete"}, {"get", "put", "delete"}), path
