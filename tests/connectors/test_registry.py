"""Every protocol folder under ``connectors/`` is registered, and every registered
protocol has its folder: connector, config, spec, sample commissioning file, README and
a contract test (telegraf's "every plugin is registered")."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from millrace.connectors.registry import PACKAGES, protocols
from tests.connectors.contract import ConnectorContract, registered_folders

ROOT = Path(__file__).resolve().parents[2]


def test_every_connector_folder_is_registered() -> None:
    folders = registered_folders(ROOT / "connectors")
    assert folders == set(PACKAGES)
    assert set(protocols()) == folders


def test_every_protocol_has_sample_readme_and_contract_tests() -> None:
    for name, spec in protocols().items():
        folder = ROOT / "connectors" / name
        assert (folder / "sample.yaml").read_text() == spec.template, name
        assert yaml.safe_load(spec.template)["connections"], name
        assert "## Sample output" in (folder / "README.md").read_text(), name
        module = importlib.import_module(f"tests.connectors.{name}.test_contract")
        suites = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, ConnectorContract) and v.protocol == name
        ]
        assert suites, f"no ConnectorContract subclass for {name}"
