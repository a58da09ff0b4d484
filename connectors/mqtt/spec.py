"""The MQTT protocol for the registry: models, template and semantic checks.

Imported to validate commissioning files: nothing here imports the MQTT library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from millrace.connectors._common.models import MappingConfig, Violation
from millrace.connectors.commissioning import json_path
from millrace.connectors.registry import ProtocolSpec

from .config import MqttConnection, MqttEndpoint
from .jsonpath import path_problem
from .topics import command_topic_problem, filter_problem, ref_problem

_GLOB = set("*?[")


def check(
    name: str,
    connection: Any,
    endpoints: Sequence[tuple[int, Any]],
    mappings: Sequence[tuple[int, MappingConfig]],
) -> list[Violation]:
    """What the models cannot see alone: the command topic and its use, session
    settings, topic levels named by templates, and the MQTT payload mappings."""
    out: list[Violation] = []
    conn_path = json_path(("connections", name))

    def error(path: str, description: str) -> None:
        out.append(Violation(level="error", json_path=path, description=description))

    assert isinstance(connection, MqttConnection)
    if connection.command_topic is not None:
        problem = command_topic_problem(connection.command_topic)
        if problem:
            error(f"{conn_path}.command_topic", problem)
    if not connection.clean_session and connection.client_id is None:
        error(
            f"{conn_path}.clean_session",
            "clean_session: false needs a fixed client_id (the broker keeps the session "
            "under that id)",
        )
    if connection.tls is not None and connection.tls.key_file and not connection.tls.cert_file:
        error(f"{conn_path}.tls.key_file", "key_file needs cert_file")

    for i, ep in endpoints:
        assert isinstance(ep, MqttEndpoint)
        path = f"$.endpoints[{i}]"
        if ep.writable and connection.command_topic is None:
            error(
                f"{path}.writable",
                f"writable endpoints need command_topic on connection {name!r}",
            )
        for field in ("identity", "signal"):
            problem = ref_problem(getattr(ep, field), ep.topic)
            if problem:
                error(f"{path}.{field}", problem)
        if ep.timestamp_path is not None and ep.value_path is None:
            error(
                f"{path}.timestamp_path",
                "a timestamp inside the payload needs value_path too (without it the whole "
                "payload is the value)",
            )

    for i, m in mappings:
        out.extend(_check_mapping(i, m))
    return out


def _check_mapping(i: int, m: MappingConfig) -> list[Violation]:
    path = f"$.mappings[{i}]"
    out: list[Violation] = []

    def error(where: str, description: str) -> None:
        out.append(Violation(level="error", json_path=f"{path}{where}", description=description))

    if m.topic is None:
        for field in ("identity_path", "timestamp_path"):
            if getattr(m, field) is not None:
                error(f".{field}", "only used with topic (a payload mapping)")
        if m.values:
            error(".values", "only used with topic (a payload mapping)")
        return out

    problem = filter_problem(m.topic)
    if problem:
        error(".topic", problem)
    if not m.values:
        error(".values", "a payload mapping needs values: {signal: JSON path}")
    for signal, p in m.values.items():
        where = json_path(("values", signal), "")
        problem = path_problem(p)
        if problem:
            error(where, problem)
        if not signal:
            error(where, "a signal name must not be empty")
        elif problem is None and filter_problem(m.topic) is None:
            ref = ref_problem(signal, m.topic)
            if ref:
                error(where, ref)
    for field in ("identity_path", "timestamp_path"):
        p = getattr(m, field)
        if p is not None:
            problem = path_problem(p)
            if problem:
                error(f".{field}", problem)
    if m.identity_path is None:
        if _GLOB & set(m.identity):
            error(
                ".identity",
                f"{m.identity!r} is a pattern: a payload mapping needs identity_path or a "
                'literal identity (topic levels allowed: "meter-{1}")',
            )
        elif filter_problem(m.topic) is None:
            ref = ref_problem(m.identity, m.topic)
            if ref:
                error(".identity", ref)
    elif m.identity != "*":
        error(".identity", "give identity or identity_path, not both")
    if m.signal != "*":
        error(".signal", "not used by a payload mapping: name the signals in values")
    for field in ("rename_identity", "rename_signal"):
        if getattr(m, field) is not None:
            error(f".{field}", "not used by a payload mapping: name the signals in values")
    return out


SPEC = ProtocolSpec(
    name="mqtt",
    connection_model=MqttConnection,
    endpoint_model=MqttEndpoint,
    connector_path="millrace.connectors.mqtt.connector:MqttConnector",
    requires=("aiomqtt",),
    extra="mqtt",
    check=check,
)
