"""Where in a commissioning file's YAML text a validation violation is: its
``json_path`` (``$.connections.plc1.port``, ``$.endpoints[3].address``) mapped to a
1-based line, so the console's editor can mark that line.

The text is loaded with the API's own guarded loader first (:func:`load`: the limits on
depth, aliases, integers and strings every YAML body has), then composed with PyYAML's
``compose``, whose nodes carry their position. A path that ends at a key the file does
not have (a missing required field) points at the deepest part that exists: the mapping
that lacks it. The places a refusal's details name (:func:`refusal_problems`) and the
values still holding the masked placeholder of a secret (:func:`masked_problems`) are
placed the same way. No NiceGUI here: plain functions, tested on their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from millrace.api.errors import ApiError
from millrace.api.service_files import MASKED
from millrace.api.yamlbody import load_yaml

_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Problem:
    """A violation placed in the text: ``line`` is 1-based (None: not placed)."""

    line: int | None
    json_path: str
    description: str
    level: str = "error"


def steps(json_path: str) -> list[str | int]:
    """``$.a.b[2].c`` as ``["a", "b", 2, "c"]``; what does not parse ends the walk."""
    out: list[str | int] = []
    rest = json_path[1:] if json_path.startswith("$") else json_path
    pos = 0
    while pos < len(rest):
        m = _STEP.match(rest, pos)
        if m is None:
            break
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return out


def _child(node: Node, step: str | int) -> tuple[Node, Node] | None:
    """``(where the step is written, its value)`` under ``node``, or None."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == str(step):
                return key, value
    elif isinstance(node, SequenceNode) and isinstance(step, int) and step < len(node.value):
        item = node.value[step]
        return item, item
    return None


def line_of(root: Node | None, json_path: str) -> int | None:
    """The 1-based line of ``json_path`` in the composed document ``root``."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for step in steps(json_path):
        found = _child(node, step)
        if found is None:
            break  # a missing key: the mapping that should hold it
        written, node = found
        line = written.start_mark.line + 1
    return line


def load(text: str) -> tuple[Any, Node | None, list[Problem]]:
    """``(document, composed root, problems)`` of ``text``: a text that is not YAML,
    or that the API would refuse, is one problem at its line and no document."""
    try:
        doc = load_yaml(text.encode("utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        return None, None, [Problem(line, "$", f"not YAML: {exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return None, None, [Problem(None, "$", f"not YAML: {exc}")]
    except ApiError as exc:
        details = exc.details if isinstance(exc.details, list) else [exc.details]
        line = details[0].get("line") if details and isinstance(details[0], dict) else None
        return None, None, [Problem(line, "$", exc.message)]
    return doc, yaml.compose(text, Loader=yaml.SafeLoader), []


def placed(root: Node | None, violations: list[dict[str, Any]]) -> list[Problem]:
    """The API's violations (``json_path``, ``description``, ``level``) with lines."""
    return [
        Problem(
            line_of(root, str(v.get("json_path", "$"))),
            str(v.get("json_path", "$")),
            str(v.get("description", "")),
            str(v.get("level", "error")),
        )
        for v in violations
    ]


def refusal_problems(text: str, details: list[dict[str, Any]]) -> list[Problem]:
    """The details of the API's refusal of ``text`` that name a place in the file
    (``json_path``, or a ``field`` written as ``$...``), placed at their lines."""
    shown = [
        {
            "json_path": str(d.get("json_path") or d.get("field")),
            "description": str(d.get("description") or d.get("message") or ""),
            "level": str(d.get("level", "error")),
        }
        for d in details
        if str(d.get("json_path") or d.get("field") or "").startswith("$")
    ]
    if not shown:
        return []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None
    return placed(root, shown)


def masked_problems(text: str) -> list[Problem]:
    """Every value of ``text`` that is still the API's masked placeholder for a secret
    (``***``, as ``GET /services/{id}`` shows them), placed at its line: saving it would
    store the placeholder as the secret."""
    doc, root, _ = load(text)
    paths: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif value == MASKED:
            paths.append(path)

    walk(doc, "$")
    why = f"still the masked placeholder {MASKED}: type the secret or a ${{ENV}} reference"
    return [Problem(line_of(root, p), p, why) for p in paths]
