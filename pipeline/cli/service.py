"""``millrace service install|list|show|enable|disable|remove``: services through a
running engine's API (``--url``, default from the config; key from MILLRACE_API_KEY)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from millrace.pipeline.cli.replay_client import ApiClient
from millrace.pipeline.errors import MillraceError

service_app = typer.Typer(help="Services (commissioning files) of a running engine.")

Url = Annotated[
    str | None, typer.Option("--url", help="the engine's API (default: from the config)")
]
Config = Annotated[Path | None, typer.Option("--config", help="YAML configuration file")]


def _client(url: str | None, config: Path | None) -> ApiClient:
    if url is None:
        # imported here: the configuration's models load every connector's (numpy,
        # pyarrow: about a second), which a call with --url never needs
        from millrace.pipeline.cli.config import load_config

        cfg = load_config(config)
        host = "127.0.0.1" if cfg.api.host in ("0.0.0.0", "::", "") else cfg.api.host
        url = f"http://{host}:{cfg.api.port}/api/v1"
    return ApiClient(url, os.environ.get("MILLRACE_API_KEY") or None)


def _run(call: Any) -> None:
    try:
        typer.echo(json.dumps(call(), indent=2))
    except MillraceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _values(pairs: list[str]) -> dict[str, Any]:
    """``name=value`` pairs; a value that parses as JSON takes its type (``port=502``)."""
    if not pairs:
        return {}
    from millrace.pipeline.cli.config import param_value, parse_params

    return {name: param_value(raw) for name, raw in parse_params(pairs).items()}


@service_app.command()
def install(
    file: Annotated[Path, typer.Argument(help="commissioning file (YAML or JSON)")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value (repeat)")
    ] = None,
    runner: Annotated[
        list[str] | None, typer.Option("--runner", help="runs only there (repeat)")
    ] = None,
    update: Annotated[bool, typer.Option("--update", help="replace an installed one")] = False,
    url: Url = None,
    config: Config = None,
) -> None:
    """Install FILE as a service (or update it with --update)."""

    def call() -> Any:
        import yaml

        text = file.read_text()
        body = {"commissioning": text, "parameters": _values(param or []), "runners": runner or []}
        if not update:
            return _client(url, config).call("POST", "/services", body)
        sid = (yaml.safe_load(text) or {}).get("service", "default")
        return _client(url, config).call("PUT", f"/services/{sid}", body)

    _run(call)


@service_app.command("list")
def list_services(url: Url = None, config: Config = None) -> None:
    """Installed services: id, enabled, status, counts."""
    _run(lambda: _client(url, config).call("GET", "/services"))


@service_app.command()
def show(service_id: str, url: Url = None, config: Config = None) -> None:
    """One service: its file (secrets masked) and resources."""
    _run(lambda: _client(url, config).call("GET", f"/services/{service_id}"))


@service_app.command()
def enable(service_id: str, url: Url = None, config: Config = None) -> None:
    _run(lambda: _client(url, config).call("POST", f"/services/{service_id}/enable", {}))


@service_app.command()
def disable(service_id: str, url: Url = None, config: Config = None) -> None:
    _run(lambda: _client(url, config).call("POST", f"/services/{service_id}/disable", {}))


@service_app.command()
def remove(service_id: str, url: Url = None, config: Config = None) -> None:
    _run(lambda: _client(url, config).call("DELETE", f"/services/{service_id}"))
