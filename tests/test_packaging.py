"""The distribution installs one import package, ``millrace``.

The repository root is on ``sys.path`` under pytest, so a stray ``import pipeline`` would
still work here and load every module twice (``pipeline.codec`` beside
``millrace.pipeline.codec``, each with its own classes); the scans below catch it. The
wheel test builds the distribution and runs the CLI from it in a fresh environment.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("pipeline", "connectors", "projections", "api", "schemas")  # not modules
OLD = re.compile(rf"^({'|'.join(FOLDERS)})(\.|$)")


def _sources(*folders: str) -> list[Path]:
    return [p for f in folders for p in sorted((ROOT / f).rglob("*.py"))]


@dataclass(frozen=True)
class Scanned:
    """What the scans below look at in one module: every import statement's names,
    absolute ones apart (``(line, name, absolute)``), the modules it names to
    ``importlib.import_module`` and the first argument of every ``getLogger`` call
    (both ``(line, name)``)."""

    imports: list[tuple[int, str, bool]]
    dynamic: list[tuple[int, str]]
    loggers: list[tuple[int, object]]


@functools.cache
def _scan(path: Path) -> Scanned:
    """One parse and one walk per module, shared by the tests (parsing and walking the
    tree was most of this file's time when each test did its own)."""
    imports: list[tuple[int, str, bool]] = []
    dynamic: list[tuple[int, str]] = []
    loggers: list[tuple[int, object]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imports += [(node.lineno, a.name, True) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imports.append((node.lineno, node.module, node.level == 0))
        elif isinstance(node, ast.Call) and node.args:
            func = getattr(node.func, "attr", getattr(node.func, "id", None))
            arg = node.args[0]
            if func == "getLogger" and isinstance(arg, ast.Constant):
                loggers.append((node.lineno, arg.value))
            elif (
                func == "import_module"
                and isinstance(node.func, ast.Attribute)
                and isinstance(arg, ast.Constant | ast.JoinedStr)
            ):
                first = arg.values[0] if isinstance(arg, ast.JoinedStr) else arg
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    dynamic.append((node.lineno, first.value))
    return Scanned(imports, dynamic, loggers)


def test_no_module_imports_the_old_top_level_names() -> None:
    bad = []
    for path in _sources(*FOLDERS, "tests", "bench"):
        scanned = _scan(path)
        names = [(line, n) for line, n, absolute in scanned.imports if absolute]
        bad += [
            f"{path.relative_to(ROOT)}:{line} {n}"
            for line, n in names + scanned.dynamic
            if OLD.match(n)
        ]
    assert not bad, "import millrace.<folder>..., not the folder itself:\n" + "\n".join(bad)


def test_no_command_line_names_an_old_module() -> None:
    pattern = re.compile(rf"-m\s+({'|'.join(FOLDERS)})\.|[\"']({'|'.join(FOLDERS)})\.cli\.main")
    bad = [
        f"{p.relative_to(ROOT)}"
        for p in _sources(*FOLDERS, "tests", "bench")
        if p.name != "test_packaging.py" and pattern.search(p.read_text())
    ]
    assert not bad


def test_loggers_are_under_millrace() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line} {name!r}"
        for path in _sources(*FOLDERS)
        for line, name in _scan(path).loggers
        if not str(name).startswith("millrace")
    ]
    assert not bad
    assert __import__("millrace.pipeline.log.local.log", fromlist=["log"]).log.name.startswith(
        "millrace."
    )


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name != "test":
            reqs += extra
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_every_imported_library_is_declared() -> None:
    dists = importlib.metadata.packages_distributions()
    # compression (zstd) is standard from Python 3.14; before, backports.zstd (declared)
    stdlib = set(sys.stdlib_module_names) | {"compression"}
    declared = _declared()
    assert "backports.zstd" in declared
    missing = set()
    for path in _sources(*FOLDERS):
        for _, name, absolute in _scan(path).imports:
            top = name.split(".")[0]
            if not absolute or top in stdlib or top in ("millrace", "bench", "tests"):
                continue  # relative, standard or not installed
            names = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
            if not names & declared:
                missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_the_protocol_libraries_are_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    for extra, lib in (("opcua", "asyncua"), ("modbus", "pymodbus"), ("mqtt", "aiomqtt")):
        assert lib not in core
        assert any(r.startswith(lib) for r in extras[extra])
    assert project["scripts"]["millrace"] == "millrace.pipeline.cli.main:main"


# -- the wheel ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources (a build in the tree leaves build/ behind, whose
    stale files setuptools would reuse), without build isolation: no download."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(
            ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        timeout=120,
    )
    (whl,) = out.glob("millrace-*.whl")
    return whl


@pytest.mark.slow
@pytest.mark.integration
def test_the_wheel_holds_only_millrace(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if ".dist-info/" in n)
        tops = {n.split("/")[0] for n in names}
        assert tops == {"millrace", dist_info}
        top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        if top_level:  # setuptools writes it for the egg-info, not always into the wheel
            assert zf.read(top_level[0]).decode().split() == ["millrace"]
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        entry = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert "millrace = millrace.pipeline.cli.main:main" in entry
    for extra in ("opcua", "modbus", "mqtt", "all"):
        assert f"Provides-Extra: {extra}" in metadata
    assert not any(n.startswith("millrace/tests") or "/__pycache__/" in n for n in names)
    assert "millrace/__init__.py" not in names  # an implicit namespace package
    for needed in (
        "millrace/pipeline/cli/main.py",
        "millrace/pipeline/py.typed",
        "millrace/api/py.typed",
        "millrace/connectors/simulator/sample.yaml",
    ):
        assert needed in names
    assert any(n.startswith("millrace/schemas/") and n.endswith(".avsc") for n in names)
    assert any(n.startswith("millrace/schemas/history/") for n in names)
    assert any(n.startswith("millrace/projections/sql/") and n.endswith(".sql") for n in names)


@pytest.mark.slow
@pytest.mark.integration
def test_the_cli_runs_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv that sees this environment's libraries (a .pth line: the editable
    install's finder is not loaded from there) and gets the wheel, without the network."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "_millrace_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        env=env,
        timeout=120,
    )
    work = tmp_path / "work"  # not the repository: its folders must not be importable
    work.mkdir()

    def millrace(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "millrace"), *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = subprocess.run(
        [
            python,
            "-c",
            "import millrace.pipeline.cli.main as m, sys; print(m.__file__); "
            "print(sorted(n for n in sys.modules if n.split('.')[0] in "
            f"{FOLDERS!r}))",
        ],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    assert where[0].startswith(str(venv)), where
    assert where[1] == "[]"
    helped = millrace("run", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--data-dir" in helped.stdout
    template = millrace("template", "modbus")
    assert template.returncode == 0, template.stderr
    assert "protocol: modbus" in template.stdout
    (work / "plant.yaml").write_text(template.stdout)
    checked = millrace("validate", "plant.yaml")
    assert checked.returncode in (0, 1), checked.stderr  # warnings (unset env) are fine
    assert "Traceback" not in checked.stderr + checked.stdout
    sim = millrace("template", "simulator")
    (work / "sim.yaml").write_text(sim.stdout)
    ok = millrace("validate", "sim.yaml")
    assert ok.returncode == 0, ok.stdout + ok.stderr
