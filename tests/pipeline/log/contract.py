"""The contract every EventLog adapter passes.

Subclass :class:`EventLogContract` as ``TestXxx`` and implement :meth:`make_log` to
return a fresh, empty log whose topics have at least two partitions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from millrace.pipeline.errors import LogClosedError, LogError
from millrace.pipeline.log.base import EventLog, Message, TopicPartition, partition_for


class EventLogContract:
    def make_log(self, tmp_path: Path) -> EventLog:
        raise NotImplementedError

    @pytest.fixture
    async def log(self, tmp_path: Path) -> AsyncIterator[EventLog]:
        log = self.make_log(tmp_path)
        yield log
        await log.close()

    async def test_offsets_are_dense_from_zero_per_partition(self, log: EventLog) -> None:
        results = await log.append("t", [Message(b"a", partition=0), Message(b"b", partition=0)])
        results += await log.append("t", [Message(b"c", partition=1), Message(b"d", partition=0)])
        assert [(r.topic, r.partition, r.offset) for r in results] == [
            ("t", 0, 0),
            ("t", 0, 1),
            ("t", 1, 0),
            ("t", 0, 2),
        ]
        assert await log.offsets("t", 0) == (0, 3)
        assert await log.offsets("t", 1) == (0, 1)

    async def test_read_returns_what_was_appended_in_order(self, log: EventLog) -> None:
        values = [f"v{i}".encode() for i in range(50)]
        for start in range(0, 50, 10):
            chunk = enumerate(values[start : start + 10], start)
            batch = [Message(v, key=b"k", partition=1, timestamp_us=1000 + i) for i, v in chunk]
            await log.append("t", batch)
        records = await log.read("t", 1, 0)
        assert [r.value for r in records] == values
        assert [r.offset for r in records] == list(range(50))
        assert [r.timestamp_us for r in records] == [1000 + i for i in range(50)]
        assert {(r.topic, r.partition, r.key) for r in records} == {("t", 1, b"k")}

    async def test_a_key_always_lands_on_the_same_partition(self, log: EventLog) -> None:
        n = log.partitions("t")
        assert n >= 2
        keys = [f"device-{i}".encode() for i in range(20)]
        results = await log.append("t", [Message(b"x", key=k) for k in keys])
        results += await log.append("t", [Message(b"y", key=k) for k in keys])
        for key, first, second in zip(keys, results[:20], results[20:], strict=True):
            assert first.partition == second.partition == partition_for(key, n)

    async def test_keyless_messages_spread_over_partitions(self, log: EventLog) -> None:
        n = log.partitions("t")
        results = await log.append("t", [Message(b"x") for _ in range(n * 3)])
        assert {r.partition for r in results} == set(range(n))

    async def test_explicit_partition_wins_over_the_key(self, log: EventLog) -> None:
        key = b"device-1"
        other = (partition_for(key, log.partitions("t")) + 1) % log.partitions("t")
        [result] = await log.append("t", [Message(b"x", key=key, partition=other)])
        assert result.partition == other

    async def test_read_from_the_middle(self, log: EventLog) -> None:
        await log.append("t", [Message(bytes([i]) * 100, partition=0) for i in range(30)])
        records = await log.read("t", 0, 17)
        assert [r.offset for r in records] == list(range(17, 30))
        assert records[0].value == bytes([17]) * 100

    async def test_read_at_or_past_the_end_is_empty(self, log: EventLog) -> None:
        assert await log.read("t", 0, 0) == []
        await log.append("t", [Message(b"x", partition=0)])
        assert await log.read("t", 0, 1) == []
        assert await log.read("t", 0, 100) == []

    async def test_max_records_limits_a_read(self, log: EventLog) -> None:
        await log.append("t", [Message(b"x", partition=0) for _ in range(10)])
        assert [r.offset for r in await log.read("t", 0, 2, max_records=3)] == [2, 3, 4]
        assert len(await log.read("t", 0, 0, max_records=100)) == 10

    async def test_commit_is_per_group_and_partition(self, log: EventLog) -> None:
        t0, t1 = TopicPartition("t", 0), TopicPartition("t", 1)
        await log.commit("g1", {t0: 5, t1: 7})
        await log.commit("g2", {t0: 1})
        await log.commit("g1", {t0: 6})
        assert await log.committed("g1", t0) == 6
        assert await log.committed("g1", t1) == 7
        assert await log.committed("g2", t0) == 1
        assert await log.committed("g2", t1) is None

    async def test_committed_is_none_before_any_commit(self, log: EventLog) -> None:
        assert await log.committed("nobody", TopicPartition("t", 0)) is None

    async def test_headers_null_and_empty_keys_round_trip(self, log: EventLog) -> None:
        headers = (("content-type", b"avro"), ("trace", b""), ("\u00e9t\u00e9", b"\x00\xff"))
        await log.append(
            "t",
            [
                Message(b"one", key=None, headers=headers, partition=0),
                Message(b"", key=b"", partition=0),
            ],
        )
        first, second = await log.read("t", 0, 0)
        assert (first.key, first.value, first.headers) == (None, b"one", headers)
        assert (second.key, second.value, second.headers) == (b"", b"", ())

    async def test_topics_are_independent(self, log: EventLog) -> None:
        await log.append("a", [Message(b"a0", partition=0), Message(b"a1", partition=0)])
        await log.append("b", [Message(b"b0", partition=0)])
        assert [r.value for r in await log.read("a", 0, 0)] == [b"a0", b"a1"]
        assert [(r.topic, r.value) for r in await log.read("b", 0, 0)] == [("b", b"b0")]
        assert await log.offsets("b", 0) == (0, 1)

    async def test_missing_timestamp_is_taken_from_the_clock(self, log: EventLog) -> None:
        await log.append("t", [Message(b"x", partition=0)])
        [record] = await log.read("t", 0, 0)
        assert record.timestamp_us > 1_500_000_000_000_000  # after 2017, in microseconds

    async def test_unknown_partition_is_an_error(self, log: EventLog) -> None:
        n = log.partitions("t")
        with pytest.raises(LogError):
            await log.append("t", [Message(b"x", partition=n)])
        with pytest.raises(LogError):
            await log.read("t", n, 0)

    async def test_use_after_close_raises(self, log: EventLog) -> None:
        await log.append("t", [Message(b"x", partition=0)])
        await log.close()
        with pytest.raises(LogClosedError):
            await log.append("t", [Message(b"x", partition=0)])
        with pytest.raises(LogClosedError):
            await log.read("t", 0, 0)
