"""``millrace``: the command line."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import MillraceError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="millrace: event-sourced telemetry pipeline"
)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="data directory (log, chDB, keys)")
]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML configuration file")]


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


@app.command()
def run(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="API bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="API port (default 8080)")] = None,
    config: ConfigFile = None,
) -> None:
    """Run everything in one process: log, connectors, processors and the API."""
    from pipeline.cli.config import load_config
    from pipeline.cli.engine import Engine, announce_key

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_config(
            config, {("data_dir",): data_dir, ("api", "host"): host, ("api", "port"): port}
        )
        engine = Engine(cfg)
        engine.open()
    except MillraceError as exc:
        _fail(exc)
        return
    key = engine.ensure_admin_key()
    if key:
        announce_key(key)
    # Readings churn through millions of short-lived objects: move what start-up built
    # out of the collector's way and collect young objects less often (-12 % CPU).
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        logging.getLogger("millrace").info(
            "millrace serving on http://%s:%d (data in %s)",
            cfg.api.host,
            cfg.api.port,
            cfg.data_dir,
        )
        try:
            await engine.serve(stop)
        finally:
            await engine.close()

    asyncio.run(main())


@app.command()
def connect(config: ConfigFile = None) -> None:
    """Distributed mode: run the configured connectors, producing to Kafka
    (MILLRACE_KAFKA_BOOTSTRAP)."""
    from pipeline.cli.config import load_config
    from pipeline.cli.distributed import run_connect

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run_connect(load_config(config)))
    except MillraceError as exc:
        _fail(exc)


@app.command()
def process(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Distributed mode: a faust worker folding Kafka (MILLRACE_KAFKA_BOOTSTRAP) into a
    ClickHouse server (MILLRACE_CLICKHOUSE_URL) or, without one, chDB in --data-dir."""
    from pipeline.cli.config import load_config
    from pipeline.cli.distributed import run_process

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run_process(load_config(config, {("data_dir",): data_dir})))
    except MillraceError as exc:
        _fail(exc)


@app.command("api")
def api_command(
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8080)")] = None,
    config: ConfigFile = None,
) -> None:
    """Distributed mode: the API over a ClickHouse server (MILLRACE_CLICKHOUSE_URL);
    ingest goes to Kafka (MILLRACE_KAFKA_BOOTSTRAP)."""
    from pipeline.cli.config import load_config
    from pipeline.cli.distributed import run_api

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_config(config, {("api", "host"): host, ("api", "port"): port})
        asyncio.run(run_api(cfg))
    except MillraceError as exc:
        _fail(exc)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="one read-only SQL statement")],
    data_dir: DataDir = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    max_rows: Annotated[int, typer.Option(help="result row limit")] = 10_000,
) -> None:
    """Query the projections of a data directory while the engine is stopped."""
    from projections import queries
    from projections.store.chdb import ChdbStore

    store = ChdbStore((data_dir or Path("./data")) / "chdb")
    try:
        res = queries.readonly_query(store, query, max_rows, 60.0)
    except (ValueError, MillraceError) as exc:
        _fail(exc)
        return
    finally:
        store.close()
    if fmt == "json":
        typer.echo(json.dumps(res.dicts(), default=str))
    elif fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(res.columns)
        w.writerows(res.rows)
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(*res.columns)
        for row in res.rows:
            t.add_row(*(str(v) for v in row))
        Console().print(t)


@app.command()
def replay(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Drop every projection and rebuild it from the log (engine stopped)."""
    from pipeline.cli.replay import replay_all

    try:
        replay_all(config, data_dir)
    except MillraceError as exc:
        _fail(exc)


@app.command()
def bench(
    seconds: Annotated[float, typer.Option(help="measurement time per figure")] = 10.0,
    devices: Annotated[int, typer.Option(help="simulated devices")] = 1000,
    signals: Annotated[int, typer.Option(help="signals per device")] = 25,
) -> None:
    """Measure end-to-end throughput on a scratch data directory; one figure per line
    as ``name: value unit``."""
    from pipeline.cli.bench import run_bench

    for name, (value, unit) in run_bench(seconds, devices, signals).items():
        typer.echo(f"{name}: {value:.6g} {unit}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
