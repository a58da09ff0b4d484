"""``millrace``: the command line."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from millrace.pipeline.cli.archive import archive_app
from millrace.pipeline.cli.service import service_app
from millrace.pipeline.errors import MillraceError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="millrace: event-sourced telemetry pipeline"
)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="data directory (log, chDB, keys)")
]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML configuration file")]
Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="a value of the file's parameters: section, name=value (repeat)"
    ),
]


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # protocol libraries log a traceback for every lost connection; the connectors
    # report those as ResourceStatus with a clear reason instead
    for name in ("asyncua", "pymodbus", "aiomqtt"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # recent records for GET /api/v1/logs, and every handler's lines scrubbed of secrets
    from millrace.api.logring import install

    install()


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


def _serve(main: Coroutine[Any, Any, None]) -> None:
    """Run a serving command's ``main`` to its end, then leave the interpreter's exit
    nothing to collect: the GC policy froze the start-up objects and unfroze them at
    stop, and the collection Python runs as it finalizes then walked every object of the
    engine — 1.5-4 s after the last stage had stopped (one CPU busy; on a loaded machine
    more). Everything is closed by then; refcounting still frees what it frees."""
    try:
        asyncio.run(main)
    finally:
        gc.freeze()


@app.command()
def run(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="API bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="API port (default 8080)")] = None,
    config: ConfigFile = None,
    param: Params = None,
) -> None:
    """Run everything in one process: log, connectors, processors and the API."""
    from millrace.pipeline.cli.config import commissioning_of, load_config, parse_params
    from millrace.pipeline.cli.engine import Engine, announce_key

    _logging()
    try:
        cfg = load_config(
            config, {("data_dir",): data_dir, ("api", "host"): host, ("api", "port"): port}
        )
        params = parse_params(param or [])
        commissioning = commissioning_of(cfg, config.parent if config else None, params)
        engine = Engine(cfg, commissioning)
        engine.open()
    except MillraceError as exc:
        _fail(exc)
        return
    key = engine.ensure_admin_key()
    if key:
        announce_key(key)

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

    _serve(main())


@app.command()
def connect(config: ConfigFile = None, param: Params = None) -> None:
    """Distributed mode: run the configured connectors, producing to Kafka
    (MILLRACE_KAFKA_BOOTSTRAP)."""
    from millrace.pipeline.cli.config import commissioning_of, load_config, parse_params
    from millrace.pipeline.cli.distributed import run_connect

    _logging()
    try:
        cfg = load_config(config)
        params = parse_params(param or [])
        commissioning = commissioning_of(cfg, config.parent if config else None, params)
        _serve(run_connect(cfg, commissioning=commissioning))
    except MillraceError as exc:
        _fail(exc)


@app.command()
def process(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Distributed mode: a faust worker folding Kafka (MILLRACE_KAFKA_BOOTSTRAP) into a
    ClickHouse server (MILLRACE_CLICKHOUSE_URL) or, without one, chDB in --data-dir."""
    from millrace.pipeline.cli.config import load_config
    from millrace.pipeline.cli.distributed import run_process

    _logging()
    try:
        _serve(run_process(load_config(config, {("data_dir",): data_dir})))
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
    from millrace.pipeline.cli.config import load_config
    from millrace.pipeline.cli.distributed import run_api

    _logging()
    try:
        cfg = load_config(config, {("api", "host"): host, ("api", "port"): port})
        _serve(run_api(cfg))
    except MillraceError as exc:
        _fail(exc)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="one read-only SQL statement")],
    data_dir: DataDir = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    max_rows: Annotated[int, typer.Option(help="result row limit")] = 10_000,
) -> None:
    """Query the projections of a data directory while the engine is stopped, in the
    analyst sandbox (``projections.sandbox``; the audit trail included)."""
    from millrace.projections import sandbox
    from millrace.projections.store.chdb import ChdbStore

    store = ChdbStore((data_dir or Path("./data")) / "chdb")
    limits = sandbox.SqlLimits(max_execution_time=60.0, max_result_rows=max_rows)
    try:
        res = sandbox.readonly_query(store, query, limits, sandbox.allowed_tables(True))
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
def replay(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    projection: Annotated[
        list[str] | None,
        typer.Option("--projection", "-p", help="a projection to rebuild (repeat; default all)"),
    ] = None,
    start_time: Annotated[
        str | None, typer.Option("--start-time", help="fold from here on (ISO-8601 or epoch s)")
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="the engine's API (default: from the config)")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="rebuild here, the engine stopped")
    ] = False,
) -> None:
    """Rebuild projections from the log: through the running engine (a replay task;
    queries and ingest go on; key from MILLRACE_API_KEY), else offline."""
    import os

    from millrace.pipeline.cli.replay import replay_command

    try:
        replay_command(
            config,
            data_dir,
            projection or [],
            start_time,
            url,
            os.environ.get("MILLRACE_API_KEY") or None,
            offline,
        )
    except MillraceError as exc:
        _fail(exc)


