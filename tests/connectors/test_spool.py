"""The store-and-forward spool against a model of its documented policy (on disk with
segment rollover, overflow, entries in flight and restarts; in memory), torn segment
tails, dropped counts that survive restarts, and BufferedPublisher replaying in order
after an outage."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from millrace.connectors._common.backoff import Backoff
from millrace.connectors._common.buffered import BufferedPublisher
from millrace.connectors._common.spool import Spool, _Entry
from millrace.pipeline.connector import Event, EventPublisher

Events = list[tuple[str, bytes]]


def entry_size(topic: str, events: Sequence[tuple[str, bytes]]) -> int:
    """Bytes of one entry: frame head (length, crc32), topic header and topic, then per
    event a header (key length, value length), the key and the value."""
    return 8 + 6 + len(topic.encode()) + sum(6 + len(k.encode()) + len(v) for k, v in events)


# -- the model ---------------------------------------------------------------------------


@dataclass
class MEntry:
    topic: str
    events: Events
    size: int


@dataclass
class MSegment:
    file_size: int = 0  # bytes in the segment file, published entries included
    live: deque[MEntry] = field(default_factory=deque)


class SpoolModel:
    """The documented policy.

    On disk: an entry goes to the last segment unless that would grow its file past
    ``segment_bytes`` (capped at ``max_bytes``), else to a new segment; an append that
    does not fit in ``max_bytes`` drops whole oldest segments (what is left of them)
    until it fits; an entry larger than ``max_bytes`` is itself dropped, and nothing
    else. A segment goes when its last entry is published; one left without entries by
    a torn tail goes when it is the oldest and not the only one. In memory
    (``per_segment=False``) there is one unbounded segment and drops are per entry.

    Dropped events and bytes are counted across restarts. The entry in flight (begin()
    to settle()) is counted as dropped when an overflow dropped it and its publish
    failed, or a restart came before it settled; a delivered one is popped.
    """

    def __init__(self, max_bytes: int, segment_bytes: int, per_segment: bool) -> None:
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max_bytes)
        self.per_segment = per_segment
        self.segments: list[MSegment] = []
        self.dropped = 0  # events, since the model was made (across restarts)
        self.dropped_bytes = 0
        self.flight: MEntry | None = None
        self.flight_dropped = False

    @property
    def entries(self) -> list[MEntry]:
        return [e for s in self.segments for e in s.live]

    @property
    def size_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def events(self) -> int:
        return sum(len(e.events) for e in self.entries)

    def append(self, topic: str, events: Events) -> bool:
        """Whether the entry was stored."""
        e = MEntry(topic, list(events), entry_size(topic, events))
        if e.size > self.max_bytes:
            self._count(e)
            return False
        while self.segments and self.size_bytes + e.size > self.max_bytes:
            if self.per_segment:
                for x in self.segments.pop(0).live:
                    self._drop(x)
            else:
                self._drop(self.pop())
        if not self.segments or (
            self.per_segment and self.segments[-1].file_size + e.size > self.segment_bytes
        ):
            self.segments.append(MSegment())
        self.segments[-1].file_size += e.size
        self.segments[-1].live.append(e)
        return True

    def _count(self, e: MEntry) -> None:
        self.dropped += len(e.events)
        self.dropped_bytes += e.size

    def _drop(self, e: MEntry) -> None:
        if e is self.flight:
            self.flight_dropped = True
        else:
            self._count(e)

    def begin(self) -> MEntry | None:
        self.flight, self.flight_dropped = self.peek(), False
        return self.flight

    def settle(self, delivered: bool) -> MEntry:
        e, dropped = self.flight, self.flight_dropped
        assert e is not None
        self.flight, self.flight_dropped = None, False
        if dropped and not delivered:
            self._count(e)
        elif not dropped and delivered:
            assert self.pop() is e
        return e

    def restart(self) -> None:
        if self.flight is not None and self.flight_dropped:  # it may not have been delivered
            self._count(self.flight)
        self.flight, self.flight_dropped = None, False

    def peek(self) -> MEntry | None:
        while len(self.segments) > 1 and not self.segments[0].live:
            self.segments.pop(0)
        return self.segments[0].live[0] if self.segments and self.segments[0].live else None

    def pop(self) -> MEntry:
        self.peek()
        e = self.segments[0].live.popleft()
        if not self.segments[0].live:
            self.segments.pop(0)
        return e

    def tear_last(self) -> MEntry:
        """The newest entry was being written when the process died."""
        seg = self.segments[-1]
        e = seg.live.pop()
        seg.file_size -= e.size
        return e


# -- the state machine -------------------------------------------------------------------

TOPICS = st.sampled_from(["telemetry", "status", "t", "grün"])
KEYS = st.text(alphabet="abcé-1", max_size=4)
EVENTS = st.lists(st.tuples(KEYS, st.binary(max_size=60)), max_size=4)


class EntryLike(Protocol):
    topic: str
    events: Events
    size: int


def as_tuple(e: EntryLike | None) -> tuple[str, Events, int] | None:
    return None if e is None else (e.topic, [(k, bytes(v)) for k, v in e.events], e.size)


def _ram() -> str | None:
    """A tmpfs for the on-disk machine when there is a roomy one: the spool fsyncs on
    every append and removal, which on a disk was most of this file's time (98 s of a
    loaded run, 29 s on tmpfs), while what the machine checks is the spool's files and
    bookkeeping, which are the same there. The examples below use ``tmp_path``."""
    try:
        st_ = os.statvfs("/dev/shm")
    except OSError:
        return None
    roomy = st_.f_bavail * st_.f_frsize >= 256 << 20
    return "/dev/shm" if roomy and os.access("/dev/shm", os.W_OK) else None


RAM = _ram()


class SpoolMachine(RuleBasedStateMachine):
    on_disk = True

    def __init__(self) -> None:
        super().__init__()
        self.directory = (
            Path(tempfile.mkdtemp(prefix="millrace-spool-", dir=RAM)) if self.on_disk else None
        )
        self.max_bytes = 0
        self.segment_bytes = 0
        self.spool = Spool(None)
        self.model = SpoolModel(0, 0, self.on_disk)
        self.appended_events = 0  # stored or dropped; not the ones torn by a crash
        self.published_events = 0
        self.flight: _Entry | None = None  # from spool.begin(), until settled

    def teardown(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    @initialize(max_bytes=st.integers(30, 500), segment_bytes=st.integers(20, 250))
    def open(self, max_bytes: int, segment_bytes: int) -> None:
        self.max_bytes, self.segment_bytes = max_bytes, segment_bytes
        self.spool = Spool(self.directory, max_bytes, segment_bytes)
        self.model = SpoolModel(max_bytes, segment_bytes, per_segment=self.on_disk)

    def _append(self, topic: str, events: Events) -> bool:
        fits = self.model.size_bytes + entry_size(topic, events) <= self.max_bytes
        dropped = self.spool.dropped_events
        self.spool.append(topic, events)
        stored = self.model.append(topic, events)
        self.appended_events += len(events)
        if fits:  # within the bound nothing is lost
            assert self.spool.dropped_events == dropped
        return stored

    @rule(topic=TOPICS, events=EVENTS)
    def append(self, topic: str, events: Events) -> None:
        self._append(topic, events)

    @rule(batch=st.lists(st.tuples(TOPICS, EVENTS), min_size=2, max_size=6))
    def append_burst(self, batch: list[tuple[str, Events]]) -> None:
        """Several appends with no peek in between (the head segment stays unloaded)."""
        for topic, events in batch:
            self._append(topic, events)

    @precondition(lambda self: self.model.entries and self.flight is None)
    @rule()
    def publish_oldest(self) -> None:
        got = self.spool.peek()
        want = self.model.pop()
        assert as_tuple(got) == as_tuple(want)
        self.spool.pop()
        self.published_events += len(want.events)

    @precondition(lambda self: self.model.entries and self.flight is None)
    @rule()
    def begin_publish(self) -> None:
        """The drain takes the oldest entry; appends (and overflows) go on meanwhile."""
        self.flight = self.spool.begin()
        assert as_tuple(self.flight) == as_tuple(self.model.begin())

    @precondition(lambda self: self.flight is not None)
    @rule(delivered=st.booleans())
    def settle_publish(self, delivered: bool) -> None:
        assert self.flight is not None
        self.spool.settle(self.flight, delivered)
        e = self.model.settle(delivered)
        if delivered:
            self.published_events += len(e.events)
        self.flight = None

    def _reopen(self) -> None:
        del self.spool
        self.spool = Spool(self.directory, self.max_bytes, self.segment_bytes)
        self.model.restart()
        self.flight = None

    @precondition(lambda self: self.directory is not None)
    @rule()
    def restart(self) -> None:
        """A new Spool on the same directory resumes at the first unpublished entry."""
        self._reopen()

    @precondition(lambda self: self.directory is not None)
    @rule(topic=TOPICS, events=EVENTS, kept=st.floats(0, 1, exclude_max=True))
    def crash_while_appending(self, topic: str, events: Events, kept: float) -> None:
        """The process dies with only a prefix of the entry written: a restart finds the
        entries before it and none of its bytes, and appends continue."""
        assert self.directory is not None
        if not self._append(topic, events):
            return
        torn = self.model.tear_last()
        self.appended_events -= len(torn.events)
        seg = sorted(self.directory.glob("*.seg"))[-1]
        os.truncate(seg, seg.stat().st_size - torn.size + int(kept * torn.size))
        self._reopen()

    def _check_head(self) -> None:
        assert as_tuple(self.spool.peek()) == as_tuple(self.model.peek())

    @invariant()
    def peek_is_the_oldest(self) -> None:
        self._check_head()

    @invariant()
    def counters_match(self) -> None:
        assert self.spool.events == len(self.spool) == self.model.events
        assert self.spool.size_bytes == self.model.size_bytes <= self.max_bytes
        # (the dropped counts survive restarts)
        assert self.spool.dropped_events == self.model.dropped
        assert self.spool.dropped_bytes == self.model.dropped_bytes

    @invariant()
    def every_event_is_accounted_for(self) -> None:
        # published, still spooled, counted as dropped, or dropped while in flight and
        # not settled yet (counted once it fails)
        m = self.model
        unsettled = len(m.flight.events) if m.flight is not None and m.flight_dropped else 0
        spooled, dropped = self.spool.events, self.spool.dropped_events
        assert self.appended_events == self.published_events + spooled + dropped + unsettled

    @invariant()
    def segment_files_match(self) -> None:
        if self.directory is None:
            return
        self._check_head()  # (peek removes a leading segment a torn tail left empty)
        files = sorted(self.directory.glob("*.seg"))
        assert [f.stat().st_size for f in files] == [s.file_size for s in self.model.segments]
        for pos in self.directory.glob("*.pos"):
            assert pos.with_suffix(".seg").exists(), f"stale {pos.name}"


class MemorySpoolMachine(SpoolMachine):
    on_disk = False


_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSpoolOnDisk = SpoolMachine.TestCase
TestSpoolOnDisk.settings = _SETTINGS
TestSpoolInMemory = MemorySpoolMachine.TestCase
TestSpoolInMemory.settings = _SETTINGS


# -- examples ----------------------------------------------------------------------------


def copy_of(directory: Path) -> Spool:
    """A Spool recovered from a copy of ``directory`` (a restart that changes nothing)."""
    to = Path(tempfile.mkdtemp(prefix="millrace-spool-copy-", dir=directory.parent))
    shutil.copytree(directory, to, dirs_exist_ok=True)
    return Spool(to, max_bytes=10_000, segment_bytes=10_000)


def drain(spool: Spool) -> list[tuple[str, Events]]:
    out = []
    while (e := spool.peek()) is not None:
        out.append((e.topic, [(k, bytes(v)) for k, v in e.events]))
        spool.pop()
    return out


def test_overflow_drops_whole_oldest_segments(tmp_path: Path) -> None:
    one = [("k", b"x" * 16)]  # 8 + 6 + 1 + 6 + 1 + 16 = 38 bytes with topic "t"
    assert entry_size("t", one) == 38
    spool = Spool(tmp_path, max_bytes=5 * 38, segment_bytes=2 * 38)
    for _ in range(5):
        spool.append("t", one)  # segments: [2, 2, 1]
    assert spool.events == 5 and spool.dropped_events == 0
    spool.append("t", one)  # does not fit: the first segment (2 entries) goes
    assert (spool.events, spool.dropped_events) == (4, 2)
    assert [f.stat().st_size for f in sorted(tmp_path.glob("*.seg"))] == [2 * 38, 2 * 38]


@pytest.mark.parametrize("on_disk", [True, False])
def test_dropped_count_follows_from_the_bound_and_survives_a_restart(
    tmp_path: Path, on_disk: bool
) -> None:
    one = [("k", b"x" * 16)]  # 38 bytes with topic "t" (see above)
    cap, per_segment, written = 10, 2, 25  # entries the bound holds, per segment; appended
    spool = Spool(tmp_path if on_disk else None, max_bytes=cap * 38, segment_bytes=2 * 38)
    for _ in range(written):
        spool.append("t", one)
    # on disk every append past the bound drops a whole segment of 2 entries (making
    # room for 2); in memory one entry
    over = written - cap
    want = per_segment * -(-over // per_segment) if on_disk else over
    assert (spool.dropped_events, spool.dropped_bytes) == (want, want * 38)
    assert spool.events == written - want <= cap
    if not on_disk:
        return
    spool = Spool(tmp_path, max_bytes=cap * 38, segment_bytes=2 * 38)
    assert (spool.dropped_events, spool.dropped_bytes) == (want, want * 38)
    assert spool.events == written - want
    assert len(drain(spool)) == written - want
    spool = Spool(tmp_path, max_bytes=cap * 38, segment_bytes=2 * 38)
    assert spool.dropped_events == want  # publishing does not change it
    for _ in range(cap + 1):  # then goes on from there
        spool.append("t", one)
    assert spool.dropped_events == want + per_segment
    assert Spool(tmp_path, max_bytes=cap * 38, segment_bytes=2 * 38).dropped_events == (
        want + per_segment
    )


def test_crash_while_dropping_a_segment(tmp_path: Path) -> None:
    """The count is written before the dropped segment is removed: a crash in between
    removes it at recovery, so its events are neither replayed nor counted twice."""
    entries = [("t", [(str(i), b"x" * 16)]) for i in range(7)]  # 38 bytes each
    spool = Spool(tmp_path, max_bytes=5 * 38, segment_bytes=2 * 38)
    for topic, events in entries[:5]:
        spool.append(topic, events)  # segments [0, 1], [2, 3], [4]
    spool.pop()  # entry 0 published: segment 1 keeps entry 1 (and a position file)
    spool.append(*entries[5])
    first = sorted(tmp_path.glob("*.seg"))[0]
    kept = {f: f.read_bytes() for f in (first, first.with_suffix(".pos"))}
    spool.append(*entries[6])  # drops segment 1: entry 1
    assert spool.dropped_events == 1 and not first.exists()
    for f, data in kept.items():  # as if the process died before removing them
        f.write_bytes(data)
    spool = Spool(tmp_path, max_bytes=5 * 38, segment_bytes=2 * 38)
    assert not first.exists() and not first.with_suffix(".pos").exists()
    assert spool.dropped_events == 1
    assert drain(spool) == entries[2:]


@pytest.mark.parametrize("on_disk", [True, False])
@pytest.mark.parametrize("outcome", ["delivered", "failed", "crash"])
def test_entry_dropped_while_in_flight_is_counted_unless_delivered(
    tmp_path: Path, on_disk: bool, outcome: str
) -> None:
    one = [("k", b"x" * 16)]  # 38 bytes
    spool = Spool(tmp_path if on_disk else None, max_bytes=4 * 38, segment_bytes=2 * 38)
    for _ in range(4):
        spool.append("t", one)
    entry = spool.begin()
    assert entry is not None
    spool.append("t", one)  # drops the oldest segment (2 entries) / entry, in flight
    others = 1 if on_disk else 0  # dropped with it, not in flight
    # spooled: the 4, less the one in flight and the others, plus the new one
    assert (spool.dropped_events, spool.events) == (others, 4 - 1 - others + 1)
    if outcome == "crash":
        if not on_disk:
            return
        spool = Spool(tmp_path, max_bytes=4 * 38, segment_bytes=2 * 38)
        assert spool.dropped_events == others + 1  # may not have been delivered
        return
    spool.settle(entry, delivered=outcome == "delivered")
    want = others + (outcome == "failed")
    assert (spool.dropped_events, spool.dropped_bytes) == (want, want * 38)
    assert spool.events == 4 - 1 - others + 1  # the spooled ones stay
    if on_disk:
        spool = Spool(tmp_path, max_bytes=4 * 38, segment_bytes=2 * 38)
        assert spool.dropped_events == want and spool.events == 4 - 1 - others + 1


def test_oversized_entry_is_dropped_alone(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200, segment_bytes=100)
    spool.append("t", [("a", b"1")])
    spool.append("t", [("b", b"2"), ("c", b"3" * 300)])
    assert (spool.events, spool.dropped_events) == (1, 2)
    assert drain(spool) == [("t", [("a", b"1")])]


@pytest.mark.parametrize(("count", "published"), [(1, 0), (3, 0), (3, 1)])
@pytest.mark.parametrize("cut", [0, 1, 4, 8, 9, 20, -1])
def test_torn_tail_is_cut_and_appends_continue(
    tmp_path: Path, cut: int, count: int, published: int
) -> None:
    d = tmp_path / "spool"
    entries = [("telemetry", [(f"k{i}", bytes([i]) * (10 + i)), ("z", b"")]) for i in range(count)]
    spool = Spool(d, max_bytes=10_000, segment_bytes=10_000)
    for topic, events in entries:
        spool.append(topic, events)
    for _ in range(published):
        spool.peek()
        spool.pop()
    (seg,) = d.glob("*.seg")
    last = entry_size(*entries[-1])
    full = seg.stat().st_size
    os.truncate(seg, full - last + cut % last)  # died while writing the last entry

    spool = Spool(d, max_bytes=10_000, segment_bytes=10_000)
    survivors = entries[published:-1]
    assert drain(copy_of(d)) == survivors
    assert spool.events == sum(len(e) for _, e in survivors)
    assert spool.size_bytes == sum(entry_size(t, e) for t, e in survivors)
    assert seg.stat().st_size == full - last  # the torn bytes are gone
    new = ("status", [("new", b"after the crash")])
    spool.append(*new)
    assert spool.events == sum(len(e) for _, e in survivors) + 1
    assert drain(copy_of(d)) == [*survivors, new]  # also after another restart
    assert drain(spool) == [*survivors, new]
    assert spool.events == spool.size_bytes == 0
    assert not list(d.glob("*.seg"))


def test_torn_tail_in_a_later_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000, segment_bytes=40)
    entries = [("t", [(str(i), bytes(20))]) for i in range(3)]  # 41 bytes: one per segment
    for topic, events in entries:
        spool.append(topic, events)
    segs = sorted(tmp_path.glob("*.seg"))
    assert len(segs) == 3
    os.truncate(segs[-1], 30)
    spool = Spool(tmp_path, max_bytes=10_000, segment_bytes=40)
    assert spool.events == 2
    spool.append("t", [("new", b"")])
    spool = Spool(tmp_path, max_bytes=10_000, segment_bytes=40)
    assert drain(spool) == [*entries[:2], ("t", [("new", b"")])]


def test_stale_position_file_is_ignored(tmp_path: Path) -> None:
    """A crash after removing a published segment but before removing its position
    file must not make a later segment of the same name skip entries."""
    spool = Spool(tmp_path, max_bytes=10_000, segment_bytes=10_000)
    spool.append("t", [("a", b"1")])
    (seg,) = tmp_path.glob("*.seg")
    spool.pop()
    assert not seg.exists()
    seg.with_suffix(".pos").write_text("1")  # left behind by the crash
    spool = Spool(tmp_path, max_bytes=10_000, segment_bytes=10_000)
    spool.append("t", [("b", b"2")])
    spool.append("t", [("c", b"3")])
    assert seg.exists()
    spool = Spool(tmp_path, max_bytes=10_000, segment_bytes=10_000)
    assert drain(spool) == [("t", [("b", b"2")]), ("t", [("c", b"3")])]


@pytest.mark.parametrize("on_disk", [True, False])
def test_pop_needs_no_prior_peek_and_fails_when_empty(tmp_path: Path, on_disk: bool) -> None:
    spool = Spool(tmp_path if on_disk else None, max_bytes=10_000, segment_bytes=10_000)
    spool.append("t", [("a", b"1")])
    spool.append("t", [("b", b"2")])
    if on_disk:
        spool = Spool(tmp_path, max_bytes=10_000, segment_bytes=10_000)
    spool.pop()
    assert drain(spool) == [("t", [("b", b"2")])]
    with pytest.raises(IndexError):
        spool.pop()


# -- BufferedPublisher -------------------------------------------------------------------


class Flaky(EventPublisher):
    """Fails (atomically: nothing delivered) while ``down`` or ``fail_next`` > 0."""

    def __init__(self) -> None:
        self.down = False
        self.fail_next = 0
        self.calls = 0
        self.failed = 0
        self.received: list[tuple[str, str, int]] = []
        self.gate: asyncio.Event | None = None  # when set: a publish waits for it

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.down or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            self.failed += 1
            raise ConnectionError("log unreachable")
        self.received += [(topic, k, int(e["received_us"])) for k, e in events]


def batch(n: int, size: int = 1) -> list[tuple[str, Event]]:
    return [
        (
            f"press-{n % 3}",
            {
                "identity": f"press-{n % 3}",
                "source": "test",
                "received_us": n * 100 + i,
                "samples": [{"ts_us": n, "values": {"temp": float(n)}, "quality": 0}],
            },
        )
        for i in range(size)
    ]


def fast_backoff() -> Backoff:
    return Backoff(0.001, 0.005)


@pytest.mark.parametrize("on_disk", [True, False])
async def test_buffered_publisher_replays_in_order_exactly_once(
    tmp_path: Path, on_disk: bool
) -> None:
    inner = Flaky()
    spool = Spool(tmp_path if on_disk else None, max_bytes=1 << 20, segment_bytes=2048)
    changes = 0

    def changed() -> None:
        nonlocal changes
        changes += 1

    pub = BufferedPublisher(inner, spool, backoff=fast_backoff(), on_change=changed)
    sent: list[tuple[str, str, int]] = []

    async def send(n: int) -> None:
        events = batch(n, size=1 + n % 3)
        sent.extend(("telemetry", k, int(e["received_us"])) for k, e in events)
        await pub.publish("telemetry", events)

    for n in range(10):  # healthy: straight through
        await send(n)
    assert inner.received == sent and not pub.buffering

    inner.down = True
    for n in range(10, 150):
        await send(n)
        if n % 7 == 0:
            await asyncio.sleep(0.002)  # let the drain retry (and fail) meanwhile
    assert pub.buffering and pub.failures > 1 and inner.failed > 1
    assert len(inner.received) == len(sent) - spool.events
    assert spool.dropped_events == 0

    inner.down = False  # recovers while more events arrive
    for n in range(150, 200):
        await send(n)
    assert await pub.flush(timeout_s=10)
    assert not pub.buffering and spool.events == spool.size_bytes == 0
    assert inner.received == sent  # all of them, in order, once
    assert changes > 0

    inner.fail_next = 2  # a short blip later on
    await send(200)
    await send(201)
    assert await pub.flush(timeout_s=10)
    assert inner.received == sent
    await pub.close()
    if on_disk:
        assert not list(tmp_path.glob("*.seg"))


@pytest.mark.parametrize("on_disk", [True, False])
async def test_overflow_while_an_entry_is_in_flight(tmp_path: Path, on_disk: bool) -> None:
    """The spool overflows and drops the entry being replayed: when that publish then
    succeeds the drain must not pop (and so lose) the next, unpublished, entry."""
    inner = Flaky()
    spool = Spool(tmp_path if on_disk else None, max_bytes=4000, segment_bytes=1000)
    pub = BufferedPublisher(inner, spool, backoff=fast_backoff())
    inner.fail_next = 1
    await pub.publish("telemetry", batch(0))  # fails: spooled, the drain starts
    inner.gate = asyncio.Event()
    while inner.calls < 2:  # the drain is now replaying entry 0, held at the gate
        await asyncio.sleep(0.001)
    n = 1
    while spool.dropped_events == 0:
        await pub.publish("telemetry", batch(n))
        n += 1
    left = spool.events  # one event per entry: the newest ``left`` batches
    # entries 1 .. n - left - 1 were dropped; entry 0, in flight, is not counted (yet)
    assert spool.dropped_events == n - left - 1
    inner.gate.set()
    inner.gate = None
    assert await pub.flush(timeout_s=10)
    got = [r // 100 for _, _, r in inner.received]
    assert got[0] == 0  # the entry in flight was delivered, and is not counted as dropped
    assert got[1:] == list(range(n - left, n))
    assert spool.dropped_events == n - len(got) == n - left - 1
    await pub.close()


@pytest.mark.parametrize("on_disk", [True, False])
async def test_entry_in_flight_dropped_then_failed_is_counted_once(
    tmp_path: Path, on_disk: bool
) -> None:
    inner = Flaky()
    spool = Spool(tmp_path if on_disk else None, max_bytes=4000, segment_bytes=1000)
    pub = BufferedPublisher(inner, spool, backoff=fast_backoff())
    inner.fail_next = 1
    await pub.publish("telemetry", batch(0))
    inner.gate = asyncio.Event()
    while inner.calls < 2:  # entry 0 in flight
        await asyncio.sleep(0.001)
    n = 1
    while spool.dropped_events == 0:
        await pub.publish("telemetry", batch(n))
        n += 1
    left = spool.events
    inner.fail_next = 1  # the publish of entry 0 fails after all: it is lost
    inner.gate.set()
    inner.gate = None
    assert await pub.flush(timeout_s=10)
    got = [r // 100 for _, _, r in inner.received]
    assert got == list(range(n - left, n))
    assert spool.dropped_events == n - len(got) == n - left
    await pub.close()
