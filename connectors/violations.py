"""Commissioning violations from pydantic: a location as a JSON path
(``$.endpoints[3].port``), a ValidationError as Violations, and the model validated
again without the keys in error (:func:`repaired`), so that a protocol's semantic
checks still see the rest of a connection that failed its model.

It imports no protocol (``commissioning`` imports the registry), so a protocol's own
checks may import :func:`json_path` directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from millrace.connectors._common.models import Violation

#: a service or connection name; a key of this shape is written plainly in a JSON path
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_M = TypeVar("_M", bound=BaseModel)


def json_path(loc: tuple[int | str, ...], base: str = "$") -> str:
    out = base
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif NAME.match(str(p)) and "." not in str(p):
            out += f".{p}"
        else:
            out += "[" + repr(str(p)) + "]"
    return out


def pydantic_violations(exc: ValidationError, base: str) -> list[Violation]:
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        out.append(Violation(level="error", json_path=json_path(loc, base), description=msg))
    return out


def without_errors(
    raw: Any, exc: ValidationError
) -> tuple[dict[str, Any], set[tuple[str, ...]]] | None:
    """``raw`` without the keys ``exc`` reports (the innermost mapping key of each
    error's location, so a bad ``csv.timezone`` drops only that key) and the dropped
    keys' locations; None when an error is not at a key of ``raw`` (a required key is
    missing, ``raw`` is not a mapping)."""
    if not isinstance(raw, Mapping):
        return None
    targets: set[tuple[str, ...]] = set()
    for err in exc.errors():
        node: Any = raw
        target: tuple[str, ...] = ()
        for p in err["loc"]:
            if not (isinstance(node, Mapping) and isinstance(p, str) and p in node):
                break
            target, node = (*target, p), node[p]
        if not target:
            return None
        targets.add(target)

    def drop(d: Mapping[str, Any], prefix: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            key = (*prefix, k)
            if key in targets:
                continue
            nested = isinstance(v, Mapping) and any(t[: len(key)] == key for t in targets)
            out[k] = drop(v, key) if nested else v
        return out

    return drop(raw, ()), targets


def repaired(
    model: type[_M], raw: Any, exc: ValidationError, path: str, dropped: set[str]
) -> _M | None:
    """``raw`` (at ``path``, failing ``model`` with ``exc``) validated again without the
    keys in error, whose defaults stand in (their paths go to ``dropped``), so that the
    semantic checks still see the rest of it; None when no such model exists (a
    required key is in error or missing)."""
    repair = without_errors(raw, exc)
    while repair is not None:  # each round drops at least one key
        rest, keys = repair
        dropped.update(json_path(k, path) for k in keys)
        try:
            return model.model_validate(rest)
        except ValidationError as again:  # e.g. a default that contradicts a kept key
            repair = without_errors(rest, again)
    return None


def covered(path: str, roots: set[str]) -> bool:
    """``path`` is one of ``roots`` or lies under one of them."""
    if not roots:
        return False
    return path in roots or any(path[:i] in roots for i, c in enumerate(path) if c in ".[")
