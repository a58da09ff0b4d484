from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from millrace.pipeline.errors import CorruptRecordError, LogError
from millrace.pipeline.log.base import EventLog, Message, TopicPartition
from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig
from tests.pipeline.log.contract import EventLogContract

ROOT = Path(__file__).resolve().parents[3]
HEADER_SIZE = 35  # fixed part of a frame, see pipeline/log/local/records.py


class TestLocalEventLog(EventLogContract):
    def make_log(self, tmp_path: Path) -> EventLog:
        return LocalEventLog(tmp_path / "log")


class TestLocalEventLogTinySegments(EventLogContract):
    def make_log(self, tmp_path: Path) -> EventLog:
        config = LocalLogConfig(segment_bytes=300, index_interval_bytes=64, fsync="never")
        return LocalEventLog(tmp_path / "log", config)


def make(path: Path, *, clock: list[int] | None = None, **options: Any) -> LocalEventLog:
    config = LocalLogConfig.model_validate({"partitions": 1, **options})
    if clock is None:
        return LocalEventLog(path, config)
    return LocalEventLog(path, config, clock=lambda: clock[0])


def segment_files(path: Path, topic: str = "t", partition: int = 0) -> list[Path]:
    return sorted((path / topic / str(partition)).glob("*.log"))


def values(
    log: LocalEventLog, topic: str = "t", partition: int = 0, offset: int = 0
) -> list[bytes]:
    return [r.value for r in log.read_sync(topic, partition, offset, 1_000_000)]


def frame_size(key: bytes | None, value: bytes) -> int:
    return HEADER_SIZE + len(key or b"") + len(value)


# --- lifecycle -------------------------------------------------------------------


def test_constructor_does_no_io(tmp_path: Path) -> None:
    LocalEventLog(tmp_path / "log")
    assert not (tmp_path / "log").exists()


def test_config_rejects_unknown_and_invalid_settings() -> None:
    with pytest.raises(ValidationError):
        LocalLogConfig.model_validate({"segment_size": 1})
    with pytest.raises(ValidationError):
        LocalLogConfig(partitions_per_topic={"t": 0})
    with pytest.raises(ValidationError):
        LocalLogConfig.model_validate({"fsync": "always"})


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    log = make(tmp_path, partitions=3, segment_bytes=2000, index_interval_bytes=100)
    sent = [Message(f"v{i}".encode() * 10, key=f"k{i % 5}".encode()) for i in range(200)]
    for i in range(0, 200, 7):
        log.append_sync("t", sent[i : i + 7])
    log.append_sync("other", [Message(b"o", key=None, headers=(("h", b"1"),))])
    before = {p: log.read_sync("t", p, 0, 1000) for p in range(3)}
    log.close_sync()

    with make(tmp_path, partitions=3, segment_bytes=2000, index_interval_bytes=100) as log:
        assert log.topics() == ["other", "t"]
        assert {p: log.read_sync("t", p, 0, 1000) for p in range(3)} == before
        assert sum(len(records) for records in before.values()) == 200
        [other] = [r for p in range(3) for r in log.read_sync("other", p, 0)]
        assert other.headers == (("h", b"1"),)
        end = log.offsets_sync("t", 0)[1]
        [result] = log.append_sync("t", [Message(b"next", partition=0)])
        assert result.offset == end


def test_topic_keeps_its_partition_count_on_disk(tmp_path: Path) -> None:
    with make(tmp_path, partitions=3) as log:
        log.append_sync("t", [Message(b"x", partition=2)])
    with make(tmp_path, partitions=5) as log:
        assert log.partitions("t") == 3
        assert log.partitions("new") == 5


def test_committed_offsets_survive_reopen(tmp_path: Path) -> None:
    with make(tmp_path) as log:
        log.commit_sync("g", {TopicPartition("t", 0): 3, TopicPartition("u", 1): 9})
        log.commit_sync("g/with odd:name", {TopicPartition("t", 0): 4})
    assert not list((tmp_path / "__consumer_offsets").glob("*.tmp"))
    with make(tmp_path) as log:
        assert log.committed_sync("g", TopicPartition("t", 0)) == 3
        assert log.committed_sync("g", TopicPartition("u", 1)) == 9
        assert log.committed_sync("g/with odd:name", TopicPartition("t", 0)) == 4
        assert log.committed_sync("g", TopicPartition("t", 1)) is None
    doc = json.loads((tmp_path / "__consumer_offsets" / "g.json").read_text())
    assert doc["offsets"] == {"t": {"0": 3}, "u": {"1": 9}}


