"""The files protocol in a commissioning file: the template, and every violation at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from millrace.connectors.commissioning import validate_document, validate_text
from millrace.connectors.files.config import FilesConnection
from millrace.connectors.files.spec import SPEC
from millrace.connectors.registry import protocols


def test_registered_without_importing_the_connector() -> None:
    assert protocols()["files"] is SPEC
    assert SPEC.connector_class().__name__ == "FilesConnector"


def test_template_is_valid(tmp_path: Path) -> None:
    (tmp_path / "line1").mkdir()
    result, violations = validate_text(SPEC.template, env={"MILLRACE_DROP_DIR": str(tmp_path)})
    assert violations == []
    assert result is not None
    c = result.connections["line1-drop"]
    assert isinstance(c, FilesConnection)
    assert c.directory == f"{tmp_path}/line1" and c.csv.timezone == "Europe/Berlin"
    assert [e.signal for e in result.endpoints_of("line1-drop")] == [
        "temperature",
        "pressure",
        "state",
    ]


def test_every_mistake_is_reported_with_its_path(tmp_path: Path) -> None:
    doc = yaml.safe_load(
        f"""
connections:
  broken:
    protocol: files
    directory: {tmp_path}
    colour: blue                 # unknown key
    poll_ms: fast                # wrong type
    after: archive               # not an action
    csv:
      separator: "::"            # one character
  drop:
    protocol: files
    directory: {tmp_path}/missing/deeper
    after: move
    done_directory: {tmp_path}/missing/deeper
    csv:
      header: false
      timestamp: [0, time]       # a name without a header
      timestamp_format: "%Y-%Q"
      timezone: Mars/Olympus
      identity: press-1
      identity_column: 1
endpoints:
  - {{connection: drop, identity: press-1, signal: t, column: 2, scale: x}}
  - {{connection: drop, identity: press-1, signal: u, column: 3, writable: true}}
  - {{connection: drop, identity: press-1, signal: v, column: 0}}
  - {{connection: drop, identity: press-1, signal: w, colum: 4}}
  - {{connection: drop, identity: press-1, signal: x, column: 5, interval_ms: 500}}
  - {{connection: broken, identity: press-1, signal: y}}
mappings:
  - {{connection: drop, topic: "plant/#"}}
"""
    )
    result, violations = validate_document(doc, env={})
    assert result is None
    got = {(v.level, v.json_path) for v in violations}
    assert got == {
        ("error", "$.connections.broken.colour"),
        ("error", "$.connections.broken.poll_ms"),
        ("error", "$.connections.broken.after"),
        ("error", "$.connections.broken.csv.separator"),
        ("warning", "$.connections.drop.directory"),
        ("error", "$.connections.drop.done_directory"),
        ("error", "$.connections.drop.csv.timestamp[1]"),
        ("error", "$.connections.drop.csv.timestamp_format"),
        ("error", "$.connections.drop.csv.timezone"),
        ("error", "$.connections.drop.csv.identity_column"),
        ("warning", "$.connections.drop.csv.identity"),
        ("error", "$.endpoints[0].scale"),
        ("error", "$.endpoints[1].writable"),
        ("error", "$.endpoints[2].column"),
        ("error", "$.endpoints[3].colum"),
        ("warning", "$.endpoints[4].interval_ms"),
        ("error", "$.endpoints[5].connection"),
        ("error", "$.mappings[0].topic"),
    }
    by_path = {v.json_path: v.description for v in violations}
    assert by_path["$.connections.broken.colour"] == "unknown key"
    assert "Mars/Olympus" in by_path["$.connections.drop.csv.timezone"]
    assert "bad directive" in by_path["$.connections.drop.csv.timestamp_format"]
    assert by_path["$.endpoints[2].column"] == "column 0 is the timestamp column"
    assert "needs a header row" in by_path["$.connections.drop.csv.timestamp[1]"]


def test_identity_is_needed_without_endpoints(tmp_path: Path) -> None:
    doc = {"connections": {"d": {"protocol": "files", "directory": str(tmp_path)}}}
    _, violations = validate_document(doc, env={})
    assert [(v.level, v.json_path) for v in violations] == [
        ("error", "$.connections.d.csv.identity")
    ]


def test_validation_does_not_load_the_connector() -> None:
    code = (
        "import sys; from millrace.connectors.registry import protocols; protocols(); "
        "assert 'millrace.connectors.files.spec' in sys.modules; "
        "assert 'millrace.connectors.files.connector' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
