"""The commissioning file: connections, endpoints and mappings, validated as a whole.

:func:`validate_document` never stops at the first problem: it returns every
violation with its JSON path (``$.endpoints[3].port``) so that a plant engineer fixes
a file in one pass. :func:`load_commissioning` raises ConfigError listing them all.
A connection that fails its model is still checked as far as it can be: its
protocol's semantic checks see it validated again without its keys in error (see
:func:`millrace.connectors.violations.repaired`), with its valid endpoints and
mappings; and every endpoint with a string identity and signal takes part in the
duplicate check.

``${NAME}`` references in strings are replaced by environment variables when a file
is loaded for running; validation reports unset ones as warnings (the environment of
the machine that will run the file may differ) and never prints their values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from millrace.connectors._common.models import (
    ConnectionBase,
    EndpointBase,
    MappingConfig,
    Violation,
)
from millrace.connectors.parameters import resolve
from millrace.connectors.registry import protocols
from millrace.connectors.secrets import literal_secrets
from millrace.connectors.violations import NAME, covered, pydantic_violations, repaired
from millrace.connectors.violations import json_path as json_path
from millrace.pipeline.env_refs import ENV_REF as _ENV_REF
from millrace.pipeline.env_refs import substitute_env as substitute_env
from millrace.pipeline.errors import ConfigError


class _Top(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(1, ge=1, le=1)
    service: str = Field(
        "default", pattern=NAME.pattern, description="Service id of the resources."
    )
    description: str = ""
    connections: dict[str, dict[str, Any]] = Field(default_factory=dict)
    endpoints: list[dict[str, Any]] = Field(default_factory=list)
    mappings: list[dict[str, Any]] = Field(default_factory=list)


@dataclass
class Commissioning:
    """A valid commissioning file, typed."""

    service: str = "default"
    connections: dict[str, ConnectionBase] = field(default_factory=dict)
    endpoints: list[EndpointBase] = field(default_factory=list)
    mappings: list[MappingConfig] = field(default_factory=list)
    #: the file's sections as written (parameters and ``${ENV}`` not substituted): what
    #: a service event carries; None when the connections were built otherwise
    document: dict[str, Any] | None = None

    def endpoints_of(self, connection: str) -> list[EndpointBase]:
        return [e for e in self.endpoints if e.connection == connection]

    def mappings_of(self, connection: str) -> list[MappingConfig]:
        return [m for m in self.mappings if m.connection == connection]


def _env_refs(doc: Any, loc: tuple[int | str, ...] = ()) -> list[tuple[tuple[int | str, ...], str]]:
    refs: list[tuple[tuple[int | str, ...], str]] = []
    if isinstance(doc, str):
        refs.extend((loc, m.group(1)) for m in _ENV_REF.finditer(doc))
    elif isinstance(doc, Mapping):
        for k, v in doc.items():
            refs.extend(_env_refs(v, (*loc, str(k))))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            refs.extend(_env_refs(v, (*loc, i)))
    return refs


SECTIONS = (
    "version",
    "service",
    "description",
    "parameters",
    "connections",
    "endpoints",
    "mappings",
)


def validate_document(
    doc: Any,
    env: Mapping[str, str] | None = None,
    host_model: type[BaseModel] | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[Commissioning | None, list[Violation]]:
    """Every violation of ``doc`` (a parsed YAML document); the typed file if no errors.

    With ``host_model`` (the engine's configuration model), the other top-level
    sections of a ``millrace run --config`` file are validated by it, so one file
    can hold both. ``parameters``: the values of the file's ``parameters:`` section
    (``connectors.parameters``; without them, defaults and placeholders).
    """
    env = os.environ if env is None else env
    violations: list[Violation] = []
    if not isinstance(doc, Mapping):
        return None, [
            Violation(level="error", json_path="$", description="the top level must be a mapping")
        ]
    if host_model is not None:
        rest = {k: v for k, v in doc.items() if k not in SECTIONS}
        doc = {k: v for k, v in doc.items() if k in SECTIONS}
        try:
            host_model.model_validate(rest)
        except ValidationError as exc:
            violations.extend(pydantic_violations(exc, "$"))
    document = {k: v for k, v in doc.items() if k in SECTIONS}
    violations.extend(literal_secrets(doc))
    doc, param_violations = resolve(doc, parameters)
    violations.extend(param_violations)
    for loc, name in _env_refs(doc):
        if name not in env:
            violations.append(
                Violation(
                    level="warning",
                    json_path=json_path(loc),
                    description=f"environment variable {name} is not set here",
                )
            )
    doc = substitute_env(doc, env)
    try:
        top = _Top.model_validate(doc)
    except ValidationError as exc:
        violations.extend(pydantic_violations(exc, "$"))
        # go on with what can be read, so that every section is checked
        top = _Top.model_construct(
            connections=doc.get("connections") if isinstance(doc.get("connections"), dict) else {},
            endpoints=doc.get("endpoints") if isinstance(doc.get("endpoints"), list) else [],
            mappings=doc.get("mappings") if isinstance(doc.get("mappings"), list) else [],
            service=str(doc.get("service", "default")),
        )
    specs = protocols()
    result = Commissioning(service=top.service, document=document)
    # the connections the semantic checks see: the valid ones, and the invalid ones
    # validated without their keys in error; what the checks report at or under one of
    # those keys (in ``dropped``) is left out: the model error already says it, or it
    # is about the default that stood in
    checked: dict[str, ConnectionBase] = {}
    checked_endpoints: list[tuple[int, EndpointBase]] = []
    checked_mappings: list[tuple[int, MappingConfig]] = []
    dropped: set[str] = set()

    for name, raw in top.connections.items():
        path = json_path(("connections", name))
        if not NAME.match(str(name)):
            violations.append(
                Violation(
                    level="error",
                    json_path=path,
                    description="connection names are 1-64 letters, digits, '_', '-' or '.'",
                )
            )
        if not isinstance(raw, Mapping):
            violations.append(
                Violation(level="error", json_path=path, description="must be a mapping")
            )
            continue
        proto = raw.get("protocol")
        if proto not in specs:
            violations.append(
                Violation(
                    level="error",
                    json_path=f"{path}.protocol",
                    description=f"unknown protocol {proto!r}; one of {', '.join(sorted(specs))}",
                )
            )
            continue
        missing = specs[proto].missing()
        if missing:
            violations.append(
                Violation(
                    level="error",
                    json_path=f"{path}.protocol",
                    description=f"protocol {proto!r} needs {', '.join(missing)}, not installed "
                    f"here: pip install 'millrace[{specs[proto].extra or proto}]'",
                )
            )
        model = specs[proto].connection_model
        conn: ConnectionBase | None
        try:
            conn = result.connections[str(name)] = model.model_validate(raw)
        except ValidationError as exc:
            violations.extend(pydantic_violations(exc, path))
            conn = repaired(model, raw, exc, path, dropped)
        if conn is not None:
            checked[str(name)] = conn

    seen: dict[tuple[str, str], int] = {}
    for i, raw in enumerate(top.endpoints):
        path = f"$.endpoints[{i}]"
        if not isinstance(raw, Mapping):
            violations.append(
                Violation(level="error", json_path=path, description="must be a mapping")
            )
            continue
        conn_name = raw.get("connection")
        conn = result.connections.get(str(conn_name)) if conn_name is not None else None
        proto = conn.protocol if conn is not None else None
        if conn is None:
            raw_conn = top.connections.get(str(conn_name)) if conn_name is not None else None
            if conn_name is None:
                desc = "field required"
            elif raw_conn is not None:
                desc = f"connection {conn_name!r} is invalid (see its violations)"
                if isinstance(raw_conn, Mapping) and raw_conn.get("protocol") in specs:
                    proto = str(raw_conn["protocol"])  # still check the endpoint itself
            else:
                desc = f"no connection named {conn_name!r} under $.connections"
            violations.append(
                Violation(level="error", json_path=f"{path}.connection", description=desc)
            )
        if proto is not None:
            try:
                ep = specs[proto].endpoint_model.model_validate(raw)
            except ValidationError as exc:
                violations.extend(pydantic_violations(exc, path))
            else:
                if ep.connection in checked:
                    checked_endpoints.append((i, ep))
                if conn is not None:
                    result.endpoints.append(ep)
        # from the file itself, so that endpoints failing their model take part too
        identity, signal = raw.get("identity"), raw.get("signal")
        if isinstance(identity, str) and isinstance(signal, str):
            if (identity, signal) in seen:
                violations.append(
                    Violation(
                        level="error",
                        json_path=f"{path}.signal",
                        description=(
                            f"identity {identity!r} signal {signal!r} is already defined "
                            f"at $.endpoints[{seen[identity, signal]}]"
                        ),
                    )
                )
            else:
                seen[identity, signal] = i

    for i, raw in enumerate(top.mappings):
        path = f"$.mappings[{i}]"
        try:
            m = MappingConfig.model_validate(raw)
        except ValidationError as exc:
            violations.extend(pydantic_violations(exc, path))
            continue
        if m.connection not in top.connections:
            violations.append(
                Violation(
                    level="error",
                    json_path=f"{path}.connection",
                    description=f"no connection named {m.connection!r} under $.connections",
                )
            )
            continue
        checked_mappings.append((i, m))
        result.mappings.append(m)

    for name, c in checked.items():
        spec = specs[c.protocol]
        if spec.check is not None:
            eps = [(i, e) for i, e in checked_endpoints if e.connection == name]
            maps = [(i, m) for i, m in checked_mappings if m.connection == name]
            violations.extend(
                v for v in spec.check(name, c, eps, maps) if not covered(v.json_path, dropped)
            )

    if any(v.level == "error" for v in violations):
        return None, violations
    return result, violations


def parse_yaml(text: str) -> tuple[Any, list[Violation]]:
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return None, [
            Violation(
                level="error",
                json_path="$",
                description=f"not valid YAML{where}: {getattr(exc, 'problem', exc)}",
            )
        ]


def validate_text(
    text: str, env: Mapping[str, str] | None = None, host_model: type[BaseModel] | None = None
) -> tuple[Commissioning | None, list[Violation]]:
    doc, violations = parse_yaml(text)
    if violations:
        return None, violations
    return validate_document(doc, env, host_model)


def load_commissioning(path: Path, env: Mapping[str, str] | None = None) -> Commissioning:
    """The typed file at ``path`` with ``${ENV}`` resolved; ConfigError lists every error."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    env = os.environ if env is None else env
    result, violations = validate_text(text, env)
    unresolved = [
        v for v in violations if v.level == "warning" and "environment variable" in v.description
    ]
    if result is None or unresolved:
        errors = [v for v in violations if v.level == "error"] + unresolved
        raise ConfigError(f"{path}:\n" + "\n".join(v.line() for v in errors))
    return result
