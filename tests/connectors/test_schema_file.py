"""The JSON Schema for editors, committed as connectors/commissioning.schema.json."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from millrace.connectors.registry import protocols
from millrace.connectors.schema import commissioning_json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "connectors" / "commissioning.schema.json"


def test_committed_schema_is_the_generated_one() -> None:
    # regenerate with: millrace schema > connectors/commissioning.schema.json
    assert json.loads(SCHEMA_FILE.read_text()) == commissioning_json_schema()


def test_every_template_passes_the_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for name, spec in protocols().items():
        doc = yaml.safe_load(spec.template)
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
        assert errors == [], (name, [e.message for e in errors])


def test_the_schema_catches_what_an_editor_should_flag() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    doc = yaml.safe_load(protocols()["modbus"].template)
    validator = jsonschema.Draft202012Validator(schema)
    bad = dict(doc, colour="blue")  # an unknown top-level key
    assert any("colour" in e.message for e in validator.iter_errors(bad))
    conn = next(iter(doc["connections"]))
    bad = json.loads(json.dumps(doc))
    bad["connections"][conn]["port"] = "five-oh-two"
    assert list(validator.iter_errors(bad)) != []