def test_a_directory_is_opened_by_one_log_at_a_time(tmp_path: Path) -> None:
    with make(tmp_path), pytest.raises(LogError):
        make(tmp_path).open()
    with make(tmp_path) as log:  # the first one released the directory on close
        assert log.topics() == []


@pytest.mark.parametrize("mode", ["batch", "interval", "never"])
def test_every_fsync_mode_persists_on_close(tmp_path: Path, mode: str) -> None:
    with make(tmp_path, fsync=mode, fsync_interval_ms=0 if mode == "interval" else 1000) as log:
        for i in range(20):
            log.append_sync("t", [Message(b"%d" % i)])
        log.flush()
    with make(tmp_path, fsync=mode) as log:
        assert values(log) == [b"%d" % i for i in range(20)]


# --- crash recovery --------------------------------------------------------------


def _write_records(path: Path, count: int, size: int = 20) -> list[bytes]:
    sent = [bytes([65 + i]) * size for i in range(count)]
    with make(path) as log:
        for value in sent:
            log.append_sync("t", [Message(value)])
    return sent


def test_torn_last_record_is_cut_wherever_it_was_torn(tmp_path: Path) -> None:
    sent = _write_records(tmp_path, 5)
    [segment] = segment_files(tmp_path)
    original = segment.read_bytes()
    last_start = len(original) - frame_size(None, sent[-1])
    for cut in range(last_start, len(original)):
        segment.write_bytes(original[:cut])
        with make(tmp_path) as log:
            assert values(log) == sent[:4], cut
            assert log.offsets_sync("t", 0) == (0, 4)
        assert segment.stat().st_size == last_start
    with make(tmp_path) as log:
        assert log.append_sync("t", [Message(b"again")])[0].offset == 4
        assert values(log) == [*sent[:4], b"again"]


@pytest.mark.parametrize(
    "garbage",
    [b"\x00" * 100, os.urandom(1000), b"\xff\xff\xff\x7f" + b"\x01" * 40, b"\x05\x00\x00\x00"],
    ids=["zeros", "random", "huge-length", "short-length"],
)
def test_garbage_after_the_last_record_is_dropped(tmp_path: Path, garbage: bytes) -> None:
    sent = _write_records(tmp_path, 3)
    [segment] = segment_files(tmp_path)
    with segment.open("ab") as f:
        f.write(garbage)
    with make(tmp_path) as log:
        assert values(log) == sent
        assert log.append_sync("t", [Message(b"more")])[0].offset == 3
    with make(tmp_path) as log:
        assert values(log) == [*sent, b"more"]


def test_duplicated_last_frame_is_dropped(tmp_path: Path) -> None:
    sent = _write_records(tmp_path, 3)
    [segment] = segment_files(tmp_path)
    raw = segment.read_bytes()
    segment.write_bytes(raw + raw[-frame_size(None, sent[-1]) :])  # valid CRC, wrong offset
    with make(tmp_path) as log:
        assert log.offsets_sync("t", 0) == (0, 3)


def test_corrupt_crc_in_the_last_record_is_truncated(tmp_path: Path) -> None:
    sent = _write_records(tmp_path, 4)
    [segment] = segment_files(tmp_path)
    raw = bytearray(segment.read_bytes())
    raw[-3] ^= 0x40
    segment.write_bytes(bytes(raw))
    with make(tmp_path) as log:
        assert values(log) == sent[:3]
        assert log.append_sync("t", [Message(b"new")])[0].offset == 3


def test_corruption_inside_an_older_segment_raises_on_read(tmp_path: Path) -> None:
    with make(tmp_path, segment_bytes=200) as log:
        for i in range(20):
            log.append_sync("t", [Message(bytes([i]) * 50)])
    first, *rest = segment_files(tmp_path)
    assert rest
    raw = bytearray(first.read_bytes())
    raw[HEADER_SIZE + 10] ^= 0x01
    first.write_bytes(bytes(raw))
    with make(tmp_path, segment_bytes=200) as log:
        with pytest.raises(CorruptRecordError):
            log.read_sync("t", 0, 0)
        assert len(log.read_sync("t", 0, int(rest[0].stem))) == 20 - int(rest[0].stem)


