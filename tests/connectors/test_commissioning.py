"""The commissioning file as a whole: every violation with its path, ${ENV}
references, the simulator protocol under the manager, Command routing, the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from millrace.connectors.commissioning import load_commissioning, validate_text
from millrace.connectors.manager import ConnectorManager, route_commands
from millrace.connectors.registry import protocols
from millrace.pipeline.cli.main import app
from millrace.pipeline.codec import default_codec
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.errors import ConfigError
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.telemetry_columns import samples_of

SIM = """
service: line-1
connections:
  sim:
    protocol: simulator
    devices: 2
    signals: 3
    interval_ms: 20
    batch_ms: 10
endpoints:
  - {connection: sim, identity: sim-0, signal: setpoint_2, writable: true, scale: 2.0}
mappings:
  - {connection: sim, identity: "sim-1", signal: "temperature_*", rename_signal: t1}
"""


def test_every_template_is_valid() -> None:
    env = {"MILLRACE_OPCUA_PASSWORD": "x", "MQTT_PASSWORD": "x"}
    for name, spec in protocols().items():
        _, violations = validate_text(spec.template, env=env | _env_refs(spec.template))
        assert [v for v in violations if v.level == "error"] == [], name


def _env_refs(text: str) -> dict[str, str]:
    import re

    return {m: "set" for m in re.findall(r"\$\{(\w+)\}", text)}


def test_env_references_warn_when_validating_and_fail_when_loading(tmp_path: Path) -> None:
    text = SIM.replace("identity_prefix", "x") + "description: ${NOT_SET_ANYWHERE}\n"
    _, violations = validate_text(text, env={})
    assert [(v.level, v.json_path) for v in violations] == [("warning", "$.description")]
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        load_commissioning(f, env={})
    assert load_commissioning(f, env={"NOT_SET_ANYWHERE": "ok"}).service == "line-1"


def test_top_level_mistakes_are_all_reported() -> None:
    _, violations = validate_text("connections: [1]\nendpoints: {}\nextra: 1\n", env={})
    paths = sorted(v.json_path for v in violations)
    assert paths == ["$.connections", "$.endpoints", "$.extra"]
    _, violations = validate_text("- a\n- b\n", env={})
    assert violations[0].json_path == "$"


def test_manager_runs_the_simulator_and_routes_commands() -> None:
    result, violations = validate_text(SIM, env={})
    assert result is not None, violations

    async def main() -> None:
        manager = ConnectorManager(result)
        pub = MemoryEventPublisher()
        log = MemoryEventLog()
        await manager.start(pub)
        codec = default_codec()
        command = {
            "command_id": "c-1",
            "identity": "sim-0",
            "resource": "setpoint_2",
            "value": 42.0,
            "ts_us": 1,
            "issued_by": "test",
            "expires_us": None,
            "correlation_id": None,
        }
        await log.append(
            "commands",
            [
                Message(value=codec.encode("commands", command), key=b"sim-0"),
                Message(value=b"\x00garbage", key=b"sim-0"),
                Message(value=codec.encode("commands", command), key=b"sim-0"),  # replay
            ],
        )
        stop = asyncio.Event()
        router = asyncio.create_task(route_commands(log, manager, stop, pub, idle_s=0.01))
        await asyncio.sleep(0.3)
        stop.set()
        await router
        await manager.stop()
        sim = manager.connectors["sim"]
        assert sim.counters["commands_written"] == 1
        values: list[dict[str, Any]] = [
            s["values"]
            for _, e in pub.published["telemetry"]
            if e["identity"] == "sim-0"
            for s in samples_of(e)
        ]
        # the device reports 42/2 = 21 raw, scaled back by the endpoint: 42
        assert values[-1]["setpoint_2"] == 42.0
        sim1 = [e for _, e in pub.published["telemetry"] if e["identity"] == "sim-1"]
        assert "t1" in samples_of(sim1[0])[0]["values"]
        assert "temperature_0" not in samples_of(sim1[0])[0]["values"]
        assert [d["stage"] for _, d in pub.published["deadletter"]] == ["command"]
        states = [e["current_state"] for _, e in pub.published["status"]]
        assert states[:2] == ["connecting", "running"] and states[-1] == "stopped"
        assert await log.committed("millrace-connectors", _tp(log)) == 3

    asyncio.run(main())


def _tp(log: MemoryEventLog) -> Any:
    from millrace.pipeline.log.base import TopicPartition, partition_for

    return TopicPartition("commands", partition_for(b"sim-0", log.partitions("commands")))


def test_cli_validate_and_template(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["template", "simulator"])
    assert r.exit_code == 0 and "protocol: simulator" in r.output
    good = tmp_path / "good.yaml"
    good.write_text(r.output)
    r = runner.invoke(app, ["validate", str(good)])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(SIM.replace("devices: 2", "devices: two").replace("batch_ms: 10", "batchms: 1"))
    r = runner.invoke(app, ["validate", str(bad)])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error ")]
    assert any(ln.startswith("error $.connections.sim.devices: Input should be") for ln in lines)
    assert "error $.connections.sim.batchms: unknown key" in lines
    r = runner.invoke(app, ["template", "nope"])
    assert r.exit_code == 1


MIXED = """
connections:
  opc:
    protocol: opcua
    url: opc.tcp://plc-1:4840
    security_mode: Sign
    password: secret
    colour: blue
  opc2:
    protocol: opcua
    url: opc.tcp://plc-3:4840
    security_policy: Basic256Sha256
    security_mode: Sgin
  mb:
    protocol: modbus
    host: plc-2
    port: "abc"
  br:
    protocol: mqtt
    host: broker
    keepalive: 1
    clean_session: false
  drop:
    protocol: files
    directory: DIR
    csv: {identity: dev, timezone: 5, separator: ";", quotechar: ";"}
