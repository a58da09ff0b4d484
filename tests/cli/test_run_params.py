"""``millrace run --config FILE --param name=value``: a file with a Cybus-style
``parameters:`` section installs with the defaults and the given values, substituted
as ``POST /services`` does (``connectors.parameters``), whether the sections are in
the run configuration or in the file it names; a missing required parameter, an
unknown one or a wrong type is an error naming it (the CLI exits 1 saying so)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from millrace.connectors.services import service_text
from millrace.pipeline.cli.config import commissioning_of, load_config, parse_params
from millrace.pipeline.cli.main import app
from millrace.pipeline.errors import ConfigError
from tests.connectors.test_run_config_e2e import free_port
from tests.distributed import KEY, Role

SECTIONS = """service: line-${line}
parameters:
  line: {type: string, description: the line's number}
  devices: {type: integer, default: 2}
  prefix: {type: string, default: "press-"}
connections:
  sim:
    protocol: simulator
    devices: ${devices}
    interval_ms: 500
    identity_prefix: "${prefix}${line}-"
"""


@pytest.fixture(params=["inline", "named"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A run configuration holding the sections, or naming a file that does."""
    path = tmp_path / "run.yaml"
    if request.param == "inline":
        path.write_text(f"data_dir: {tmp_path / 'data'}\n{SECTIONS}")
    else:
        (tmp_path / "plant.yaml").write_text(SECTIONS)
        path.write_text(f"data_dir: {tmp_path / 'data'}\ncommissioning: plant.yaml\n")
    return path


def test_defaults_and_given_values_are_substituted(config: Path) -> None:
    c = commissioning_of(load_config(config), config.parent, {"line": "07"})
    assert c is not None and c.service == "line-07"
    sim = c.connections["sim"]
    # a string parameter keeps its text ("07", not 7); the integer default has its type
    assert sim.devices == 2  # type: ignore[attr-defined]
    assert sim.identity_prefix == "press-07-"  # type: ignore[attr-defined]
    c = commissioning_of(
        load_config(config), config.parent, parse_params(["line=3", "devices=5", "prefix=oven-"])
    )
    assert c is not None and c.connections["sim"].devices == 5  # type: ignore[attr-defined]
    assert c.connections["sim"].identity_prefix == "oven-3-"  # type: ignore[attr-defined]
    # the service it installs carries the substituted sections, no parameters left
    doc = yaml.safe_load(service_text(c) or "")
    assert "parameters" not in doc and "${" not in str(doc)
    assert doc["connections"]["sim"]["devices"] == 5


@pytest.mark.parametrize(
    ("params", "named", "says"),
    [
        ({}, "$.parameters.line", "required"),
        ({"line": "1", "nope": "2"}, "$.parameters.nope", "no such parameter"),
        ({"line": "1", "devices": "many"}, "$.parameters.devices", "must be a integer"),
    ],
)
def test_bad_parameters_are_named(
    config: Path, params: dict[str, str], named: str, says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        commissioning_of(load_config(config), config.parent, params)
    assert named in str(err.value) and says in str(err.value)


def test_a_param_without_a_file_section(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("simulator: {devices: 0}\n")
    with pytest.raises(ConfigError, match="--param"):
        commissioning_of(load_config(path), tmp_path, {"line": "1"})
    with pytest.raises(ConfigError, match="expected name=value"):
        parse_params(["line"])


def test_the_cli_refuses_a_missing_required_parameter(config: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 1
    assert "$.parameters.line" in result.output and "required" in result.output
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--param", "devices"])
    assert result.exit_code == 1 and "expected name=value" in result.output


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_millrace_run_installs_the_file_with_its_parameters(tmp_path: Path) -> None:
    """A real ``millrace run --param``: the service is installed under its substituted
    id, and the simulator's devices named with the given values send readings."""
    port = free_port()
    path = tmp_path / "run.yaml"
    path.write_text(f"api: {{port: {port}}}\n{SECTIONS}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLRACE_")}
    env["MILLRACE_API_KEY"] = KEY
    args = ["run", "--config", path, "--data-dir", tmp_path / "data", "--param", "line=9"]
    role = Role("run", [*args, "-p", "devices=1"], env, tmp_path)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        ) as client:

            def readings() -> int:
                try:
                    r = client.post(
                        "/sql",
                        json={
                            "query": "SELECT uniqExact(identity), count() FROM millrace.readings"
                            " WHERE identity LIKE 'press-9-%'"
                        },
                    )
                except httpx.TransportError:
                    return 0
                return int(r.json()["rows"][0][1]) if r.status_code == 200 else 0

            deadline = time.monotonic() + 120
            while not readings():
                role.alive()
                assert time.monotonic() < deadline, role.output()[-3000:]
                time.sleep(0.5)
            r = client.get("/services/line-9")
            assert r.status_code == 200, r.text
            assert "press-9-" in json.dumps(r.json())
            r = client.post(
                "/sql", json={"query": "SELECT DISTINCT identity FROM millrace.readings"}
            )
            assert [row[0] for row in r.json()["rows"]] == ["press-9-0"]  # devices=1
    finally:
        role.stop_cleanly()
