"""Validation of MQTT commissioning files: the template, every violation of a file with
many mistakes, and the MQTT-specific semantic checks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from millrace.connectors.commissioning import validate_text
from millrace.connectors.mqtt.config import MqttConnection, MqttEndpoint
from millrace.connectors.mqtt.spec import SPEC
from millrace.connectors.registry import protocols

from .conftest import _binary


def errors(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    _, violations = validate_text(textwrap.dedent(text), env=env or {})
    return {v.json_path: v.description for v in violations if v.level == "error"}


def test_template_is_valid() -> None:
    result, violations = validate_text(SPEC.template, env={"MQTT_PASSWORD": "pw"})
    assert violations == []
    assert result is not None
    conn = result.connections["broker"]
    assert isinstance(conn, MqttConnection)
    assert conn.password is not None and conn.password.get_secret_value() == "pw"
    assert conn.effective_port == 8883
    assert all(isinstance(e, MqttEndpoint) for e in result.endpoints)
    assert [m.topic for m in result.mappings] == ["meters/+/state"]
    assert protocols()["mqtt"] is SPEC


def test_template_without_the_password_only_warns() -> None:
    _, violations = validate_text(SPEC.template, env={})
    assert [(v.level, v.json_path) for v in violations] == [
        ("warning", "$.connections.broker.password")
    ]


MISTAKES = """
connections:
  broker:
    protocol: mqtt
    host: 127.0.0.1
    command_topic: plant/{device}/set/{signal}
    clean_session: false
  other:
    protocol: mqtt
    host: 127.0.0.1
  bad:
    protocol: mqtt
    host: 127.0.0.1
    port: high
    colour: blue
    tls: {insecure: maybe}
endpoints:
  - {connection: broker, identity: a, signal: s, topic: "plant/#/temp"}
  - {connection: broker, identity: b, signal: s, topic: "plant/+x/temp"}
  - {connection: broker, identity: c, signal: s, topic: plant/c, value_path: "$.v[*]"}
  - {connection: broker, identity: d, signal: s, topic: plant/d, colour: red}
  - {connection: broker, identity: e, signal: s, topic: plant/e, qos: high}
  - {connection: other, identity: f, signal: s, topic: plant/f, writable: true}
  - {connection: broker, identity: "{5}", signal: s, topic: "plant/+/g"}
  - {connection: broker, identity: h, signal: s, topic: plant/h, timestamp_path: $.ts}
  - {connection: broker, identity: i, signal: s, topic: plant/i}
mappings:
  - {connection: broker, topic: "m/#/x", identity: m0, values: {p: $.p}}
  - {connection: broker, topic: "m/+", identity: m1, values: {"p.q": "$..p"}}
  - {connection: broker, topic: "m/+"}
  - {connection: broker, topic: "m/+", identity_path: "$.id", timestamp_path: "ts",
     values: {p: $.p}, rename_signal: q}
  - {connection: broker, identity: x, values: {p: $.p}}
"""


def test_every_mistake_is_reported_with_its_path() -> None:
    found = errors(MISTAKES)
    expected = {
        "$.connections.broker.command_topic": "unknown placeholder {device}",
        "$.connections.broker.clean_session": "needs a fixed client_id",
        "$.connections.bad.port": "integer",
        "$.connections.bad.colour": "unknown key",
        "$.connections.bad.tls.insecure": "boolean",
        "$.endpoints[0].topic": "'#' must be the last level",
        "$.endpoints[1].topic": "'+' must be a whole level",
        "$.endpoints[2].value_path": "not supported",
        "$.endpoints[3].colour": "unknown key",
        "$.endpoints[4].qos": "0 or 1",
        "$.endpoints[5].writable": "need command_topic on connection 'other'",
        "$.endpoints[6].identity": "{5} refers to a topic level",
        "$.endpoints[7].timestamp_path": "needs value_path",
        "$.mappings[0].topic": "'#' must be the last level",
        "$.mappings[1].values['p.q']": "recursive descent",
        "$.mappings[2].values": "needs values",
        "$.mappings[2].identity": "needs identity_path or a literal identity",
        "$.mappings[3].timestamp_path": "starts with '$'",
        "$.mappings[3].rename_signal": "not used by a payload mapping",
        "$.mappings[4].values": "only used with topic",
    }
    assert set(found) == set(expected), found
    for path, words in expected.items():
        assert words in found[path], (path, found[path])


@pytest.mark.parametrize(
    ("extra", "path", "words"),
    [
        ("command_topic: p/+/set", "$.connections.c.command_topic", "'+' or '#'"),
        ("command_topic: 'p/{identity/set'", "$.connections.c.command_topic", "unbalanced"),
        ("tls: {key_file: k.pem}", "$.connections.c.tls.key_file", "needs cert_file"),
        ("keepalive: 1", "$.connections.c.keepalive", "greater than or equal to 5"),
    ],
)
def test_connection_checks(extra: str, path: str, words: str) -> None:
    found = errors(
        f"""
        connections:
          c:
            protocol: mqtt
            host: h
            {extra}
        """
    )
    assert path in found and words in found[path], found


def test_valid_file_with_templates_and_a_command_topic() -> None:
    found = errors(
        """
        connections:
          c: {protocol: mqtt, host: h, command_topic: "x/{identity}/{signal}/set"}
        endpoints:
          - {connection: c, topic: "a/+/b/#", identity: "{1}", signal: "{-1}", writable: true}
          - {connection: c, topic: "#", identity: "all", signal: "{0}"}
        mappings:
          - {connection: c, topic: "m/+", identity: "meter-{1}", values: {"{1}-p": $.p}}
        """
    )
    assert found == {}


def test_spec_does_not_import_the_mqtt_library() -> None:
    code = (
        "import sys, millrace.connectors.mqtt.spec, millrace.connectors.mqtt\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('aiomqtt', 'paho')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_missing_broker_binary_fails_the_tests_clearly() -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y mosquitto"):
        _binary("mosquitto-not-installed-here")