endpoints:
  - {connection: opc, identity: a, signal: s, node_id: "ns=2;s=A"}
  - {connection: mb, identity: a, signal: s, register: holding, address: 0}
  - {connection: mb, identity: b, signal: c, register: coil, address: 1, data_type: float32}
  - {connection: mb, identity: b, signal: t, register: holding, address: 2, data_type: string,
     length: 0}
  - {connection: br, identity: d, signal: v, topic: "plant/+/v", writable: true}
  - {connection: br, identity: a, signal: s, topic: "x/#", qos: 2}
  - {connection: nowhere, identity: b, signal: c}
mappings:
  - {connection: br, topic: "m/#", values: {v: "nope"}}
"""


def test_one_pass_lists_every_violation(tmp_path: Path) -> None:
    """A connection that fails its model still gets its protocol's checks (on the
    rest of it, with its valid endpoints and mappings) and every endpoint takes part
    in the duplicate check, so fixing the model errors reveals nothing new; a check
    does not repeat a model error at the same path."""
    text = MIXED.replace("DIR", str(tmp_path))
    result, violations = validate_text(text, env={})
    assert result is None
    model_errors = [
        ("error", "$.connections.opc.colour"),  # unknown key
        ("error", "$.connections.opc2.security_mode"),  # not repeated by the opcua check
        ("error", "$.connections.mb.port"),
        ("error", "$.connections.br.keepalive"),
        ("error", "$.connections.drop.csv.timezone"),
        ("error", "$.endpoints[3].length"),
        ("error", "$.endpoints[5].qos"),
    ]
    invalid_connection = [  # "connection ... is invalid (see its violations)"
        ("error", f"$.endpoints[{i}].connection") for i in range(6)
    ]
    other = [
        ("error", "$.endpoints[6].connection"),  # no such connection
        # duplicates, also of endpoints failing their model or naming no connection
        ("error", "$.endpoints[1].signal"),
        ("error", "$.endpoints[5].signal"),
        ("error", "$.endpoints[6].signal"),
        # opcua: security_mode Sign without policy, certificate and key; password alone
        ("error", "$.connections.opc.security_policy"),
        ("error", "$.connections.opc.certificate"),
        ("error", "$.connections.opc.private_key"),
        ("error", "$.connections.opc.password"),
        # and a literal secret, stored with the service as written (connectors.secrets)
        ("error", "$.connections.opc.password"),
        # opcua: a security_policy needs a certificate and key, whatever the mode
        ("error", "$.connections.opc2.certificate"),
        ("error", "$.connections.opc2.private_key"),
        # modbus: a coil is one bit
        ("error", "$.endpoints[2].data_type"),
        # mqtt: clean_session without client_id, writable without command_topic, mapping
        ("error", "$.connections.br.clean_session"),
        ("error", "$.endpoints[4].writable"),
        ("error", "$.mappings[0].values.v"),
        ("error", "$.mappings[0].identity"),
        # files: csv.timezone is dropped, not the whole csv section
        ("error", "$.connections.drop.csv.quotechar"),
    ]
    found = sorted((v.level, v.json_path) for v in violations)
    assert found == sorted(model_errors + invalid_connection + other), "\n".join(
        v.line() for v in violations
    )
    duplicates = {v.json_path: v.description for v in violations if "already" in v.description}
    assert duplicates == {
        "$.endpoints[1].signal": "identity 'a' signal 's' is already defined at $.endpoints[0]",
        "$.endpoints[5].signal": "identity 'a' signal 's' is already defined at $.endpoints[0]",
        "$.endpoints[6].signal": "identity 'b' signal 'c' is already defined at $.endpoints[2]",
    }

    fixed = (
        text.replace("    colour: blue\n", "")
        .replace("security_mode: Sgin", "security_mode: Sign")
        .replace('port: "abc"', "port: 502")
        .replace("keepalive: 1", "keepalive: 60")
        .replace("timezone: 5", "timezone: UTC")
        .replace("length: 0", "length: 2")
        .replace("qos: 2", "qos: 1")
    )
    _, after = validate_text(fixed, env={})
    assert sorted((v.level, v.json_path) for v in after) == sorted(other)
