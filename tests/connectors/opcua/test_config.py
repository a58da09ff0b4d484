"""OPC UA commissioning: the template validates, every mistake is reported with its
path, and node ids / browse paths parse as asyncua parses them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from asyncua import ua
from hypothesis import assume, given
from hypothesis import strategies as st

from millrace.connectors.commissioning import validate_text
from millrace.connectors.opcua.config import OpcuaConnection, escape_name, parse_node_ref
from millrace.connectors.opcua.spec import SPEC

ENV = {"OPCUA_USER": "operator", "OPCUA_PASSWORD": "secret"}


def test_template_is_valid() -> None:
    result, violations = validate_text(SPEC.template, env=ENV)
    assert [v for v in violations if v.level == "error"] == []
    assert result is not None
    conn = result.connections["line1-plc"]
    assert isinstance(conn, OpcuaConnection) and conn.password == "secret"
    assert len(result.endpoints_of("line1-plc")) == 4
    # nothing secret is written in the template itself
    assert "${OPCUA_PASSWORD}" in SPEC.template


def test_validation_does_not_import_asyncua() -> None:
    code = (
        "import sys; from millrace.connectors.registry import protocols; "
        "from millrace.connectors.commissioning import validate_text; "
        "s = protocols()['opcua']; validate_text(s.template, env={}); "
        "print('asyncua' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


BAD = textwrap.dedent(
    """\
    connections:
      plc:
        protocol: opcua
        url: opc.tcp://plc-1:4840
        security_mode: Sign
        certificate: /no/such/cert.der
        password: ${OPCUA_PASSWORD}
      other:
        protocol: opcua
        url: http://plc-2
        colour: blue
        timeout_ms: fast
      both:
        protocol: opcua
        url: opc.tcp://plc-3
        host: plc-3
        security_policy: Basic256Sha256
    endpoints:
      - {connection: plc, identity: p, signal: a, node_id: "ns=2;s=A"}
      - {connection: plc, identity: p, signal: b, node_id: "ns=x;i=12"}
      - {connection: plc, identity: p, signal: c, node_id: "ns=2;i=abc"}
      - {connection: plc, identity: p, signal: d, node_id: "/2:Plant//2:X"}
      - {connection: plc, identity: p, signal: e, node_id: "ns=2;s=E", interval_ms: "1s"}
      - {connection: plc, identity: p, signal: f, node_id: "ns=2;s=F", writable: true, scale: 0}
      - {connection: plc, identity: p, signal: g, node_id: "ns=2;s=A", deadband: 1}
      - {connection: plc, identity: p, signal: h, node_id: "ns=2;s=H", data_type: bool,
         deadband: 0.5}
      - {connection: plc, identity: p, signal: i, nodeid: "ns=2;s=I"}
    mappings:
      - {connection: plc, topic: "plant/#", values: {t: $.t}}
    """
)


def test_every_mistake_is_reported_with_its_path() -> None:
    result, violations = validate_text(BAD, env=ENV)
    assert result is None
    errors = {(v.json_path, v.description) for v in violations if v.level == "error"}
    paths = {p for p, _ in errors}
    warnings = {v.json_path for v in violations if v.level == "warning"}
    expected_errors = {
        "$.connections.other.colour",  # unknown key
        "$.connections.plc.security_policy",  # Sign with policy None
        "$.connections.plc.private_key",  # Sign without a key
        "$.connections.plc.password",  # password without username
        "$.connections.other.url",  # not opc.tcp
        "$.connections.both.host",  # url and host
        "$.connections.both.security_mode",  # policy without a mode
        "$.connections.both.certificate",
        "$.connections.both.private_key",
        "$.connections.other.timeout_ms",  # wrong type
        "$.endpoints[1].node_id",  # bad namespace
        "$.endpoints[2].node_id",  # bad numeric id
        "$.endpoints[3].node_id",  # empty browse path element
        "$.endpoints[4].interval_ms",  # wrong type
        "$.endpoints[5].scale",  # writable with scale 0
        "$.endpoints[8].nodeid",  # unknown key
        "$.endpoints[8].node_id",  # missing
        "$.mappings[0].topic",  # MQTT payload mapping on opcua
    }
    assert paths == expected_errors, (paths - expected_errors, expected_errors - paths)
    assert {
        "$.connections.plc.certificate",  # file not found here
        "$.endpoints[6].node_id",  # same node at the same interval
        "$.endpoints[7].deadband",  # deadband on a bool
    } <= warnings
    by_path = dict(errors)
    assert by_path["$.connections.other.colour"] == "unknown key"
    assert (
        "Sign needs a security_policy other than None"
        in by_path["$.connections.plc.security_policy"]
    )
    assert "opc.tcp://" in by_path["$.connections.other.url"]
    assert "0-65535" in by_path["$.endpoints[1].node_id"]
    assert "0-4294967295" in by_path["$.endpoints[2].node_id"]


@pytest.mark.parametrize(
    "text",
    [
        "ns=2;s=Press1.Temperature",
        "ns=2;s=a;b=c",  # the string identifier takes the rest, ';' included
        "ns=2;i=1001",
        "i=2258",
        "s=Plain",
        "ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a",
        "ns=1;b=M/RbKBsRVkePCePcx24oRA==",
        "ns=65535;i=4294967295",
    ],
)
def test_node_ids_parse_like_asyncua(text: str) -> None:
    ref = parse_node_ref(text)
    assert ref.kind == "id"
    assert ua.NodeId.from_string(ref.node_id_text()) == ua.NodeId.from_string(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ns=2;s=A",
        "ns=2",
        "ns=70000;i=1",
        "ns=2;i=-1",
        "ns=2;i=4294967296",
        "ns=2;s=",
        "ns=2;g=not-a-guid",
        "ns=2;b=***",
        "ns=2;x=1",
        "Temperature",
        "/",
        "/2:Plant/",
        "/2:Pl.ant",
        "/abc:Name",
    ],
)
def test_bad_node_ids_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_node_ref(text)


def test_namespace_uri_form() -> None:
    ref = parse_node_ref("nsu=urn:plant:line1;s=Press1.Temp")
    assert (ref.namespace_uri, ref.id_type, ref.identifier) == (
        "urn:plant:line1",
        "s",
        "Press1.Temp",
    )
    assert ref.node_id_text(4) == "ns=4;s=Press1.Temp"


names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


@given(st.lists(st.tuples(st.integers(0, 65535), names), min_size=1, max_size=5))
def test_browse_paths_round_trip_through_asyncua(elements: list[tuple[int, str]]) -> None:
    assume(elements[-1][1] == elements[-1][1].rstrip())  # trailing spaces: taken as a typo
    text = "".join(f"/{ns}:{escape_name(name)}" for ns, name in elements)
    ref = parse_node_ref(text)
    assert ref.kind == "path" and list(ref.elements) == elements
    parsed = ua.RelativePath.from_string(ref.relative_path())
    assert [(e.TargetName.NamespaceIndex, e.TargetName.Name) for e in parsed.Elements] == elements


@given(st.integers(0, 65535), st.integers(0, 2**32 - 1))
def test_numeric_ids(ns: int, i: int) -> None:
    ref = parse_node_ref(f"ns={ns};i={i}")
    assert ua.NodeId.from_string(ref.node_id_text()) == ua.NodeId(ua.Int32(i), ua.Int16(ns))


def test_url_or_host() -> None:
    c = OpcuaConnection(protocol="opcua", url="opc.tcp://plc-1/server")
    assert c.endpoint_url() == "opc.tcp://plc-1:4840/server"
    c = OpcuaConnection(protocol="opcua", host="10.0.0.5", port=4841, path="/ua")
    assert c.endpoint_url() == "opc.tcp://10.0.0.5:4841/ua"
    c = OpcuaConnection(protocol="opcua", url="opc.tcp://[::1]:4850")
    assert c.endpoint_url() == "opc.tcp://[::1]:4850"
    for url in ("opc.tcp://user:pw@plc:4840", "opc.tcp://plc:99999", "opc.tcp://", "tcp://plc"):
        with pytest.raises(ValueError):
            OpcuaConnection(protocol="opcua", url=url)
