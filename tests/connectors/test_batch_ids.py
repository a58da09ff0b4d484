"""Connector batches carry batch ids (issue 14 item 1): every batch the Batcher hands
out has one, readings the protocol tagged make batches of their own, and a
store-and-forward resend of a batch the log had in fact taken is stored once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from millrace.connectors._common.backoff import Backoff
from millrace.connectors._common.batcher import Batcher
from millrace.connectors._common.buffered import BufferedPublisher
from millrace.connectors._common.spool import Spool
from millrace.pipeline.codec import default_codec
from millrace.pipeline.connector import Event, EventPublisher
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.telemetry_columns import samples_of
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

T0 = 1_750_000_000_000_000


def test_every_batch_taken_has_an_id_and_tagged_readings_keep_theirs() -> None:
    b = Batcher()
    b.add("dev", "a", 1.0, T0)
    b.add("dev", "b", 2.0, T0 + 1, batch_id="given")
    b.add("dev", "c", 3.0, T0 + 2, batch_id="given")
    b.add("other", "a", 4.0, T0)
    taken = b.take("src", T0)
    ids = {(identity, e["batch_id"]) for identity, e in taken}
    assert len(taken) == 3 and ("dev", "given") in ids
    fresh = [bid for identity, bid in ids if bid != "given"]
    assert len(set(fresh)) == 2 and all(len(x) == 32 for x in fresh)
    tagged = next(e for _, e in taken if e["batch_id"] == "given")
    assert [s["values"] for s in samples_of(tagged)] == [{"b": 2.0}, {"c": 3.0}]
    assert b.take("src", T0) == [] and b.pending_n == 0


class AckLost(EventPublisher):
    """Delivers to the log, but the first ``lost`` answers never come back in time
    (a broker that took the records and then went quiet)."""

    def __init__(self, inner: EventPublisher, lost: int) -> None:
        self.inner = inner
        self.lost = lost

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        await self.inner.publish(topic, events)
        if self.lost > 0:
            self.lost -= 1
            await asyncio.sleep(10)


async def fold(log: MemoryEventLog, store: ChdbStore) -> tuple[int, float]:
    runtime = EmbeddedRuntime(log, ProjectionWriter(store), processors(), consumer="c")
    await runtime.run_until_idle()
    runtime.close()
    count, total = store.execute("SELECT count(), sum(value) FROM millrace.readings").rows[0]
    return int(count), float(total or 0.0)


async def test_a_spool_resend_is_stored_once(tmp_path: Path, store: ChdbStore) -> None:
    log = MemoryEventLog()
    pub = BufferedPublisher(
        AckLost(LogPublisher(log), lost=1),
        Spool(tmp_path),
        backoff=Backoff(0.001, 0.005),
        timeout_s=0.2,
    )
    batcher = Batcher()
    values = {f"dev-{i}": float(i) + 0.5 for i in range(4)}
    for identity, v in values.items():
        batcher.add(identity, "temp", v, T0)
    await pub.publish(TELEMETRY, batcher.take("test", T0))  # times out: spooled
    assert pub.buffering
    assert await pub.flush(10)
    await pub.close()
    codec = default_codec()
    on_log = [
        codec.decode(TELEMETRY, r.value)["batch_id"]
        for p in range(log.partitions(TELEMETRY))
        for r in await log.read(TELEMETRY, p, 0, 100)
    ]
    assert len(on_log) == 8 and len(set(on_log)) == 4  # every batch twice, same ids
    assert await fold(log, store) == (4, sum(values.values()))
