"""A commissioning file holds secrets as ``${ENV}`` references only (connectors.secrets):
the file is stored with the service on the log as written."""

from __future__ import annotations

import pytest

from millrace.connectors.commissioning import validate_text
from millrace.connectors.secrets import literal_secrets

FILE = """
service: line-2
parameters:
  brokerPass: {type: string, default: x}
connections:
  br:
    protocol: mqtt
    host: 127.0.0.1
    username: reader
    password: PASSWORD
endpoints:
  - {connection: br, identity: a, signal: s, topic: "a/s"}
"""


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("hunter2", "stored with the service on the log"),
        ("'pre-${MQTT_PASSWORD}'", "stored with the service on the log"),
        ("12345", "stored with the service on the log"),
        ("${brokerPass}", "${brokerPass} is a parameter of this file"),
        ("${MQTT_PASSWORD}", None),
        ("${MQTT_USER}${MQTT_PASSWORD}", None),
        ("''", None),
    ],
)
def test_a_credential_is_an_environment_reference(value: str, error: str | None) -> None:
    env = {"MQTT_PASSWORD": "from-the-environment", "MQTT_USER": "u"}
    result, violations = validate_text(FILE.replace("PASSWORD", value), env=env)
    errors = [v for v in violations if v.level == "error"]
    if error is None:
        assert errors == [], [v.line() for v in errors]
        assert result is not None
        return
    assert result is None
    ours = [v for v in errors if error in v.description]
    assert [v.json_path for v in ours] == ["$.connections.br.password"]
    assert "hunter2" not in ours[0].description  # the secret is not echoed


def test_every_credential_key_in_every_section_is_checked() -> None:
    doc = {
        "parameters": {"p": {"type": "string"}},
        "connections": {
            "opc": {"private_key_password": "k", "client_secret": "${CS}", "username": "u"},
            "x": {"tls": {"passphrase": "pp"}},
        },
        "endpoints": [{"api_key": "${p}", "signal": "s"}, {"token": None, "signal": "t"}],
        "mappings": [{"values": {"credential": 7}}],
        # the API's masked placeholder is left to the API's own check
        "other": {"password": "not a connector section"},
    }
    doc["connections"]["y"] = {"password": "***"}
    assert sorted(v.json_path for v in literal_secrets(doc)) == [
        "$.connections.opc.private_key_password",
        "$.connections.x.tls.passphrase",
        "$.endpoints[0].api_key",
        "$.mappings[0].values.credential",
    ]


@pytest.mark.parametrize(
    ("key", "credential"),
    [
        ("password", True),
        ("private_key_password", True),
        ("clientSecret", True),
        ("access-token", True),
        ("api_key", True),
        ("apiKey", True),
        ("credentials", True),
        # keys that only mention a credential hold none
        ("token_url", False),
        ("password_file", False),
        ("secret_name", False),
        ("tokenEndpoint", False),
        ("username", False),
    ],
)
def test_a_credential_key_is_one_whose_last_word_names_a_credential(
    key: str, credential: bool
) -> None:
    doc = {"connections": {"c": {key: "literal"}}}
    assert bool(literal_secrets(doc)) is credential


def test_a_switch_under_a_credential_key_is_no_secret() -> None:
    from millrace.api.service_files import masked

    doc = {"connections": {"c": {"use_token": True, "token": "${T}", "password": "p"}}}
    assert literal_secrets(doc)[0].json_path == "$.connections.c.password"
    assert len(literal_secrets(doc)) == 1
    # shown as it is (a switch), so a file read back and sent again keeps it
    shown = {"use_token": True, "token": "${T}", "password": "***"}
    assert masked(doc)["connections"]["c"] == shown
