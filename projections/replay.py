"""Replay while running: rebuild projections from the log beside the live ones, swap.

Why shadow tables and a held fold, rather than rebuilding in place: queries must answer
throughout and never see a half-built projection, and the live fold must go on with
ingest. So a replay

1. creates shadows of the tables it rebuilds (``projections.shadow``: same DDL, another
   name) and folds the log into them with a second :class:`EmbeddedRuntime` whose sink
   writes only to the shadows and keeps its own progress (consumer ``replay:<tag>`` in
   ``millrace.progress``). The same exactly-once protocol holds for it: a crash resumes
   the shadow fold where its progress says, with the same dedup tokens;
2. catches up with the live runtime, never reading past the live positions, so the
   shadow is always at or behind what the live tables hold, until it lacks at most
   ``hold_records`` or stops gaining (ingest as fast as the shadow folds: on two cores
   the two folds share the CPU), and marks the shadows for the swap;
3. holds the live fold between two batches (:meth:`EmbeddedRuntime.paused`: no intent
   pending), folds the shadow up to exactly the live positions, and exchanges the
   tables (``EXCHANGE TABLES``: atomic per pair; the comment protocol in
   ``projections.shadow`` finishes an interrupted exchange at the next start). Old and
   new tables are at the very same log position, so the live progress row is right for
   both: no progress moves, and a crash before, during or after the swap leaves all old
   or all new tables. The hold lasts one short bounded fold and one DDL statement
   (``bench/replay_bench.py`` measures it);
4. lets the live fold go on and drops the shadows (now the old tables).

Named projections: only those are swapped. Stateful processors read their state from
their own table (identities, alarms, resource_states, tasks) and the telemetry fold its
applied batch ids; a shadow fold must read them at the shadow's position, so these
tables are always built into shadows too and, when not named, dropped afterwards
instead of swapped.

History: with an archive configured, the fold reads what retention deleted from it
(``pipeline.log.archive_backed``: the same offsets, so one continuous fold), so a
replay rebuilds the whole history, not just what the log still holds. ``start_time``:
the fold starts, in each partition, at the first record appended at or after it (the
rebuilt projections then hold what came since).

Distributed deployment (``millrace process`` workers on Kafka, one ClickHouse server):
the same steps, with the live fold seen through ``projections.replay_live``: its
positions are the workers' committed progress in the store, and the hold of step 3 is
the pipeline pause through the log, which every worker answers once its take in flight
has ended (``pipeline.runtime.hold``); the replay runs in the task runner of the
process role (a singleton). An interrupted exchange is not finished at a worker's
start there (other workers may fold); the task's rerun finishes it when the live fold
still stands where the shadows stopped (a killed hold leaves its pause in force, and
workers start paused), else drops the rest: the projections are then a mix of old and
new tables, each at the position the hold held, so no reading is lost or doubled (with
``start_time``, the old ones keep their history).

On a ClickHouse cluster (Distributed tables over each node's ``_local`` ones,
``distributed.clickhouse_cluster``) the same steps run with
``projections.replay_cluster.ClusterShadows`` (``ReplayParts.shadows``): shadow
``_local`` tables and their Distributed fronts created ON CLUSTER, the fold writing
through the fronts, and ``EXCHANGE TABLES … ON CLUSTER`` of every node's local tables
under the hold; its module doc says what that guarantees (atomic per node, not across
nodes) and how a failed node is handled.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.errors import MillraceError
from millrace.pipeline.log.archive_backed import ArchiveBackedLog
from millrace.pipeline.log.base import EventLog, TopicPartition
from millrace.pipeline.processors.base import Processor, StatefulProcessor
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.sink import Range, SinkBatch
from millrace.projections import shadow
from millrace.projections.migrations import PROJECTION_TABLES
from millrace.projections.replay_live import LiveFold, live_of
from millrace.projections.shadow import ServerShadows, Shadows
from millrace.projections.shadow import forget as forget  # restore deletes progress with it
from millrace.projections.store.base import ProjectionStore
from millrace.projections.tables import TABLES
from millrace.projections.writer import ProjectionWriter

if TYPE_CHECKING:
    from millrace.pipeline.tasks import Handler, TaskContext

log = logging.getLogger("millrace.replay")

#: the projections a replay may rebuild (progress is the sink's bookkeeping, not one)
REPLAYABLE: tuple[str, ...] = tuple(t for t in PROJECTION_TABLES if t != "progress")


class ReplayError(MillraceError):
    """A replay cannot run (its reason ends the task as failed)."""


class UnknownProjectionError(ReplayError):
    """A named projection does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown projection {name!r}; known: {', '.join(REPLAYABLE)}")
        self.name = name


