"""The OpenAPI document as the API really behaves.

FastAPI documents a 422 ``HTTPValidationError`` on every route with parameters; this
API answers invalid input with 400 and ``{"error": {...}}`` (``api.errors``). The
document built here drops every 422 and its schemas, and adds the error body
(``api.models.ErrorBody``) where the API can answer it whatever the route:

* 400 on every operation with parameters or a body (validation);
* 404 on every operation with path parameters (no such object, or a value holding a
  ``/`` that makes the path match no route);
* 401, 403, 413, 429 and 503 on every authenticated operation (credential, role, body
  limit, rate and concurrency limits, overload) — 413 and 503 on the open ones too.

It also declares OpenAPI links from the create operations to the get / update /
delete operations of what they created (identities, resources, alarm rules), which
the stateful phase of the fuzzer follows.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from millrace.api.models import ERROR_DESCRIPTIONS

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
AUTHENTICATED_ERRORS = (401, 403, 413, 429, 503)
OPEN_ERRORS = (413, 503)

#: (method, path) of a create -> the path parameter and where it is in the created
#: object's JSON, and the links: (name, method, path, whether the created object is
#: sent back as the body — a rule's JSON is a valid replacement of itself)
LINKS: dict[tuple[str, str], tuple[str, str, list[tuple[str, str, str, bool]]]] = {
    ("post", "/api/v1/identities"): (
        "identity",
        "/identity",
        [
            ("GetIdentity", "get", "/api/v1/identities/{identity}", False),
            ("UpdateIdentity", "patch", "/api/v1/identities/{identity}", False),
            ("DeleteIdentity", "delete", "/api/v1/identities/{identity}", False),
        ],
    ),
    ("post", "/api/v1/resources/{name}"): (
        "name",
        "/name",
        [
            ("GetResource", "get", "/api/v1/resources/{name}", False),
            ("ReplaceResource", "put", "/api/v1/resources/{name}", False),
            ("DeleteResource", "delete", "/api/v1/resources/{name}", False),
        ],
    ),
    ("post", "/api/v1/alarm-rules"): (
        "rule_id",
        "/id",
        [
            ("GetAlarmRule", "get", "/api/v1/alarm-rules/{rule_id}", False),
            ("ReplaceAlarmRule", "put", "/api/v1/alarm-rules/{rule_id}", True),
            ("DeleteAlarmRule", "delete", "/api/v1/alarm-rules/{rule_id}", False),
        ],
    ),
}


def _error(status: int) -> dict[str, Any]:
    return {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": ERROR_REF}},
    }


def _fix_operation(op: dict[str, Any]) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    responses.pop("422", None)
    params = op.get("parameters", [])
    wanted: list[int] = []
    if params or "requestBody" in op:
        wanted.append(400)
    if any(p.get("in") == "path" for p in params):
        wanted.append(404)
    wanted.extend(AUTHENTICATED_ERRORS if op.get("security") else OPEN_ERRORS)
    for code in wanted:
        responses.setdefault(str(code), _error(code))
    for status, response in responses.items():
        if status.startswith(("4", "5")) and "content" not in response:
            # a declared status without a body schema gets the error body
            response["content"] = {"application/json": {"schema": ERROR_REF}}
        content = response.get("content", {})
        text_types = [t for t in content if t != "application/json"]
        if status.startswith("2") and text_types:
            # YAML templates, the event stream: text, never the JSON FastAPI assumes
            if not content.get("application/json", {}).get("schema", True):
                del content["application/json"]
            for media_type in text_types:
                content[media_type].setdefault("schema", {"type": "string"})


def _add_links(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    for (method, path), (param, pointer, targets) in LINKS.items():
        op = paths.get(path, {}).get(method)
        if op is None:
            continue
        created = next(s for s in op["responses"] if s.startswith("2"))
        links = op["responses"][created].setdefault("links", {})
        for name, t_method, t_path, send_back in targets:
            target = paths.get(t_path, {}).get(t_method)
            if target is None:
                continue
            links[name] = {
                "operationId": target["operationId"],
                "parameters": {param: f"$response.body#{pointer}"},
            }
            if send_back:
                links[name]["requestBody"] = "$response.body"


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with the changes of the module doc (cached)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            _fix_operation(op)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    if "ErrorBody" not in schemas:
        from millrace.api.models import ErrorBody

        defs = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(defs.pop("$defs", {}))
        schemas["ErrorBody"] = defs
    _add_links(doc)
    app.openapi_schema = doc
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`build_openapi` as the app's ``/openapi.json``."""

    def openapi() -> dict[str, Any]:
        return build_openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]
