"""No Docker engine runs here: check what can be checked of docker/ — the compose
file parses, its services run commands the CLI has, with environment it reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from millrace.pipeline.cli.config import ENV_OVERRIDES
from millrace.pipeline.cli.main import app

DOCKER = Path(__file__).parent.parent / "docker"


def _commands() -> set[str]:
    return {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}


def test_compose_services_run_existing_commands_with_known_environment() -> None:
    doc = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"kafka", "clickhouse", "process-1", "process-2", "connect", "api"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    known_env = set(ENV_OVERRIDES) | {"MILLRACE_API_KEY"}
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no health check"
        command = svc.get("command")
        if command is None:
            continue
        assert command[0] == "millrace" and command[1] in _commands(), name
        for var in svc.get("environment", {}):
            assert var in known_env, f"{name}: {var} is not read by millrace"
    assert services["api"]["ports"] == ["127.0.0.1:8080:8080"]


def test_dockerfile_is_slim_and_non_root() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert "python:3.11-slim" in text
    assert "\nUSER millrace" in text
    assert "HEALTHCHECK" in text
