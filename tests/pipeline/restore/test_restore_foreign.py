"""Foreign files restored onto the log (``pipeline.restore.republish``): a file no
manifest of this deployment's archive names is appended to the log, folded live, and
survives a replay; restored twice, nothing is appended twice; a crash (kill -9) at any
point of any chunk — before, during or after the append, before the commit — resumes
with every record on the log once. A file of this deployment's archive is still folded
straight in (nothing appended)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.pipeline.archive.format import ArchivedRecord, read_archive
from millrace.pipeline.codec import default_codec
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.log.base import AppendResult, Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.restore import RestoreParams
from millrace.pipeline.restore.republish import HEADER, Republish
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.sink import MemoryProjectionSink, SinkBatch
from millrace.projections.replay import Replay, ReplayParts
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from millrace.schemas import SCHEMA_DIR
from tests.pipeline.restore.helpers import Runner, Sample, archive, check, telemetry_log
from tests.pipeline.restore.test_restore_sources import plain_file, row

REBUILT = ["readings", "agg_1m", "agg_5m", "agg_1h", "latest"]


def foreign_file(path: Path, n: int = 30) -> list[Sample]:
    """A telemetry archive written by fastavro alone (another site's, say): ``n``
    batches of two signals, every other one with a batch id; the samples it holds."""
    current = json.loads((SCHEMA_DIR / "telemetry.avsc").read_text())
    rows, samples = [], []
    for i in range(n):
        identity, at, values = f"far-{i % 3}", i * 90_000_000, {"f": float(i), "g": float(i % 4)}
        r = row(i, identity, at, values)
        if i % 2:
            r["value"]["batch_id"] = f"far:{i}"
        rows.append(r)
        samples.append((identity, at, values))
    plain_file(path, rows, current)
    return samples


async def restored_on(log: MemoryEventLog) -> Counter[str]:
    """How often each restored record (by its header) is on the log's telemetry."""
    seen: Counter[str] = Counter()
    for p in range(log.partitions("telemetry")):
        for r in await log.read("telemetry", p, 0, 1_000_000):
            for name, value in r.headers:
                if name == HEADER:
                    seen[value.decode()] += 1
    return seen


async def _quiet(counts: dict[str, int]) -> None:
    pass


async def test_a_foreign_file_goes_onto_the_log_and_a_replay_brings_it_back_once(
    store: ChdbStore, tmp_path: Path
) -> None:
    log, own = await asyncio.to_thread(telemetry_log, 40)
    archive_store, _ = await asyncio.to_thread(archive, log, tmp_path / "archive")
    far = tmp_path / "exports" / "far.avro"
    far.parent.mkdir()
    theirs = foreign_file(far)
    url = f"file://{far}"
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors(), max_records=50)
    runner = Runner(store, archive_store, allowed=(f"file://{tmp_path}/exports/",), log=log)

    async def restore() -> dict[str, Any]:
        tid = await runner.create(RestoreParams(urls=(url,)).to_json())
        state = await runner.run(tid)
        await live.run_until_idle()
        return state

    async def ends() -> int:
        return sum([(await log.offsets("telemetry", p))[1] for p in range(2)])

    before = await ends()
    await live.run_until_idle()
    first = await restore()
    assert first["status"] == "completed", first
    done = json.loads(first["files_done"][url])
    assert (done["events"], done["readings"]) == (len(theirs), 2 * len(theirs))
    on_log = await restored_on(log)
    assert len(on_log) == len(theirs) and set(on_log.values()) == {1}
    assert await ends() - before == len(theirs)
    check(store, own + theirs)  # folded live, once

    # restored again (another task): nothing appended, nothing doubled
    second = await restore()
    assert second["status"] == "completed", second
    again = json.loads(second["files_done"][url])
    assert (again["events"], again["skipped"]) == (0, len(theirs))
    assert await restored_on(log) == on_log
    check(store, own + theirs)

    # the projections dropped and rebuilt from the log: the foreign readings are back once
    for table in [*REBUILT, "applied_batches"]:
        store.execute(f"TRUNCATE TABLE millrace.{table}")
    parts = ReplayParts(log, store, live, max_records=40)
    assert await Replay(parts, "rf", REBUILT).run(_quiet, asyncio.Event()) is not None
    check(store, own + theirs)
    assert await ends() - before == len(theirs)


def test_a_file_of_this_archive_named_by_url_is_folded_not_appended(
    store: ChdbStore, tmp_path: Path
) -> None:
    """The archive store's own file, named by its file:// URL or copied elsewhere (same
    sha256): history the replay reads already, folded straight in as before."""
    log, own = telemetry_log(n=20)
    archive_store, manifests = archive(log, tmp_path / "archive")
    copies = tmp_path / "copies"
    copies.mkdir()
    urls = []
    for i, m in enumerate(manifests):
        copy = copies / f"{i}.avro"
        copy.write_bytes((tmp_path / "archive" / m.path).read_bytes())
        urls.append(f"file://{copy}")
    ends = [asyncio.run(log.offsets("telemetry", p))[1] for p in range(2)]
    runner = Runner(store, archive_store, allowed=(f"file://{copies}/",), log=log)

    async def go() -> dict[str, Any]:
        return await runner.run(await runner.create(RestoreParams(urls=tuple(urls)).to_json()))

    state = asyncio.run(go())
    assert state["status"] == "completed", state
    assert [asyncio.run(log.offsets("telemetry", p))[1] for p in range(2)] == ends
    check(store, own)  # folded straight into the (empty) projections


