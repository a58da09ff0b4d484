"""A role imports only what it runs: the process and connect roles build their stages
without loading the API's web stack (FastAPI, Starlette, NiceGUI, PyJWT), and the
command line's ``main`` loads no command's modules until the command runs.

Each check runs in a fresh interpreter (``sys.modules`` of the pytest process holds
everything the other tests imported). The adapters are constructed, never connected:
Kafka and the ClickHouse server point at a port nothing listens on.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WEB_STACK = ("fastapi", "starlette", "nicegui", "jwt", "millrace.api.context")

BUILD_ROLE = """
import json, sys
from millrace.pipeline.cli.assembly import Assembly, distributed_adapters
from millrace.pipeline.cli.config import MillraceConfig

role, data_dir, port = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = MillraceConfig.model_validate({
    "data_dir": data_dir,
    "distributed": {
        "kafka_bootstrap": f"127.0.0.1:{port}",
        "clickhouse_url": f"clickhouse://default@127.0.0.1:{port}/default",
    },
})
assembly = Assembly(cfg, distributed_adapters(cfg, store="required"))
stages = assembly.build([role])
print(json.dumps({
    "stages": [s.name for s in stages],
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in {"fastapi", "starlette",
        "nicegui", "jwt"} or m == "millrace.api.context"),
}))
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("role", "stage"), [("process", "runtime"), ("connect", "connector-manager")]
)
def test_a_role_without_the_api_imports_no_web_stack(role: str, stage: str, tmp_path: Path) -> None:
    out = json.loads(
        _run(BUILD_ROLE, role, str(tmp_path / "data"), str(_closed_port())).splitlines()[-1]
    )
    assert stage in out["stages"]  # the role's stages were really built
    assert out["modules"] == []


def test_the_api_role_does_import_the_web_stack(tmp_path: Path) -> None:
    """The check above can fail: the api role's build loads FastAPI through the same
    script."""
    out = json.loads(
        _run(BUILD_ROLE, "api", str(tmp_path / "data"), str(_closed_port())).splitlines()[-1]
    )
    assert "fastapi" in out["modules"]


def test_the_command_line_loads_a_command_only_when_it_runs() -> None:
    loaded = _run(
        "import sys, millrace.pipeline.cli.main\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'fastapi', 'starlette', 'pydantic', 'pyarrow', 'numpy', 'fastavro', 'chdb'} "
        "or m.startswith('millrace.pipeline.cli.config') "
        "or m.startswith('millrace.pipeline.cli.assembly'))))"
    )
    assert loaded.split() == []


def test_validating_a_file_loads_no_connector_nor_columnar_library() -> None:
    """``millrace validate`` needs the configuration models only: not the simulator's
    connector (numpy), the archive format (fastavro), the restore task (pyarrow.compute,
    fsspec) nor the API."""
    sample = Path(__file__).resolve().parents[2] / "connectors" / "simulator" / "sample.yaml"
    loaded = _run(
        "import sys\n"
        "from millrace.connectors.commissioning import validate_text\n"
        "from millrace.pipeline.cli.config import MillraceConfig\n"
        "_, violations = validate_text(open(sys.argv[1]).read(), host_model=MillraceConfig)\n"
        "assert not [v for v in violations if v.level == 'error'], violations\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'numpy', 'pyarrow', 'fastavro', 'fsspec', 'fastapi', 'chdb'})))",
        str(sample),
    )
    assert loaded.split() == []
