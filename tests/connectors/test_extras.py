"""A protocol whose library is not installed fails validation with the install hint."""

from __future__ import annotations

import sys

import pytest

from millrace.connectors.commissioning import validate_text
from millrace.connectors.registry import protocols

ENV = {"OPCUA_USER": "u", "OPCUA_PASSWORD": "x", "MODBUS_HOST": "h", "MQTT_PASSWORD": "x"}


@pytest.mark.parametrize(
    ("protocol", "module"), [("opcua", "asyncua"), ("modbus", "pymodbus"), ("mqtt", "aiomqtt")]
)
def test_a_missing_library_is_a_validation_error(
    protocol: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = protocols()[protocol]
    assert module in spec.requires and spec.extra == protocol
    _, before = validate_text(spec.template, env=ENV)
    assert not [v for v in before if v.level == "error"]
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled module looks like
    _, violations = validate_text(spec.template, env=ENV)
    errors = [v for v in violations if v.level == "error"]
    assert errors, violations
    assert all(v.json_path.endswith(".protocol") for v in errors)
    assert f"pip install 'millrace[{protocol}]'" in errors[0].description
    assert module in errors[0].description


def test_the_built_in_protocols_need_no_extra() -> None:
    for name in ("simulator", "files"):
        assert protocols()[name].missing() == []
