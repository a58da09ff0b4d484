"""The Modbus section of a commissioning file: the template is valid, every mistake is
reported with its JSON path, and validation does not import pymodbus."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml

from millrace.connectors.commissioning import validate_document, validate_text
from millrace.connectors.modbus import SPEC, ModbusConnection, ModbusEndpoint
from millrace.connectors.registry import protocols


def test_template_is_valid_and_complete() -> None:
    result, violations = validate_text(SPEC.template, env={"MODBUS_HOST": "10.0.0.5"})
    assert violations == []
    assert result is not None
    conn = result.connections["plc1"]
    assert isinstance(conn, ModbusConnection) and conn.host == "10.0.0.5" and conn.port == 502
    eps = result.endpoints_of("plc1")
    assert len(eps) == 8 and all(isinstance(e, ModbusEndpoint) for e in eps)
    kinds = {e.kind for e in eps if isinstance(e, ModbusEndpoint)}
    assert kinds == {"holding", "input", "coil", "discrete"}
    assert protocols()["modbus"] is SPEC
    # the environment reference is reported when unset, never silently kept
    _, violations = validate_text(SPEC.template, env={})
    assert [(v.level, v.json_path) for v in violations] == [("warning", "$.connections.plc1.host")]


def test_validation_does_not_import_pymodbus() -> None:
    code = (
        "import sys; from millrace.connectors.commissioning import validate_text; "
        "from millrace.connectors.modbus.spec import SPEC; "
        "r, v = validate_text(SPEC.template, env={'MODBUS_HOST': 'h'}); "
        "assert r is not None, v; assert 'pymodbus' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _ep(**kw: Any) -> dict[str, Any]:
    base = {"connection": "plc", "identity": "m1", "register": "holding", "address": 0}
    return {**base, **kw}


def test_every_mistake_is_reported_with_its_path() -> None:
    doc = {
        "service": "plant",
        "connections": {
            "plc": {"protocol": "modbus", "host": "10.0.0.5"},
            "bad": {
                "protocol": "modbus",
                "host": "10.0.0.6",
                "port": "abc",  # wrong type
                "colour": "red",  # unknown key
                "max_registers_per_read": 200,  # beyond the protocol's 125
            },
        },
        "endpoints": [
            _ep(signal="s0", adress=5),  # misspelt: unknown key
            _ep(signal="s1", address=70000),  # bad address
            _ep(signal="s2", register="coil", data_type="float32"),  # a coil is one bit
            _ep(signal="s3", register="input", writable=True),  # input registers: read-only
            _ep(signal="s4", data_type="string"),  # a string needs its length
            _ep(signal="s5", data_type="float64", address=65534),  # runs past 65535
            _ep(signal="s6", register="holdng"),  # not a register kind
            _ep(signal="s7", interval_ms="fast"),  # wrong type
            _ep(signal="s8", connection="bad"),  # its connection has errors
            _ep(signal="s9", data_type="float32", word_order="little", writable=True),  # fine
            _ep(signal="s10", register="discrete", writable=True),  # read-only too
            _ep(signal="s11", data_type="string", length=126),  # longer than one read
            _ep(signal="s12", unit_id=256),  # unit ids are 0..255
        ],
    }
    result, violations = validate_document(doc, env={})
    assert result is None
    errors = sorted(v.json_path for v in violations if v.level == "error")
    assert errors == sorted(
        [
            "$.connections.bad.port",
            "$.connections.bad.colour",
            "$.connections.bad.max_registers_per_read",
            "$.endpoints[0].adress",
            "$.endpoints[1].address",
            "$.endpoints[2].data_type",
            "$.endpoints[3].writable",
            "$.endpoints[4].length",
            "$.endpoints[5].address",
            "$.endpoints[6].register",
            "$.endpoints[7].interval_ms",
            "$.endpoints[8].connection",
            "$.endpoints[10].writable",
            "$.endpoints[11].length",
            "$.endpoints[12].unit_id",
        ]
    )
    by_path = {v.json_path: v.description for v in violations}
    assert by_path["$.endpoints[0].adress"] == "unknown key"
    assert "data_type must be bool" in by_path["$.endpoints[2].data_type"]
    assert "only holding registers and coils" in by_path["$.endpoints[3].writable"]
    assert "runs past address 65535" in by_path["$.endpoints[5].address"]


def test_semantic_checks_against_the_connection() -> None:
    text = yaml.safe_dump(
        {
            "connections": {
                "plc": {"protocol": "modbus", "host": "h", "max_registers_per_read": 10}
            },
            "endpoints": [
                _ep(signal="name", data_type="string", length=20),  # > 10 registers per read
                _ep(signal="flag", data_type="bool", scale=2.0),  # warning: scale on a bool
                _ep(signal="n", length=3),  # warning: length on a uint16
                _ep(signal="a", address=5),  # overlapping endpoints are fine
                _ep(signal="b", address=5, data_type="int32"),
            ],
            "mappings": [{"connection": "plc", "topic": "x/#"}],
        }
    )
    result, violations = validate_text(text, env={})
    assert result is None
    assert [(v.level, v.json_path) for v in violations] == [
        ("error", "$.endpoints[0].length"),
        ("warning", "$.endpoints[1].scale"),
        ("warning", "$.endpoints[2].length"),
        ("warning", "$.mappings[0].topic"),
    ]
    assert "max_registers_per_read (10)" in violations[0].description