#: tables the fold reads besides the stateful processors' own: the telemetry fold's
#: applied batch ids (``pipeline.batches``)
READ_BY_FOLD = ("applied_batches",)


def state_tables() -> list[str]:
    """The tables the fold reads: stateful processors' state, applied batch ids."""
    found = {p.state_table for p in processors() if isinstance(p, StatefulProcessor)}
    return sorted(t for t in found | set(READ_BY_FOLD) if t in TABLES)


def plan(names: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(tables swapped, tables built): the named projections (all when none are named)
    and, besides, the state tables the fold reads."""
    swapped = list(REPLAYABLE) if not names else []
    for name in names or ():
        if name not in REPLAYABLE:
            raise UnknownProjectionError(name)
        if name not in swapped:
            swapped.append(name)
    built = swapped + [t for t in state_tables() if t not in swapped]
    return swapped, built


Report = Callable[[dict[str, int]], Awaitable[None]]


@dataclass
class ReplayParts:
    """What a replay works with: the log, the store, the live runtime (held at the swap)."""

    log: EventLog
    store: ProjectionStore
    #: the live fold: the in-process runtime, or the distributed workers
    live: EmbeddedRuntime | LiveFold
    codec: AvroCodec | None = None
    #: where the records retention deleted are (None: the log's retained records only)
    archive: ArchiveStore | None = None
    #: fresh processors configured as the live ones (the telemetry fold's batch-id window)
    processors: Callable[[], Sequence[Processor]] = processors
    max_records: int = 20_000
    #: records the shadow may still lack when the live fold is held for the swap
    hold_records: int = 1_000
    #: where the shadows are built and swapped (None: on ``store``, one server or chDB)
    shadows: Shadows | None = None


class Replay:
    """One replay (see the module doc); :meth:`run` is resumable under the same id."""

    def __init__(
        self,
        parts: ReplayParts,
        replay_id: str,
        projections: Sequence[str] | None = None,
        start_time_us: int | None = None,
    ) -> None:
        self.parts = parts
        self.live = live_of(parts.live)
        self.shadows: Shadows = parts.shadows or ServerShadows(parts.store)
        #: who holds the live fold (the actor of a distributed hold's pause events)
        self.holder = f"replay:{replay_id}"
        #: the log, its deleted history read back from the archive when there is one
        self.log: EventLog = parts.log
        if parts.archive is not None:
            self.log = ArchiveBackedLog(parts.log, parts.archive, parts.codec)
        self.replay_id = replay_id
        self.swapped, self.built = plan(projections)
        self.start_time_us = start_time_us
        #: test hook: called (with the phase name) before each phase's store work
        self.before: Callable[[str], None] = lambda phase: None

    async def _store(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, self.parts.store, *args)

    async def _shadows(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def run(self, report: Report, stop: asyncio.Event) -> dict[str, int] | None:
        """Build, catch up, swap; the counts when done, None when ``stop`` came first
        (the shadows and their progress stay; the next run resumes them)."""
        prefix = f"{self.replay_id}."
        done = await self._shadows(self.shadows.swapped, self.swapped, prefix)
        if done is not None:  # the exchange began before a crash
            await self._finish(done)
            return {"records": 0}
        tag = await self._shadows(self.shadows.building, self.built)
        fresh = tag is None or not tag.startswith(prefix)
        if not fresh:
            await self.live.release(self.holder)  # an earlier run may have been holding
        if fresh:
            tag = prefix + secrets.token_hex(4)
            self.before("create")
            await self._shadows(self.shadows.create, self.built, tag)
        assert tag is not None
        fold = EmbeddedRuntime(
            self.log,
            ProjectionWriter(self.parts.store, {t: shadow.shadow_name(t) for t in self.built}),
            self.parts.processors(),
            consumer=f"replay:{tag}",
            codec=self.parts.codec,
            max_records=self.parts.max_records,
            publish_deadletters=False,  # published by the live fold the first time
        )
        try:
            if fresh and self.start_time_us is not None:
                await self._start_at(fold, self.start_time_us)
            counts = await self._fold(fold, tag, report, stop)
        finally:
            fold.close()
        if counts is not None:
            self.before("drop")
            await self._shadows(self.shadows.drop, self.built)
            await self._shadows(self.shadows.forget, fold.consumer)
        return counts

    async def _finish(self, tag: str) -> None:
        """After a crash during the exchange: the pairs not exchanged yet are exchanged
        when the live fold is still where the shadows stopped (the held position: a
        crashed distributed hold leaves its pause in force), else their shadows are
        dropped (each table, old or new, is at that position: nothing lost or doubled).
        ``millrace run`` has already finished the exchange at start (``shadow.recover``)."""
        consumer = f"replay:{tag}"
        built = await self._store(lambda s: ProjectionWriter(s).progress(consumer).positions)
        now = await self.live.positions(list(built))
        if now == built:
            await self._shadows(self.shadows.recover)
        await self.live.release(self.holder)  # killed holding: the workers go on
        await self._shadows(self.shadows.drop, self.built)
        await self._shadows(self.shadows.forget, consumer)

    async def _fold(
        self, fold: EmbeddedRuntime, tag: str, report: Report, stop: asyncio.Event
    ) -> dict[str, int] | None:
        live = self.live
        total = await self._total(fold)

        def counts() -> dict[str, int]:
            return {
                "records": fold.stats.records,
                "records_total": max(total, fold.stats.records),
                "readings": fold.stats.rows.get("readings", 0),
            }

        least, stalled = None, 0
        while not stop.is_set():
            # never past the live fold: the shadow stays at or behind the live tables
            fold.until = await live.positions(fold.topic_partitions())
            self.before("fold")
            n = await fold.step()
            await report(counts())
            behind = sum(max(0, end - fold.position(tp)) for tp, end in fold.until.items())
            # close enough to hold the live fold briefly, or not gaining on it any more
            # (ingest as fast as the shadow folds): hold it now rather than never
            stalled = stalled + 1 if least is not None and behind >= least else 0
            least = behind if least is None else min(least, behind)
            if n == 0 or behind <= self.parts.hold_records or stalled >= 5:
                break
        if stop.is_set():
            return None
        self.before("mark")
        await self._shadows(self.shadows.mark, self.swapped, tag)
        async with live.held(fold.topic_partitions(), self.holder) as positions:
            fold.until = positions
            while True:
                self.before("fold")
                if not await fold.step():
                    break
            short = {tp: p for tp, p in positions.items() if fold.position(tp) < p}
            if short:
                raise ReplayError(f"the shadow fold stopped short of the live one: {short}")
            self.before("swap")
            await live.unchanged(positions)
            await self._shadows(self.shadows.exchange, self.swapped)
        await report(counts())
        return counts()

    async def _total(self, fold: EmbeddedRuntime) -> int:
        total = 0
        for tp in fold.topic_partitions():
            first, end = await self.log.offsets(tp.topic, tp.partition)
            total += end - max(first, fold.position(tp))
        return total

    async def _start_at(self, fold: EmbeddedRuntime, start_us: int) -> None:
        """Commit the shadow's first positions: the first record at or after ``start_us``."""
        ranges: dict[TopicPartition, Range] = {}
        for tp in fold.topic_partitions():
            offset = await first_at(self.log, tp, start_us)
            ranges[tp] = Range(offset, offset)
        await asyncio.to_thread(fold.sink.write, fold.consumer, SinkBatch(seq=1, ranges=ranges))


async def first_at(log: EventLog, tp: TopicPartition, start_us: int) -> int:
    """The first offset of ``tp`` appended at or after ``start_us`` (binary search over
    the log's append times, which grow with the offset)."""
    low, high = await log.offsets(tp.topic, tp.partition)
    while low < high:
        mid = (low + high) // 2
        got = await log.read(tp.topic, tp.partition, mid, 1)
        if got and got[0].timestamp_us < start_us:
            low = got[0].offset + 1
        else:
            high = mid
    return low


def replay_handler(parts: Callable[[], ReplayParts | None]) -> Handler:
    """The ``replay`` task kind (params: ``projections``, a list of names or empty for
    all; ``start_time_us``, optional). ``parts`` gives None where no live fold can be
    held (no processor runtime or workers to hold): the task then fails saying so."""

    async def handle(ctx: TaskContext) -> None:
        got = parts()
        if got is None:
            raise ReplayError(NO_LIVE_FOLD)
        start = ctx.params.get("start_time_us")
        replay = Replay(
            got,
            ctx.task_id,
            ctx.params.get("projections") or None,
            None if start is None else int(start),
        )

        async def report(counts: dict[str, int]) -> None:
            await ctx.progress(None, **counts)

        counts = await replay.run(report, ctx.stop)
        await ctx.flush()
        if counts is not None:
            log.info("replay %s: %s rebuilt (%s)", ctx.task_id, replay.swapped, counts)

    return handle


#: why a replay is refused where no live fold can be held
NO_LIVE_FOLD = (
    "replay while running needs the live fold to hold at the swap: run it in the "
    "process role (millrace run or millrace process)"
)
