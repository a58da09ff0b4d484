"""``millrace restore``: through the running engine's API when one answers (a restore
task the engine's task runner folds), else offline on the data directory: the task is
appended to the local log (so the engine's task history shows it once it runs again)
and run here by the same handler, the engine stopped (chDB allows one process).

A URL's credentials are ``${ENV}`` references (quote them from the shell:
``--url 'https://${ARCHIVE_USER}:${ARCHIVE_PASSWORD}@host/x.avro'``, or leave them out
and let the allow-list prefix's apply): the task runner resolves them from its own
environment — the engine's, or this process's offline. A literal password is refused
here, before it reaches the API or the log.

Offline, a foreign file (``pipeline.restore.republish``) is appended to the local log
and the projections show it once the engine runs again and folds it; files of the
archive store are folded here, as the engine would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from millrace.api.timeparams import parse_time
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.cli.config import MillraceConfig, load_config
from millrace.pipeline.cli.replay_client import ApiClient, EngineUnreachableError
from millrace.pipeline.errors import MillraceError
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.restore import KIND, RestoreError, RestoreParams, RestoreTask
from millrace.pipeline.restore.offload import OffloadedRestoreTask
from millrace.pipeline.tasks import TaskKinds, TaskRunner, create_task
from millrace.projections.migrations import migrate
from millrace.projections.replay import forget
from millrace.projections.restore import held_readings
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter


class RestoreFailedError(MillraceError):
    """The restore task ended failed (the message names the failed files)."""


def _bar(show: bool) -> Progress:
    return Progress(
        TextColumn("restore"),
        BarColumn(),
        TextColumn("{task.fields[files]} files, {task.completed:,.0f} readings"),
        TimeElapsedColumn(),
        disable=not show,
    )


def _show(bar: Progress, shown: TaskID, task: dict[str, Any]) -> None:
    counts = task.get("progress") or task.get("counts") or {}
    bar.update(shown, completed=counts.get("readings", 0), files=counts.get("files", 0))


def _end(task: dict[str, Any]) -> dict[str, Any]:
    if task["status"] == "failed":
        raise RestoreFailedError(f"restore {task['task_id']} failed: {task.get('error')}")
    return task


def restore_through_api(
    client: ApiClient,
    body: dict[str, Any],
    *,
    by_url: bool,
    poll_s: float = 0.5,
    show_progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Start the restore, show its progress, return the task when it ended."""
    task_id = client.call("POST", "/restore/url" if by_url else "/restore/time", body)["data"][
        "task_id"
    ]
    with _bar(show_progress) as bar:
        shown = bar.add_task("readings", total=None, files=0)
        while True:
            task = client.call("GET", f"/restore/{task_id}")["data"]
            _show(bar, shown, task)
            if task["status"] in ("completed", "failed"):
                return _end(dict(task))
            sleep(poll_s)


async def restore_offline(
    cfg: MillraceConfig, params: RestoreParams, show_progress: bool = True
) -> dict[str, Any]:
    """Append the task to the local log and run it here."""
    data = Path(cfg.data_dir)
    log = LocalEventLog(data / "log", cfg.log)
    store = ChdbStore(data / "chdb")
    try:
        migrate(store)
        publisher = LogPublisher(log)
        archive = (
            ArchiveStore(cfg.archive.url, cfg.archive.storage_options) if cfg.archive.url else None
        )
        kinds = TaskKinds()
        # restore.worker: the archive store's files folded in worker processes
        restore_task = OffloadedRestoreTask if cfg.restore.worker else RestoreTask
        kinds.register(
            KIND,
            restore_task(
                ProjectionWriter(store),
                archive,
                publisher,
                allowed_prefixes=tuple(cfg.restore.allowed_url_prefixes),
                chunk=cfg.restore.chunk_records,
                held=held_readings(store),
                forget=partial(forget, store),
                log=log,  # foreign files onto the log: folded when the engine runs again
            ),
        )
        runner = TaskRunner(log, publisher, kinds, poll_s=0.05)
        task_id = await create_task(publisher, KIND, params.to_json(), actor="cli")
        stop = asyncio.Event()
        job = asyncio.create_task(runner.run(stop))
        try:
            with _bar(show_progress) as bar:
                shown = bar.add_task("readings", total=None, files=0)
                while True:
                    await asyncio.sleep(0.2)
                    if job.done():
                        job.result()  # raises what stopped the runner
                    await runner.catch_up()
                    state = runner.states.get(task_id)
                    if state is None:
                        continue
                    _show(bar, shown, state)
                    if state["status"] in ("completed", "failed"):
                        return _end({**state, "task_id": task_id})
        finally:
            stop.set()
            await job
    finally:
        await log.close()
        store.close()


def restore_command(
    config: Path | None,
    data_dir: Path | None,
    start: str | None,
    end: str | None,
    urls: Sequence[str],
    identities: Sequence[str] = (),
    topics: Sequence[str] = (),
    url: str | None = None,
    api_key: str | None = None,
    offline: bool = False,
) -> dict[str, Any]:
    """``millrace restore``: the engine's API first (unless ``offline``), else offline."""
    cfg = load_config(config, {("data_dir",): data_dir})
    if urls and (start or end):
        raise RestoreError("give --start/--end or --url, not both")
    if not urls and not (start and end):
        raise RestoreError("give --start and --end, or --url")
    RestoreParams(urls=tuple(urls)).check()  # no literal password leaves this process
    body: dict[str, Any] = {"urls": list(urls)}
    if not urls:
        body = {"start_time": start, "end_time": end, "identities": list(identities)}
        body["topics"] = list(topics)
    if not offline:
        host = "127.0.0.1" if cfg.api.host in ("0.0.0.0", "::", "") else cfg.api.host
        client = ApiClient(url or f"http://{host}:{cfg.api.port}/api/v1", api_key)
        try:
            return restore_through_api(client, body, by_url=bool(urls))
        except EngineUnreachableError:
            if url is not None:
                raise
    params = RestoreParams(urls=tuple(urls))
    if not urls:
        params = RestoreParams(
            parse_time("start_time", start, None),
            parse_time("end_time", end, None),
            tuple(identities),
            tuple(topics),
        )
    params.check()
    return asyncio.run(restore_offline(cfg, params))
