"""The ``parameters:`` section of a commissioning file (Cybus Connectware style).

::

    parameters:
      plcHost: {type: string, description: the PLC's address}
      pollMs: {type: integer, default: 1000}

A parameter is substituted wherever the file says ``${name}``: a string that is only
the reference takes the value with its type (so ``port: ${plcPort}`` is an integer),
a longer string gets its text. Values are given at install (``POST /services`` takes
them); a parameter without a default must be given. Names that are not parameters stay
``${ENV}`` references, resolved from the environment where the file runs, so secrets
never need to be parameter values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from millrace.connectors._common.models import Violation

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: type name -> (python types accepted, a placeholder of the type: a value most fields
#: accept (a port, an interval, a host name), for a file validated without values)
TYPES: dict[str, tuple[tuple[type, ...], Any]] = {
    "string": ((str,), "placeholder"),
    "integer": ((int,), 1),
    "number": ((int, float), 1),
    "boolean": ((bool,), False),
}


def _accepts(ptype: str, value: Any) -> bool:
    kinds, _ = TYPES[ptype]
    if isinstance(value, bool) and ptype != "boolean":
        return False
    return isinstance(value, kinds)


def declared(doc: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], list[Violation]]:
    """The section's parameters (name -> {type, default?, description}), and its errors."""
    section = doc.get("parameters")
    if section is None:
        return {}, []
    if not isinstance(section, Mapping):
        return {}, [
            Violation(level="error", json_path="$.parameters", description="must be a mapping")
        ]
    out: dict[str, dict[str, Any]] = {}
    errors: list[Violation] = []
    for name, spec in section.items():
        path = f"$.parameters.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            errors.append(
                Violation(
                    level="error",
                    json_path=path,
                    description="a parameter name is a letter or '_', then letters, digits or '_'",
                )
            )
            continue
        if not isinstance(spec, Mapping):
            errors.append(
                Violation(
                    level="error",
                    json_path=path,
                    description="must be a mapping (type, default, description)",
                )
            )
            continue
        unknown = sorted(set(spec) - {"type", "default", "description"})
        if unknown:
            errors.append(
                Violation(
                    level="error",
                    json_path=f"{path}.{unknown[0]}",
                    description="unknown key; a parameter has type, default and description",
                )
            )
        ptype = spec.get("type", "string")
        if ptype not in TYPES:
            errors.append(
                Violation(
                    level="error",
                    json_path=f"{path}.type",
                    description=f"one of {', '.join(TYPES)}",
                )
            )
            continue
        if "default" in spec and not _accepts(ptype, spec["default"]):
            errors.append(
                Violation(
                    level="error", json_path=f"{path}.default", description=f"must be a {ptype}"
                )
            )
            continue
        out[name] = dict(spec, type=ptype)
    return out, errors


def values_of(
    params: Mapping[str, Mapping[str, Any]], given: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[Violation]]:
    """The value of every parameter: ``given``, else its default. Without ``given``
    (validating a file on its own) a parameter with no default takes a placeholder of
    its type; with it, an unknown name, a wrong type or a missing value is an error
    named ``$.parameters.<name>``."""
    errors: list[Violation] = []
    values: dict[str, Any] = {}
    for name in sorted(set(given or {}) - set(params)):
        errors.append(
            Violation(
                level="error",
                json_path=f"$.parameters.{name}",
                description="no such parameter in the file",
            )
        )
    for name, spec in params.items():
        path = f"$.parameters.{name}"
        if given is not None and name in given:
            if not _accepts(spec["type"], given[name]):
                errors.append(
                    Violation(
                        level="error",
                        json_path=path,
                        description=f"must be a {spec['type']}, not {type(given[name]).__name__}",
                    )
                )
                continue
            values[name] = given[name]
        elif "default" in spec:
            values[name] = spec["default"]
        elif given is not None:
            errors.append(
                Violation(
                    level="error", json_path=path, description="required: the file gives no default"
                )
            )
        else:
            values[name] = TYPES[spec["type"]][1]
            errors.append(
                Violation(
                    level="warning",
                    json_path=path,
                    description="no default: its value is given at install "
                    "(POST /api/v1/services); checked here with a placeholder",
                )
            )
    return values, errors


def substitute(doc: Any, values: Mapping[str, Any]) -> Any:
    """``${name}`` replaced by the parameter's value wherever a string holds it."""
    if isinstance(doc, str):
        whole = _REF.fullmatch(doc)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        return _REF.sub(
            lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), doc
        )
    if isinstance(doc, Mapping):
        return {k: substitute(v, values) for k, v in doc.items()}
    if isinstance(doc, list):
        return [substitute(v, values) for v in doc]
    return doc


def resolve(
    doc: Mapping[str, Any], given: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[Violation]]:
    """``doc`` with its parameters substituted (the section itself left out), and the
    violations of the section and of the values."""
    params, errors = declared(doc)
    values, value_errors = values_of(params, given)
    rest = {k: v for k, v in doc.items() if k != "parameters"}
    return substitute(rest, values), errors + value_errors