def test_damaged_index_is_repaired(tmp_path: Path) -> None:
    with make(tmp_path, index_interval_bytes=64) as log:
        log.append_sync("t", [Message(bytes([i]) * 40) for i in range(50)])
    [index] = sorted((tmp_path / "t" / "0").glob("*.index"))
    raw = index.read_bytes()
    assert len(raw) >= 24 * 10
    index.write_bytes(raw[: 24 * 5] + b"\x07" * 30)
    with make(tmp_path, index_interval_bytes=64) as log:
        for offset in range(50):
            assert log.read_sync("t", 0, offset, 1)[0].value == bytes([offset]) * 40
    assert index.stat().st_size == len(raw)


# --- segments, index, retention --------------------------------------------------


def test_segments_roll_and_reads_span_them(tmp_path: Path) -> None:
    sent = [bytes([i]) * 90 for i in range(100)]
    with make(tmp_path, segment_bytes=1000, index_interval_bytes=128) as log:
        for i in range(0, 100, 3):
            log.append_sync("t", [Message(v) for v in sent[i : i + 3]])
        files = segment_files(tmp_path)
        assert len(files) > 5
        assert all(f.stat().st_size <= 1000 for f in files)
        assert values(log) == sent
        for offset in (0, 9, 10, 11, 50, 99):
            assert [r.offset for r in log.read_sync("t", 0, offset, 25)] == list(
                range(offset, min(offset + 25, 100))
            )
    with make(tmp_path, segment_bytes=1000, index_interval_bytes=128) as log:
        assert values(log, offset=37) == sent[37:]
        # 125-byte frames, 3 per append: two appends fit a 1000-byte segment
        assert [int(f.stem) for f in files] == list(range(0, 100, 6))


def test_a_batch_larger_than_a_segment_is_written_whole(tmp_path: Path) -> None:
    with make(tmp_path, segment_bytes=100) as log:
        log.append_sync("t", [Message(b"a" * 10)])
        log.append_sync("t", [Message(b"b" * 60) for _ in range(5)])
        assert [int(f.stem) for f in segment_files(tmp_path)] == [0, 1]
        assert len(log.read_sync("t", 0, 0)) == 6


def test_retention_by_bytes(tmp_path: Path) -> None:
    with make(tmp_path, segment_bytes=1000, retention_bytes=3000) as log:
        for i in range(100):
            log.append_sync("t", [Message(bytes([i]) * 100)])
        first, end = log.offsets_sync("t", 0)
        assert 0 < first < end == 100
        on_disk = sum(f.stat().st_size for f in segment_files(tmp_path))
        assert 3000 <= on_disk <= 3000 + 1000 + 135
        records = log.read_sync("t", 0, 0)
        assert records[0].offset == first
        assert [r.value for r in records] == [bytes([i]) * 100 for i in range(first, 100)]
    with make(tmp_path, segment_bytes=1000, retention_bytes=3000) as log:
        assert log.offsets_sync("t", 0) == (first, 100)


def test_retention_by_age_of_the_newest_record(tmp_path: Path) -> None:
    now = [1_000_000_000]
    with make(tmp_path, clock=now, segment_bytes=200, retention_ms=1000) as log:
        for _ in range(10):
            log.append_sync("t", [Message(b"x" * 100)])
        assert log.enforce_retention() == 0
        now[0] += 900_000
        log.append_sync("t", [Message(b"y" * 100)])  # rolls: retention runs, nothing old
        assert log.offsets_sync("t", 0) == (0, 11)
        now[0] += 200_000  # the first ten are now 1.1 s old, the last 0.2 s
        assert log.enforce_retention() == 10
        assert log.offsets_sync("t", 0) == (10, 11)
        assert [r.value for r in log.read_sync("t", 0, 0)] == [b"y" * 100]
        now[0] += 10_000_000
        assert log.enforce_retention() == 0  # the active segment is never deleted
    with make(tmp_path, clock=now, segment_bytes=200, retention_ms=1000) as log:
        assert log.offsets_sync("t", 0) == (10, 11)
        log.append_sync("t", [Message(b"z" * 100, timestamp_us=now[0])])
        assert log.offsets_sync("t", 0) == (11, 12)  # the roll expired the loaded segment


