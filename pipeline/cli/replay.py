"""``millrace replay``: through the running engine's API when one answers (a replay
task, ``projections.replay``: shadow tables swapped in while ingest goes on), else
offline: all projections dropped and the whole log folded into them again, or, for
named projections or a start time, the same shadow build and swap as the engine's
(the live fold idle at its committed positions)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from millrace.pipeline.cli.config import load_config
from millrace.pipeline.cli.replay_client import (
    ApiClient,
    EngineUnreachableError,
    replay_through_api,
)

# the offline rebuild's modules (runtime, processors, chDB) are imported when it runs:
# a replay through the engine's API needs none of them
if TYPE_CHECKING:
    from millrace.pipeline.log.base import EventLog
    from millrace.pipeline.runtime.embedded import EmbeddedRuntime
    from millrace.projections.store.chdb import ChdbStore


async def _total(log: EventLog, runtime: EmbeddedRuntime) -> int:
    total = 0
    for tp in runtime.topic_partitions():
        first, end = await log.offsets(tp.topic, tp.partition)
        total += end - first
    return total


async def rebuild(log: EventLog, store: ChdbStore, show_progress: bool = True) -> int:
    """Drop, migrate, and process the log from its first retained offset."""
    from millrace.pipeline.processors.catalog import processors
    from millrace.pipeline.runtime.embedded import EmbeddedRuntime
    from millrace.projections import shadow
    from millrace.projections.migrations import drop_projections, migrate
    from millrace.projections.writer import ProjectionWriter

    drop_projections(store)
    shadow.drop_all(store)
    migrate(store)
    # dead letters found now were published the first time through
    runtime = EmbeddedRuntime(
        log, ProjectionWriter(store), processors(), max_records=20_000, publish_deadletters=False
    )
    total = await _total(log, runtime)
    done = 0
    with Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
    ) as bar:
        task = bar.add_task("records", total=total)
        while True:
            n = await runtime.step()
            if n == 0:
                break
            done += n
            bar.update(task, completed=min(done, total))
    return done


async def rebuild_named(
    log: EventLog,
    store: ChdbStore,
    projections: Sequence[str],
    start_time_us: int | None,
    show_progress: bool = True,
) -> int:
    """Named projections, or from a start time: built beside the live ones and swapped."""
    from millrace.pipeline.processors.catalog import processors
    from millrace.pipeline.runtime.embedded import EmbeddedRuntime
    from millrace.projections import shadow
    from millrace.projections.migrations import migrate
    from millrace.projections.replay import Replay, ReplayParts
    from millrace.projections.writer import ProjectionWriter

    migrate(store)
    shadow.recover(store)
    idle = EmbeddedRuntime(log, ProjectionWriter(store), processors())
    replay = Replay(
        ReplayParts(log, store, idle), f"offline-{secrets.token_hex(4)}", projections, start_time_us
    )
    with Progress(
        TextColumn("replay"), BarColumn(), MofNCompleteColumn(), disable=not show_progress
    ) as bar:
        task = bar.add_task("records", total=None)

        async def report(counts: dict[str, int]) -> None:
            bar.update(task, completed=counts["records"], total=counts["records_total"])

        try:
            counts = await replay.run(report, asyncio.Event())
        finally:
            idle.close()
    return (counts or {}).get("records", 0)


def replay_command(
    config: Path | None,
    data_dir: Path | None,
    projections: Sequence[str] = (),
    start_time: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    offline: bool = False,
) -> int:
    """``millrace replay``: the engine's API first (unless ``offline``), else offline."""
    cfg = load_config(config, {("data_dir",): data_dir})
    if not offline:
        host = "127.0.0.1" if cfg.api.host in ("0.0.0.0", "::", "") else cfg.api.host
        client = ApiClient(url or f"http://{host}:{cfg.api.port}/api/v1", api_key)
        try:
            task = replay_through_api(client, projections, start_time)
        except EngineUnreachableError:
            if url is not None:
                raise
        else:
            n = int((task.get("progress") or {}).get("records", 0))
            print(f"replayed {n} records (task {task['task_id']})")
            return n
    if not projections and start_time is None:
        return replay_all(config, data_dir)
    from millrace.api.timeparams import parse_time
    from millrace.pipeline.log.local import LocalEventLog
    from millrace.projections.store.chdb import ChdbStore

    start_us = parse_time("start_time", start_time, None)
    log = LocalEventLog(Path(cfg.data_dir) / "log", cfg.log)
    store = ChdbStore(Path(cfg.data_dir) / "chdb")

    async def go() -> int:
        try:
            return await rebuild_named(log, store, projections, start_us)
        finally:
            await log.close()
            store.close()

    n = asyncio.run(go())
    print(f"replayed {n} records")
    return n


def replay_all(config: Path | None, data_dir: Path | None) -> int:
    from millrace.pipeline.log.local import LocalEventLog
    from millrace.projections.store.chdb import ChdbStore

    cfg = load_config(config, {("data_dir",): data_dir})
    log = LocalEventLog(Path(cfg.data_dir) / "log", cfg.log)
    store = ChdbStore(Path(cfg.data_dir) / "chdb")

    async def go() -> int:
        try:
            return await rebuild(log, store)
        finally:
            await log.close()
            store.close()

    n = asyncio.run(go())
    print(f"replayed {n} records")
    return n
