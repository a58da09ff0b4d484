"""json_path -> line of a commissioning file's YAML (no browser: plain functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yaml.nodes import Node

from millrace.api.console.yaml_lines import line_of, load, placed, steps

TEXT = """\
service: line2
connections:
  plc1:
    protocol: modbus
    host: 10.0.0.5
    port: "x"
  "odd name": {protocol: simulator}
endpoints:
  - connection: plc1
    identity: p4
    address: -3
  - {connection: plc1, identity: p5, address: 4}
"""


def root() -> Node | None:
    doc, node, problems = load(TEXT)
    assert problems == [] and doc["connections"]["plc1"]["port"] == "x"
    return node


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("$", 1),
        ("$.service", 1),
        ("$.connections.plc1.port", 6),
        ("$.connections.plc1", 3),
        ("$.connections.odd name.protocol", 7),  # flow style: the key's own line
        ("$.endpoints[0].address", 11),
        ("$.endpoints[0]", 9),
        ("$.endpoints[1].address", 12),
        # missing: the deepest part that exists
        ("$.connections.plc1.unit_id", 3),
        ("$.endpoints[7].address", 8),
        ("$.nothing", 1),
    ],
)
def test_line_of_a_path(path: str, line: int) -> None:
    assert line_of(root(), path) == line


def test_steps() -> None:
    assert steps("$.a.b[2].c") == ["a", "b", 2, "c"]
    assert steps("$") == []
    assert steps("$.a[x]") == ["a"]  # what does not parse ends the walk


def test_not_yaml_is_one_problem_at_its_line() -> None:
    doc, node, problems = load("service: a\nconnections:\n  x: [1, 2\n  y: 3\n")
    assert doc is None and node is None and len(problems) == 1
    assert problems[0].line is not None and problems[0].line >= 3
    assert problems[0].description.startswith("not YAML")


def test_refused_document_is_a_problem() -> None:
    deep = "a: " + "[" * 200 + "]" * 200
    doc, _, problems = load(deep)
    assert doc is None and problems and "nested deeper" in problems[0].description


def test_placed_keeps_the_api_words() -> None:
    got = placed(
        root(),
        [{"json_path": "$.endpoints[0].address", "description": ">= 0", "level": "error"}],
    )
    assert [(p.line, p.json_path, p.description, p.level) for p in got] == [
        (11, "$.endpoints[0].address", ">= 0", "error")
    ]


@given(st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=1, max_size=6, unique=True))
def test_every_key_of_a_block_mapping_is_found_at_its_line(keys: list[str]) -> None:
    text = "".join(f"{k}: {n}\n" for n, k in enumerate(keys))
    _, node, problems = load(text)
    assert problems == []
    for n, k in enumerate(keys):
        assert line_of(node, f"$.{k}") == n + 1