def test_reader_threads_see_only_whole_acknowledged_records(tmp_path: Path) -> None:
    log = make(tmp_path, segment_bytes=4000, fsync="never", retention_bytes=20000)
    log.open()

    def writer() -> None:
        for i in range(150):
            log.append_sync("t", [Message(b"%06d" % (i * 4 + k) * 20) for k in range(4)])

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while thread.is_alive() or reads == 0:
        first = log.offsets_sync("t", 0)[0]
        records = log.read_sync("t", 0, first, 500)
        offsets = [r.offset for r in records]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)) if offsets else [])
        assert all(r.value == b"%06d" % r.offset * 20 for r in records)
        reads += 1
        time.sleep(0.0001)  # let the writer have the GIL
    thread.join()
    assert log.offsets_sync("t", 0)[1] == 600
    log.close_sync()


async def test_a_reader_at_the_end_is_answered_without_a_read_thread(tmp_path: Path) -> None:
    # the pollers of an idle engine read at the end many times a second: those reads
    # must not cost a hop to the log's read threads; reads with records still take it
    log = make(tmp_path, partitions=2)
    hops: list[tuple[Any, ...]] = []
    run = log._reads.run

    async def counted(fn: Any, *args: Any) -> Any:
        hops.append(args)
        return await run(fn, *args)

    log._reads.run = counted  # type: ignore[method-assign,assignment]
    await log.append("t", [Message(b"a", partition=0), Message(b"b", partition=0)])
    assert await log.read("t", 0, 2) == []  # at the end
    assert await log.read("t", 0, 7) == []  # past it
    assert await log.read("t", 1, 0) == []  # an empty partition
    assert await log.read("u", 0, 0) == []  # a topic not created yet
    assert await log.read("t", 0, 0, 0) == []  # nothing asked for
    assert hops == []
    assert [r.value for r in await log.read("t", 0, 1)] == [b"b"]
    assert hops == [("t", 0, 1, 1000)]
    with pytest.raises(LogError, match="no partition 5"):
        await log.read("t", 5, 0)
    await log.close()
    with pytest.raises(LogError):
        await log.read("t", 0, 0)  # closed: the thread's answer, as before


# --- property: recovery after an arbitrary cut ----------------------------------

