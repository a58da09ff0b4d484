"""The live fold a replay holds (``projections.replay_live``), on chDB: a distributed
live fold whose committed progress moves during the hold fails the replay before the
swap (the live tables untouched, the shadows kept for the next run); a next run of the
same replay first releases a hold an earlier run may have left, then swaps."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.topics import TELEMETRY
from millrace.projections import shadow
from millrace.projections.replay import Replay, ReplayParts
from millrace.projections.replay_live import DistributedLive, LiveMovedError, Positions
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

T0 = 1_760_000_000_000_000
CONSUMER = "millrace-projections"


class StoreLive(DistributedLive):
    """The distributed live fold without Kafka: the committed progress of ``CONSUMER``
    in the store, a hold that only records its release, and ``missed``: a worker that
    missed the pause and folds while held."""

    def __init__(self, store: ChdbStore, missed: EmbeddedRuntime | None = None) -> None:
        super().__init__(store, hold=None, consumer=CONSUMER)  # type: ignore[arg-type]
        self.missed = missed
        self.released: list[str] = []

    @contextlib.asynccontextmanager
    async def held(self, tps: Sequence[TopicPartition], holder: str) -> AsyncIterator[Positions]:
        positions = await self.positions(tps)
        if self.missed is not None:
            await self.missed.run_until_idle()
        yield positions

    async def release(self, holder: str) -> None:
        self.released.append(holder)


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[LocalEventLog]:
    log = LocalEventLog(tmp_path / "log")
    yield log
    await log.close()


def count(store: ChdbStore, table: str = "readings") -> int:
    return int(store.execute(f"SELECT count() FROM millrace.{table}").rows[0][0])


async def test_a_move_during_the_hold_fails_the_replay_before_the_swap(
    store: ChdbStore, log: LocalEventLog
) -> None:
    shadow.drop_all(store)
    pub = LogPublisher(log)

    async def send(i: int) -> None:
        sample = {"ts_us": T0 + i, "values": {"x": float(i)}, "quality": 0}
        batch = {"identity": f"d{i % 2}", "source": "t", "received_us": T0, "samples": [sample]}
        await pub.publish(TELEMETRY, [(f"d{i % 2}", batch)])

    # the "workers": a live fold committing under the distributed consumer name
    workers = EmbeddedRuntime(log, ProjectionWriter(store), processors(), consumer=CONSUMER)
    for i in range(20):
        await send(i)
    await workers.run_until_idle()
    store.execute("DELETE FROM millrace.readings WHERE identity = 'd1'")  # a rebuild fixes it
    assert count(store) == 10
    await send(20)  # on the log, not folded yet: the worker that misses the pause folds it

    moving = StoreLive(store, missed=workers)
    with pytest.raises(LiveMovedError, match="moved while held"):
        await Replay(ReplayParts(log, store, moving), "r1", ["readings"]).run(
            _quiet, asyncio.Event()
        )
    assert count(store) == 11  # not swapped: the live table as it was, plus the new one
    assert count(store, "readings__shadow") == 20  # kept for the next run
    assert moving.released == []  # a fresh build: no earlier hold to release

    # the next run of the same replay: it releases, catches up and swaps
    still = StoreLive(store)
    counts = await Replay(ReplayParts(log, store, still), "r1", ["readings"]).run(
        _quiet, asyncio.Event()
    )
    assert counts is not None
    assert still.released == ["replay:r1"]  # the earlier run may have been holding
    assert count(store) == 21
    assert "readings" not in {n[: -len("__shadow")] for n in shadow.comments(store)}


async def _quiet(counts: dict[str, int]) -> None:
    pass


@pytest.mark.parametrize("moved", [False, True])
async def test_a_rerun_after_a_crash_mid_exchange_finishes_it_unless_the_live_fold_moved(
    store: ChdbStore, log: LocalEventLog, moved: bool
) -> None:
    """A crash between two pairs of the exchange: the rerun exchanges the rest when the
    live fold stands where the shadows stopped (all new), else drops them (each table,
    old or new, at the held position)."""
    shadow.drop_all(store)
    pub = LogPublisher(log)
    for i in range(20):
        sample = {"ts_us": T0 + i, "values": {"x": float(i)}, "quality": 0}
        batch = {"identity": f"d{i % 2}", "source": "t", "received_us": T0, "samples": [sample]}
        await pub.publish(TELEMETRY, [(f"d{i % 2}", batch)])
    workers = EmbeddedRuntime(log, ProjectionWriter(store), processors(), consumer=CONSUMER)
    await workers.run_until_idle()
    for table in ("readings", "latest"):  # only a rebuild brings them back
        store.execute(f"DELETE FROM millrace.{table} WHERE identity = 'd1'")

    replay = Replay(ReplayParts(log, store, StoreLive(store)), "r2", ["readings", "latest"])

    def crash(phase: str) -> None:
        if phase == "swap":  # the first pair exchanged, then the process dies
            store.execute("EXCHANGE TABLES millrace.readings AND millrace.readings__shadow")
            raise RuntimeError("killed mid-exchange")

    replay.before = crash
    with pytest.raises(RuntimeError, match="killed"):
        await replay.run(_quiet, asyncio.Event())
    if moved:  # a worker folded after the crash (say, an operator resumed)
        sample = {"ts_us": T0 + 99, "values": {"x": 99.0}, "quality": 0}
        await pub.publish(
            TELEMETRY,
            [("d0", {"identity": "d0", "source": "t", "received_us": T0, "samples": [sample]})],
        )
        await workers.run_until_idle()
    again = StoreLive(store)
    counts = await Replay(ReplayParts(log, store, again), "r2", ["readings", "latest"]).run(
        _quiet, asyncio.Event()
    )
    assert counts == {"records": 0} and again.released == ["replay:r2"]
    assert not [n for n in shadow.comments(store) if n.endswith("__shadow")]
    latest = {str(r[0]) for r in store.execute("SELECT identity FROM millrace.latest FINAL").rows}
    # exchanged: the rebuilt latest has d1 again; dropped: the old one, without it
    assert latest == ({"d0"} if moved else {"d0", "d1"})
    assert count(store) == (21 if moved else 20)