async def test_a_foreign_file_of_readings_held_already_appends_nothing(
    store: ChdbStore, tmp_path: Path
) -> None:
    """Another tool's export of this deployment's own readings (other batch ids, so the
    live fold's id check would not catch them): the readings the projection holds are
    not appended; the batches it does not hold are."""
    log, own = await asyncio.to_thread(telemetry_log, 20)
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors(), max_records=50)
    await live.run_until_idle()
    current = json.loads((SCHEMA_DIR / "telemetry.avsc").read_text())
    rows = [row(i, identity, at, values) for i, (identity, at, values) in enumerate(own)]
    extra = ("dev-new", 7_000_000, {"t": 1.5})
    rows.append(row(len(rows), *extra))
    for i, r in enumerate(rows):
        r["value"]["batch_id"] = f"export:{i}"
    far = tmp_path / "exports" / "mine.avro"
    far.parent.mkdir()
    plain_file(far, rows, current)
    runner = Runner(store, None, allowed=(f"file://{tmp_path}/exports/",), log=log)
    state = await runner.run(await runner.create(RestoreParams(urls=(f"file://{far}",)).to_json()))
    assert state["status"] == "completed", state
    done = json.loads(state["files_done"][f"file://{far}"])
    assert (done["events"], done["skipped"]) == (1, len(own))
    await live.run_until_idle()
    assert len(await restored_on(log)) == 1
    check(store, [*own, extra])


async def test_with_its_position_lost_the_files_telemetry_is_still_not_appended(
    store: ChdbStore, tmp_path: Path
) -> None:
    """The position goes with the projections (``millrace.progress``); once the live
    fold has folded the file, the readings held keep a second restore from appending."""
    log = MemoryEventLog(partitions=2)
    live = EmbeddedRuntime(log, ProjectionWriter(store), processors(), max_records=50)
    far = tmp_path / "exports" / "far.avro"
    far.parent.mkdir()
    theirs = foreign_file(far, n=12)
    runner = Runner(store, None, allowed=(f"file://{tmp_path}/exports/",), log=log)
    params = RestoreParams(urls=(f"file://{far}",)).to_json()
    first = await runner.run(await runner.create(params))
    assert first["status"] == "completed", first
    await live.run_until_idle()
    store.execute("DELETE FROM millrace.progress WHERE startsWith(consumer, 'republish/')")
    second = await runner.run(await runner.create(params))
    done = json.loads(second["files_done"][f"file://{far}"])
    assert (done["events"], done["skipped"]) == (0, len(theirs))
    assert len(await restored_on(log)) == len(theirs)
    await live.run_until_idle()
    check(store, theirs)


class CrashingLog(MemoryEventLog):
    """Appends ``keep`` messages of the next append, then crashes (kill -9 mid-append)."""

    def __init__(self) -> None:
        super().__init__(partitions=2)
        self.keep: int | None = None

    async def append(self, topic: str, messages: Sequence[Message]) -> list[AppendResult]:
        keep, self.keep = self.keep, None
        if keep is None:
            return await super().append(topic, messages)
        await super().append(topic, messages[:keep])
        raise RuntimeError("injected crash mid-append")


class CrashingSink(MemoryProjectionSink):
    """Crashes (once) at step ``step`` of its next write: 0 before the intent, 1 after
    the fence (the append done), before the commit."""

    def __init__(self) -> None:
        super().__init__()
        self.at: int | None = None

    def write(self, consumer: str, batch: SinkBatch, fence: Any = None) -> None:
        self.fail_after, self.at = self.at, None
        super().write(consumer, batch, fence)


FILE_RECORDS: list[ArchivedRecord] = []


def _records(tmp: Path) -> list[ArchivedRecord]:
    if not FILE_RECORDS:
        path = tmp / "far.avro"
        foreign_file(path, n=23)
        with path.open("rb") as fh:
            _, records = read_archive(fh)
            FILE_RECORDS.extend(records)
    return FILE_RECORDS


crash = st.one_of(
    st.tuples(st.just("sink"), st.integers(0, 1)),
    st.tuples(st.just("append"), st.integers(0, 12)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedule=st.lists(st.tuples(st.integers(0, 4), crash), max_size=4),
    chunk=st.integers(2, 9),
    repeats=st.integers(1, 2),
)
def test_any_crash_resumes_with_every_record_on_the_log_once(
    tmp_path_factory: Any, schedule: list[tuple[int, tuple[str, int]]], chunk: int, repeats: int
) -> None:
    records = _records(tmp_path_factory.mktemp("far"))
    log, sink = CrashingLog(), CrashingSink()

    async def attempt(crash_after: int | None, how: tuple[str, int]) -> bool:
        """One run over the file (a fresh process: new reader, progress from the sink)."""
        rep = Republish(
            iter(records), log, sink, "fid", default_codec(), MemoryEventPublisher(), chunk=chunk
        )
        steps = 0
        try:
            while True:
                if steps == crash_after:
                    if how[0] == "sink":
                        sink.at = how[1]
                    else:
                        log.keep = how[1]
                if (await rep.step()).done:
                    return True
                steps += 1
        except RuntimeError as exc:
            assert "injected" in str(exc)
            sink.fail_after, log.keep = None, None
            return False

    async def go() -> None:
        for steps, how in schedule:
            await attempt(steps, how)
        for _ in range(repeats):  # then runs that complete (a second one appends nothing)
            assert await attempt(None, ("sink", 0))

    asyncio.run(go())
    on_log = asyncio.run(restored_on(log))
    assert on_log == Counter({f"fid/{i}": 1 for i in range(len(records))})
    # in the file's order within each partition, keys kept
    for p in range(2):
        got = asyncio.run(log.read("telemetry", p, 0, 1000))
        idx = [int(dict(r.headers)[HEADER].decode().split("/")[1]) for r in got]
        assert idx == sorted(idx)
        assert all(r.key == records[i].key for r, i in zip(got, idx, strict=True))