RECORDS = st.tuples(st.none() | st.binary(max_size=8), st.binary(max_size=300))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(RECORDS, min_size=1, max_size=6), min_size=1, max_size=10),
    data=st.data(),
)
def test_recovery_keeps_exactly_the_records_before_a_cut(
    batches: list[list[tuple[bytes | None, bytes]]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        options: dict[str, Any] = {
            "fsync": "never",
            "segment_bytes": 1500,
            "index_interval_bytes": 200,
        }
        sent: list[tuple[bytes | None, bytes]] = []
        with make(path, **options) as log:
            for batch in batches:
                log.append_sync("t", [Message(v, key=k) for k, v in batch])
                sent.extend(batch)
        last = segment_files(path)[-1]
        base, raw = int(last.stem), last.read_bytes()
        cut = data.draw(st.integers(0, len(raw)), label="cut")
        garbage = data.draw(st.binary(max_size=64), label="garbage")
        damaged = raw[:cut] + garbage
        last.write_bytes(damaged)
        # garbage may happen to repeat the bytes it replaces
        differ = (i for i, (a, b) in enumerate(zip(raw, damaged, strict=False)) if a != b)
        intact = next(differ, min(len(raw), len(damaged)))
        survivors, end = base, 0
        for key, value in sent[base:]:
            end += frame_size(key, value)
            if end > intact:
                break
            survivors += 1
        with make(path, **options) as log:
            assert log.offsets_sync("t", 0) == (0, survivors)
            records = log.read_sync("t", 0, 0, 10_000)
            assert [(r.offset, r.key, r.value) for r in records] == [
                (i, k, v) for i, (k, v) in enumerate(sent[:survivors])
            ]
            assert log.append_sync("t", [Message(b"after")])[0].offset == survivors
        with make(path, **options) as log:
            assert values(log, offset=survivors) == [b"after"]


# --- a real crash ----------------------------------------------------------------

CRASHING_WRITER = """
import sys
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig

config = LocalLogConfig(partitions=2, fsync="batch", segment_bytes=32 * 1024)
log = LocalEventLog(sys.argv[1], config)
seq = 0
while True:
    batch = [Message(b"%d:" % (seq + k) + bytes(100 + (seq + k) % 700)) for k in range(5)]
    results = log.append_sync("t", batch)
    print("\\n".join(f"{r.partition} {r.offset} {seq + k}" for k, r in enumerate(results)))
    sys.stdout.flush()
    seq += 5
"""


def _parse(line: bytes) -> tuple[int, int, int]:
    partition, offset, seq = map(int, line.split())
    return partition, offset, seq


def _expected_value(seq: int) -> bytes:
    return b"%d:" % seq + bytes(100 + seq % 700)


@pytest.mark.integration
def test_sigkill_loses_no_acknowledged_append(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path / "log")],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    acked: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + 20
    try:
        while len(acked) < 1000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(_parse(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
        proc.stdout.close()
    for line in rest.splitlines(keepends=True):
        if line.endswith(b"\n"):  # the writer may have died in the middle of a line
            acked.append(_parse(line))
    assert len(acked) >= 1000, "the writer did not get going"
    with make(tmp_path / "log", partitions=2) as log:
        for partition, offset, seq in acked:
            [record] = log.read_sync("t", partition, offset, 1)
            assert record.value == _expected_value(seq)
        for partition in (0, 1):
            records = log.read_sync("t", partition, 0, 1_000_000)
            assert [r.offset for r in records] == list(range(len(records)))


# --- compression -------------------------------------------------------------------

COMPRESSIBLE = b"temperature_0 21.5 pressure_1 3.25 " * 60  # 2,100 bytes


def test_large_values_are_stored_compressed_and_read_back_as_appended(tmp_path: Path) -> None:
    small, large = b"s" * 1023, COMPRESSIBLE
    incompressible = os.urandom(4096)
    log = make(tmp_path / "log")
    log.open()
    log.append_sync("t", [Message(v, key=b"k") for v in (small, large, incompressible)])
    assert values(log) == [small, large, incompressible]
    stored = segment_files(tmp_path / "log")[0].read_bytes()
    # the small and the incompressible value are plain, the large one is not there
    assert small in stored and incompressible in stored and large not in stored
    sizes = frame_size(b"k", small) + frame_size(b"k", incompressible)
    assert sizes + HEADER_SIZE < len(stored) < sizes + frame_size(b"k", large) // 2
    log.close_sync()


def test_compression_none_stores_values_plain(tmp_path: Path) -> None:
    log = make(tmp_path / "log", compression="none")
    log.open()
    log.append_sync("t", [Message(COMPRESSIBLE)])
    assert segment_files(tmp_path / "log")[0].stat().st_size == frame_size(None, COMPRESSIBLE)
    assert values(log) == [COMPRESSIBLE]
    log.close_sync()


def test_plain_and_compressed_records_read_in_one_log(tmp_path: Path) -> None:
    # a log written before compression (plain frames), appended to with it on
    log = make(tmp_path / "log", compression="none")
    log.open()
    log.append_sync("t", [Message(COMPRESSIBLE + b"1")])
    log.close_sync()
    log = make(tmp_path / "log")
    log.open()
    log.append_sync("t", [Message(COMPRESSIBLE + b"2")])
    log.close_sync()
    log = make(tmp_path / "log", compression="none")
    log.open()
    assert values(log) == [COMPRESSIBLE + b"1", COMPRESSIBLE + b"2"]
    assert [r.offset for r in log.read_sync("t", 0, 1, 10)] == [1]
    log.close_sync()


def test_a_compressed_value_that_does_not_decompress_is_a_corrupt_record(
    tmp_path: Path,
) -> None:
    import zlib

    from millrace.pipeline.log.local import records

    log = make(tmp_path / "log")
    log.open()
    log.append_sync("t", [Message(COMPRESSIBLE), Message(b"after")])
    log.close_sync()
    path = segment_files(tmp_path / "log")[0]
    data = bytearray(path.read_bytes())
    length = records.LENGTH.unpack_from(data, 0)[0]
    assert data[8] == records.MAGIC_ZSTD
    data[HEADER_SIZE + 8] ^= 0xFF  # inside the zstandard frame, CRC made to match
    data[4:8] = zlib.crc32(bytes(data[8 : 4 + length])).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    log = make(tmp_path / "log")
    log.open()
    with pytest.raises(CorruptRecordError, match="does not decompress"):
        log.read_sync("t", 0, 0, 10)
    assert values(log, offset=1) == [b"after"]
    log.close_sync()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=3000),
            st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=40), st.integers(1, 200)),
        ),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(["zstd", "none"]),
)
def test_values_round_trip_whatever_their_size(
    tmp_path: Path, batch: list[bytes], compression: str
) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path))
    log = make(path, compression=compression)
    log.open()
    log.append_sync("t", [Message(v) for v in batch])
    log.close_sync()
    log = make(path)
    log.open()
    assert values(log) == batch
    log.close_sync()
