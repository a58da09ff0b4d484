"""``millrace replay``: drop the projections and fold the whole log into them again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from millrace.pipeline.cli.config import load_config
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter


async def _total(log: EventLog, runtime: EmbeddedRuntime) -> int:
    total = 0
    for tp in runtime.topic_partitions():
        first, end = await log.offsets(tp.topic, tp.partition)
        total += end - first
    return total


async def rebuild(log: EventLog, store: ChdbStore, show_progress: bool = True) -> int:
    """Drop, migrate, and process the log from its first retained offset."""
    drop_projections(store)
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


def replay_all(config: Path | None, data_dir: Path | None) -> int:
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
