"""``millrace archive list|verify|export``: the archive store of the configuration
(``archive.url``, ``MILLRACE_ARCHIVE_URL``) or of ``--url``, read directly (the engine
may be running or not: the store is not its)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from millrace.pipeline.errors import ConfigError, MillraceError

if TYPE_CHECKING:
    from millrace.pipeline.archive.store import ArchiveStore

archive_app = typer.Typer(
    no_args_is_help=True, help="The archive: list windows, verify checksums, export readings."
)

ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML configuration file")]
Url = Annotated[
    str | None, typer.Option("--url", help="archive store (default: archive.url of the config)")
]


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


def _store(config: Path | None, url: str | None) -> ArchiveStore:
    from millrace.pipeline.archive.store import ArchiveStore
    from millrace.pipeline.cli.config import load_config

    cfg = load_config(config)
    target = url or cfg.archive.url
    if not target:
        raise ConfigError("no archive: pass --url, or set archive.url or MILLRACE_ARCHIVE_URL")
    return ArchiveStore(target, cfg.archive.storage_options)


def _time(field: str, raw: str | None) -> int | None:
    from millrace.api.timeparams import parse_time

    return parse_time(field, raw, None)


@archive_app.command("list")
def list_windows(
    config: ConfigFile = None,
    url: Url = None,
    topic: Annotated[str | None, typer.Option(help="one topic")] = None,
    partition: Annotated[int | None, typer.Option(help="one partition")] = None,
    start: Annotated[str | None, typer.Option(help="ISO-8601 or epoch s (log time)")] = None,
    end: Annotated[str | None, typer.Option(help="ISO-8601 or epoch s, exclusive")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one manifest per line")] = False,
) -> None:
    """The archived windows (from the manifests), oldest first."""
    from rich.console import Console
    from rich.table import Table

    from millrace.api.timeparams import format_time

    try:
        store = _store(config, url)
        windows = store.list_windows(topic, partition, _time("start", start), _time("end", end))
    except MillraceError as exc:
        _fail(exc)
        return
    if as_json:
        for m in windows:
            typer.echo(m.to_json().decode().replace("\n", ""))
        return
    t = Table("topic", "part", "window start", "offsets", "records", "readings", "bytes", "path")
    for m in windows:
        t.add_row(
            m.topic, str(m.partition), str(format_time(m.window_start_us, None)),
            f"{m.first_offset}..{m.last_offset}", str(m.records), str(m.readings),
            str(m.bytes), m.path,
        )  # fmt: skip
    Console().print(t)
    typer.echo(f"{len(windows)} window(s), {sum(m.records for m in windows)} record(s)")


@archive_app.command()
def verify(config: ConfigFile = None, url: Url = None) -> None:
    """Check every file against its manifest (size, sha256, records and offsets);
    exit 1 naming each bad file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    try:
        store = _store(config, url)
        windows = store.list_windows()
    except MillraceError as exc:
        _fail(exc)
        return
    bad = []
    with Progress(TextColumn("verify"), BarColumn(), MofNCompleteColumn()) as bar:
        task = bar.add_task("files", total=len(windows))
        for m in windows:
            bad += store.verify([m])
            bar.advance(task)
    for problem in bad:
        typer.echo(f"BAD {problem.path}: {problem.reason}", err=True)
    if bad:
        raise typer.Exit(1)
    typer.echo(f"{len(windows)} file(s) verified")


@archive_app.command()
def export(
    file: Annotated[Path, typer.Argument(help="the file to write")],
    start: Annotated[str, typer.Option(help="readings from (ISO-8601 or epoch s)")],
    end: Annotated[str, typer.Option(help="readings before (exclusive)")],
    fmt: Annotated[str, typer.Option("--format", help="parquet")] = "parquet",
    identity: Annotated[
        list[str] | None, typer.Option("--identity", "-i", help="only these (repeat)")
    ] = None,
    slack_hours: Annotated[
        float, typer.Option(help="look this far beyond the range for late or early readings")
    ] = 24.0,
    config: ConfigFile = None,
    url: Url = None,
) -> None:
    """Write the readings timed in [start, end) to FILE (Parquet: identity, signal, ts,
    kind, value, text, quality)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from millrace.pipeline.archive.export import export_readings, export_windows

    try:
        if fmt != "parquet":
            raise ConfigError(f"--format {fmt!r}: only parquet is supported")
        start_us, end_us = _time("start", start), _time("end", end)
        assert start_us is not None and end_us is not None
        if end_us <= start_us:
            raise ConfigError("--end must be after --start")
        store = _store(config, url)
        windows = export_windows(store, start_us, end_us, int(slack_hours * 3_600_000_000))
        with Progress(TextColumn("export"), BarColumn(), MofNCompleteColumn()) as bar:
            task = bar.add_task("files", total=len(windows))
            result = export_readings(
                store, windows, start_us, end_us, file, identities=identity or (),
                on_window=lambda m, r: bar.advance(task),
            )  # fmt: skip
    except MillraceError as exc:
        _fail(exc)
        return
    typer.echo(json.dumps({"file": str(file), **result.__dict__}))