@app.command()
def restore(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    start: Annotated[
        str | None, typer.Option("--start", help="first record time (ISO-8601 or epoch s)")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="records before this time (ISO-8601 or epoch s)")
    ] = None,
    file_url: Annotated[
        list[str] | None,
        typer.Option("--url", help="an archive file: a path on the archive store or a URL"),
    ] = None,
    identity: Annotated[
        list[str] | None, typer.Option("--identity", help="only this identity (repeat)")
    ] = None,
    topic: Annotated[list[str] | None, typer.Option("--topic", help="only this topic")] = None,
    api: Annotated[
        str | None, typer.Option("--api", help="the engine's API (default: from the config)")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="restore here, the engine stopped")
    ] = False,
) -> None:
    """Restore archived records into the projections, exactly once: by time
    (--start/--end) or by file (--url); through the running engine (a restore task;
    key from MILLRACE_API_KEY), else offline."""
    import os

    from millrace.pipeline.cli.restore import restore_command

    try:
        task = restore_command(
            config,
            data_dir,
            start,
            end,
            file_url or [],
            identity or [],
            topic or [],
            api,
            os.environ.get("MILLRACE_API_KEY") or None,
            offline,
        )
    except MillraceError as exc:
        _fail(exc)
        return
    counts = task.get("progress") or task.get("counts") or {}
    typer.echo(
        f"restored {counts.get('readings', 0)} readings, {counts.get('events', 0)} events "
        f"from {counts.get('files', 0)} files ({counts.get('skipped', 0)} already held; "
        f"task {task['task_id']})"
    )


app.add_typer(archive_app, name="archive")
app.add_typer(service_app, name="service")


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="commissioning file (YAML)")],
    fmt: Annotated[str, typer.Option("--format", help="text or json")] = "text",
) -> None:
    """Check a commissioning file: every violation as `level json_path: description`;
    exit 1 when there are errors (warnings alone pass)."""
    from millrace.connectors.commissioning import validate_text
    from millrace.pipeline.cli.config import MillraceConfig

    try:
        text = file.read_text()
    except OSError as exc:
        _fail(exc)
        return
    # a commissioning file, or a `millrace run --config` file holding one
    _, violations = validate_text(text, host_model=MillraceConfig)
    failed = any(v.level == "error" for v in violations)
    if fmt == "json":
        typer.echo(
            json.dumps(
                {
                    "status": "failed" if failed else "passed",
                    "violations": [v.model_dump() for v in violations],
                }
            )
        )
    else:
        for v in violations:
            typer.echo(v.line())
        errors = sum(v.level == "error" for v in violations)
        typer.echo(
            f"{file}: {'failed' if failed else 'passed'} "
            f"({errors} errors, {len(violations) - errors} warnings)",
            err=True,
        )
    if failed:
        raise typer.Exit(1)


@app.command()
def template(
    protocol: Annotated[str, typer.Argument(help="opcua, modbus, mqtt, files or simulator")],
) -> None:
    """Print a commented commissioning file for PROTOCOL."""
    from millrace.connectors.registry import protocols

    spec = protocols().get(protocol)
    if spec is None:
        _fail(ValueError(f"no protocol {protocol!r}; one of {', '.join(sorted(protocols()))}"))
        return
    typer.echo(spec.template, nl=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of commissioning files (for editors)."""
    from millrace.connectors.schema import commissioning_json_schema

    typer.echo(json.dumps(commissioning_json_schema(), indent=2))


@app.command()
def browse(
    url: Annotated[str, typer.Argument(help="opc.tcp://host:port[/path]")],
    start: Annotated[str | None, typer.Option(help="node id to start at (Objects)")] = None,
    depth: Annotated[int, typer.Option(help="levels to descend")] = 5,
    username: Annotated[str | None, typer.Option(help="user name")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """List the variables of an OPC UA server (password from MILLRACE_OPCUA_PASSWORD)."""
    import os

    try:
        from millrace.connectors.opcua.browse import browse as opcua_browse
    except ImportError as exc:  # the opcua extra is not installed
        _fail(RuntimeError(f"{exc.name} is not installed: pip install 'millrace[opcua]'"))
        return

    try:
        nodes = asyncio.run(
            opcua_browse(
                url,
                start=start,
                depth=depth,
                username=username,
                password=os.environ.get("MILLRACE_OPCUA_PASSWORD"),
            )
        )
    except Exception as exc:
        _fail(exc)
        return
    rows = [n if isinstance(n, dict) else _as_dict(n) for n in nodes]
    if fmt == "json":
        typer.echo(json.dumps(rows, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    cols = list(rows[0]) if rows else ["node_id"]
    t = Table(*cols)
    for r in rows:
        t.add_row(*(str(r.get(c, "")) for c in cols))
    Console().print(t)


def _as_dict(obj: object) -> dict[str, object]:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(vars(obj))


@app.command()
def bench(
    seconds: Annotated[float, typer.Option(help="measurement time per figure")] = 10.0,
    devices: Annotated[int, typer.Option(help="simulated devices")] = 1000,
    signals: Annotated[int, typer.Option(help="signals per device")] = 25,
) -> None:
    """Measure end-to-end throughput on a scratch data directory; one figure per line
    as ``name: value unit``."""
    # bench/ sits beside the packages in a source checkout and is not installed
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "bench" / "e2e.py").is_file() and str(checkout) not in sys.path:
        sys.path.append(str(checkout))
    try:
        from bench.e2e import run_bench
    except ImportError:
        _fail(RuntimeError("millrace bench runs from a source checkout (its bench/ folder)"))
        return
    for name, (value, unit) in run_bench(seconds, devices, signals).items():
        typer.echo(f"{name}: {value:.6g} {unit}")


def main() -> None:
    from millrace.pipeline.no_pandas import skip_pandas

    skip_pandas()
    app()


if __name__ == "__main__":
    main()
