"""Commissioning files: validation with JSON paths, and templates per protocol."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import Response

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import viewer
from millrace.api.errors import ApiError
from millrace.api.jsonbody import parse_json
from millrace.api.models import errors
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.api.yamlbody import decode_text, load_yaml
from millrace.connectors.commissioning import validate_document, validate_text
from millrace.connectors.registry import protocols

router = APIRouter(tags=["config"], route_class=StrictRoute)


def _host() -> type[BaseModel]:
    """The engine's configuration model: a `millrace run --config` file validates whole."""
    from millrace.pipeline.cli.config import MillraceConfig

    return MillraceConfig


MAX_BYTES = 1024 * 1024

_YAML_EXAMPLE = """connections:
  plc1: {protocol: modbus, host: 10.0.0.5, port: 502}
endpoints:
  - {connection: plc1, identity: press-4, signal: temp, register: holding, address: 10}
"""


@router.post(
    "/config/validate",
    summary="Validate a commissioning file",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {"schema": {"type": "string"}, "example": _YAML_EXAMPLE},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
    response_model=models.Validation,
    responses=errors(413),
)
async def validate(request: Request, caller: Principal = Depends(viewer)) -> JsonResponse:
    """Every violation of the file, each with its level, JSON path and description.

    The body is the YAML text (any text content type) or the document as JSON.
    ``${ENV}`` references are not resolved here: they are checked where the file
    runs. The answer is 200 whether the file passed or failed.
    """
    body = await request.body()
    if len(body) > MAX_BYTES:
        raise ApiError(
            413, "payload_too_large", f"a commissioning file is at most {MAX_BYTES} bytes"
        )
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        doc: Any = parse_json(body)
        _, violations = validate_document(doc, env={}, host_model=_host())
    else:
        try:
            doc = load_yaml(body)  # hostile documents: 400 naming body
        except yaml.YAMLError:  # not YAML: reported as a violation, like the CLI does
            _, violations = validate_text(decode_text(body), env={}, host_model=_host())
        else:
            _, violations = validate_document(doc, env={}, host_model=_host())
    # unset ${ENV} references say nothing about this file on this server
    violations = [v for v in violations if "environment variable" not in v.description]
    failed = any(v.level == "error" for v in violations)
    return JsonResponse(
        {
            "status": "failed" if failed else "passed",
            "violations": [v.model_dump() for v in violations],
        }
    )


@router.get(
    "/config/templates", summary="Protocols with a template", response_model=models.TemplateList
)
async def templates(_: Principal = Depends(viewer)) -> JsonResponse:
    return JsonResponse({"data": sorted(protocols())})


@router.get(
    "/config/templates/{protocol}",
    summary="A commissioning file template",
    responses={200: {"content": {"application/yaml": {}}}},
)
async def template(protocol: str, _: Principal = Depends(viewer)) -> Response:
    """A commented, valid commissioning file for ``protocol`` (YAML)."""
    spec = protocols().get(protocol)
    if spec is None:
        raise ApiError(
            404,
            "not_found",
            f"protocol: no template for {protocol!r}; one of {', '.join(sorted(protocols()))}",
            details=[{"field": "protocol", "message": "unknown protocol"}],
        )
    return Response(spec.template, media_type="application/yaml")


@router.get(
    "/config/schema", summary="JSON Schema of commissioning files", response_model=dict[str, Any]
)
async def schema(_: Principal = Depends(viewer)) -> JsonResponse:
    from millrace.connectors.schema import commissioning_json_schema

    return JsonResponse(commissioning_json_schema())
