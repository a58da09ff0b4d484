"""A service's commissioning file as the API receives and shows it: the request body
(YAML text, or JSON: the document itself or ``{"commissioning": ..., "parameters":
..., "runners": [...]}``), its validation as ``/config/validate`` does it, and the file
shown with secrets masked."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from fastapi import Request

from millrace.api.errors import ApiError, bad_request
from millrace.api.jsonbody import parse_json
from millrace.api.yamlbody import decode_text, load_yaml
from millrace.connectors._common.models import Violation
from millrace.connectors.commissioning import Commissioning, parse_yaml, validate_document
from millrace.connectors.secrets import MASKED, secret_value

MAX_BYTES = 1024 * 1024
_WHOLE_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


@dataclass
class ServiceFile:
    """What a POST or PUT carries: the document, its text, parameter values, runners."""

    doc: Any
    text: str
    parameters: dict[str, Any] = field(default_factory=dict)
    runners: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)


def _query_values(request: Request) -> tuple[dict[str, Any], list[str]]:
    raw = request.query_params.get("parameters")
    values: Any = {}
    if raw is not None:
        try:
            values = json.loads(raw)
        except ValueError:
            raise bad_request("parameters", "must be a JSON object") from None
        if not isinstance(values, dict):
            raise bad_request("parameters", "must be a JSON object")
    return values, request.query_params.getlist("runner")


async def read_service_file(request: Request) -> ServiceFile:
    """The body as a :class:`ServiceFile`; 413 over 1 MiB, 400 for a body that is not
    UTF-8, not JSON (when it says so) or a malformed envelope."""
    body = await request.body()
    if len(body) > MAX_BYTES:
        raise ApiError(
            413, "payload_too_large", f"a commissioning file is at most {MAX_BYTES} bytes"
        )
    values, runners = _query_values(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        doc = parse_json(body)
        if isinstance(doc, dict) and "commissioning" in doc:
            extra = sorted(set(doc) - {"commissioning", "parameters", "runners"})
            if extra:
                raise bad_request(
                    extra[0], "unknown field; one of commissioning, parameters, runners"
                )
            if not isinstance(doc.get("parameters", {}), dict):
                raise bad_request("parameters", "must be an object")
            listed = doc.get("runners", [])
            if not isinstance(listed, list) or not all(isinstance(r, str) for r in listed):
                raise bad_request("runners", "must be a list of runner names")
            values = {**values, **doc.get("parameters", {})}
            runners = [*runners, *listed]
            doc = doc["commissioning"]
            if isinstance(doc, str):
                return _from_text(doc.encode(), values, runners)
        return ServiceFile(doc, json.dumps(doc, indent=2), values, runners)
    return _from_text(body, values, runners)


def _from_text(body: bytes, values: dict[str, Any], runners: list[str]) -> ServiceFile:
    try:
        doc = load_yaml(body)
    except yaml.YAMLError:
        text = decode_text(body)
        return ServiceFile(None, text, values, runners, parse_yaml(text)[1])
    return ServiceFile(doc, decode_text(body), values, runners)


def validated(file: ServiceFile) -> Commissioning:
    """The typed file, as ``/config/validate`` checks it (``${ENV}`` is resolved where
    the file runs); 400 with every violation and its JSON path otherwise."""
    violations = list(file.violations)
    commissioning = None
    if not violations:
        commissioning, violations = validate_document(file.doc, env={}, parameters=file.parameters)
        violations += masked_placeholders(file.doc)
    errors = [v for v in violations if v.level == "error"]
    if commissioning is None or errors:
        raise ApiError(
            400,
            "invalid_commissioning",
            f"{len(errors)} violation(s): " + "; ".join(v.line() for v in errors[:5]),
            [{"field": v.json_path, "message": v.description, **v.model_dump()} for v in errors],
        )
    return commissioning


def masked(doc: Any) -> Any:
    """``doc`` with every credential-like value replaced by ``***`` (``${ENV}``
    references are shown: they name a variable, not a secret)."""
    if isinstance(doc, dict):
        return {
            k: MASKED
            if secret_value(k, v) and not (isinstance(v, str) and _WHOLE_REF.match(v))
            else masked(v)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [masked(v) for v in doc]
    return doc


def masked_placeholders(doc: Any, path: str = "$") -> list[Violation]:
    """An error for every credential-like value that is still the ``***`` this API shows
    in its place: a file read back from ``GET /services/{id}`` and sent again unchanged
    would otherwise replace the secret with three asterisks."""
    found: list[Violation] = []
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for k, v in items:
        at = f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}"
        if v == MASKED and secret_value(k, v):
            found.append(
                Violation(
                    level="error",
                    json_path=at,
                    description="the masked placeholder *** of a secret: "
                    "send the secret or an ${ENV} reference",
                )
            )
        else:
            found += masked_placeholders(v, at)
    return found


def document_of(text: str) -> dict[str, Any]:
    """A stored service text parsed again (empty when it no longer parses)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}
