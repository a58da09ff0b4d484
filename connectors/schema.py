"""JSON Schema of commissioning files, generated from the typed models (for editors:
e.g. the YAML language server's ``# yaml-language-server: $schema=...``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from millrace.connectors._common.models import MappingConfig
from millrace.connectors.registry import protocols


def _schema(models: list[type[BaseModel]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """anyOf over ``models`` with their shared $defs."""
    defs: dict[str, Any] = {}
    variants = []
    for m in models:
        s = TypeAdapter(m).json_schema(ref_template="#/$defs/{model}")
        defs.update(s.pop("$defs", {}))
        defs[m.__name__] = s
        variants.append({"$ref": f"#/$defs/{m.__name__}"})
    return {"anyOf": variants}, defs


def commissioning_json_schema() -> dict[str, Any]:
    specs = protocols().values()
    conns, d1 = _schema([s.connection_model for s in specs])
    eps, d2 = _schema(list({s.endpoint_model: None for s in specs}))
    maps, d3 = _schema([MappingConfig])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "millrace commissioning file",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "version": {"const": 1},
            "service": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
            "description": {"type": "string"},
            "connections": {"type": "object", "additionalProperties": conns},
            "endpoints": {"type": "array", "items": eps},
            "mappings": {"type": "array", "items": maps},
        },
        "$defs": {**d1, **d2, **d3},
    }
