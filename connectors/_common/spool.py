"""Store-and-forward: a bounded, oldest-first buffer of events for when the log is down.

:class:`Spool` keeps entries (one ``publish`` call: a topic and its ``(key, event)``
pairs, Avro-encoded) in segment files under a directory, or in memory when none is
given. An append past ``max_bytes`` drops the oldest whole segments (in memory: the
oldest entries) until it fits and counts the events and bytes they held, so a long
outage keeps the most recent data and says how much was lost; an entry larger than
``max_bytes`` is dropped alone; within the bound nothing is lost. A restart resumes from
the first unpublished entry (the consumed position of the oldest segment is kept in a
side file), so at most the one entry in flight during a crash is published twice; a tail
torn by a crash during an append is cut off.

The counts of dropped events and bytes only grow and survive a restart: they are kept in
``dropped.json``, written before a dropped segment is removed and naming the newest
segment dropped, so a crash in between finishes the drop at recovery rather than
counting events that are then replayed. The entry being published (:meth:`Spool.begin`
to :meth:`Spool.settle`) is counted as dropped only if an overflow removed it and its
publish then failed: one that was delivered is not counted (a crash before the publish
settled counts it, as it may not have been delivered).

:class:`~millrace.connectors._common.buffered.BufferedPublisher` publishes through a spool.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("millrace.connectors.spool")

_HEAD = struct.Struct("<II")  # body length, crc32(body)
_DROPPED = "dropped.json"


@dataclass
class _Entry:
    topic: str
    events: list[tuple[str, bytes]]
    size: int


def _encode_entry(topic: str, events: Sequence[tuple[str, bytes]]) -> bytes:
    t = topic.encode()
    parts = [struct.pack("<HI", len(t), len(events)), t]
    for key, value in events:
        k = key.encode()
        parts += [struct.pack("<HI", len(k), len(value)), k, value]
    body = b"".join(parts)
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _decode_entry(body: bytes) -> _Entry:
    tlen, count = struct.unpack_from("<HI", body, 0)
    pos = 6
    topic = body[pos : pos + tlen].decode()
    pos += tlen
    events = []
    for _ in range(count):
        klen, vlen = struct.unpack_from("<HI", body, pos)
        pos += 6
        key = body[pos : pos + klen].decode()
        pos += klen
        events.append((key, body[pos : pos + vlen]))
        pos += vlen
    return _Entry(topic, events, len(body) + _HEAD.size)


class Spool:
    """Bounded FIFO of encoded publish calls, on disk (``directory``) or in memory."""

    def __init__(
        self,
        directory: Path | None = None,
        max_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max_bytes)
        #: events and bytes the bound dropped, since the spool (its directory) was made
        self.dropped_events = 0
        self.dropped_bytes = 0
        self._mem: deque[_Entry] = deque()
        self._bytes = 0
        self._count = 0
        # disk: segments oldest first; the head segment's entries loaded lazily
        self._segments: list[Path] = []
        self._head: deque[_Entry] | None = None
        self._head_pos = 0  # entries of the head segment already published
        self._dropped_through = 0  # number of the newest segment an overflow dropped
        # the entry between begin() and settle(), and whether an overflow dropped it
        self._flight: _Entry | None = None
        self._flight_dropped = False
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self._recover()

    # -- state -------------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def events(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    # -- disk layout ---------------------------------------------------------------
    def _scan_segment(self, path: Path) -> tuple[list[_Entry], int, int]:
        """The complete entries of a segment, where they end, and the file's size."""
        data = path.read_bytes()
        out, pos = [], 0
        while pos + _HEAD.size <= len(data):
            length, crc = _HEAD.unpack_from(data, pos)
            body = data[pos + _HEAD.size : pos + _HEAD.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break
            out.append(_decode_entry(body))
            pos += _HEAD.size + length
        return out, pos, len(data)

    def _read_segment(self, path: Path) -> list[_Entry]:
        return self._scan_segment(path)[0]

    def _consumed(self, path: Path) -> int:
        try:
            return int(path.with_suffix(".pos").read_text() or 0)
        except (OSError, ValueError):
            return 0

    def _write_consumed(self, path: Path, n: int) -> None:
        # replace, never truncate-then-write: a crash in between would read as 0 and
        # replay the whole segment
        pos = path.with_suffix(".pos")
        tmp = pos.with_name(pos.name + ".tmp")
        tmp.write_text(str(n))
        os.replace(tmp, pos)

    def _read_dropped(self) -> None:
        assert self.directory is not None
        path = self.directory / _DROPPED
        try:
            d = json.loads(path.read_text())
            events, size = int(d["events"]), int(d["bytes"])
            through = int(d["through"])
            # an entry dropped while in flight, its publish unsettled at the crash: it
            # may not have been delivered
            events += int(d.get("unsettled_events", 0))
            size += int(d.get("unsettled_bytes", 0))
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("spool %s unreadable (%s); dropped counts start at 0", path, exc)
            return
        self.dropped_events, self.dropped_bytes, self._dropped_through = events, size, through

    def _write_dropped(self) -> None:
        if self.directory is None:
            return
        unsettled = self._flight if self._flight_dropped else None
        state = {
            "events": self.dropped_events,
            "bytes": self.dropped_bytes,
            "through": self._dropped_through,
            "unsettled_events": len(unsettled.events) if unsettled else 0,
            "unsettled_bytes": unsettled.size if unsettled else 0,
        }
        path = self.directory / _DROPPED
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(state))
            f.flush()
            os.fsync(f.fileno())  # on disk before the segment it counts is removed
        os.replace(tmp, path)

    def _recover(self) -> None:
        assert self.directory is not None
        self._read_dropped()
        self._segments = []
        for seg in sorted(self.directory.glob("*.seg")):
            if int(seg.stem) <= self._dropped_through:
                # a crash while dropping it: its events are counted already
                seg.unlink(missing_ok=True)
            else:
                self._segments.append(seg)
        # a crash while removing a published segment can leave its position file; a
        # later segment of the same name would then skip unpublished entries
        tmp = [*self.directory.glob("*.pos.tmp"), *self.directory.glob(_DROPPED + ".tmp")]
        for pos in [*self.directory.glob("*.pos"), *tmp]:
            if pos.suffix == ".tmp" or not pos.with_suffix(".seg").exists():
                pos.unlink(missing_ok=True)
        for i, seg in enumerate(self._segments):
            entries, end, size = self._scan_segment(seg)
            if end < size:
                # a torn (crash while appending) or corrupt tail: cut it off, or the
                # entries appended after it would be unreadable on the next recovery
                log.warning("spool %s: torn or corrupt tail at %d dropped", seg.name, end)
                with open(seg, "r+b") as f:
                    f.truncate(end)
                    f.flush()
                    os.fsync(f.fileno())
            skip = self._consumed(seg) if i == 0 else 0
            live = entries[skip:]
            self._count += sum(len(e.events) for e in live)
            self._bytes += sum(e.size for e in live)
            if i == 0:
                self._head, self._head_pos = deque(live), skip

    def _new_segment_path(self) -> Path:
        assert self.directory is not None
        # above the dropped ones too: a recovery removes segments numbered up to those
        last = max(int(self._segments[-1].stem) if self._segments else 0, self._dropped_through)
        return self.directory / f"{last + 1:012d}.seg"

    # -- operations ------------------------------------------------------------------
    def append(self, topic: str, events: Sequence[tuple[str, bytes]]) -> None:
        blob = _encode_entry(topic, events)
        entry = _Entry(topic, list(events), len(blob))
        if entry.size > self.max_bytes:  # can never fit: dropping the others won't help
            self.dropped_events += len(events)
            self.dropped_bytes += entry.size
            self._write_dropped()
            return
        while self._bytes + entry.size > self.max_bytes and self._bytes:
            self._drop_oldest()
        self._count += len(events)
        self._bytes += entry.size
        if self.directory is None:
            self._mem.append(entry)
            return
        if not self._segments or self._segments[-1].stat().st_size + len(blob) > self.segment_bytes:
            self._segments.append(self._new_segment_path())
        with open(self._segments[-1], "ab") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        if len(self._segments) == 1 and self._head is not None:
            self._head.append(entry)  # else loaded from the file when needed

    def _load_head(self) -> None:
        if self._head is None and self._segments:
            self._head = deque(
                self._read_segment(self._segments[0])[self._consumed(self._segments[0]) :]
            )
            self._head_pos = self._consumed(self._segments[0])

    def peek(self) -> _Entry | None:
        if self.directory is None:
            return self._mem[0] if self._mem else None
        while self._segments:
            self._load_head()
            assert self._head is not None
            if self._head:
                return self._head[0]
            if len(self._segments) == 1:
                return None
            self._remove_head_segment()
        return None

    def pop(self) -> None:
        """The entry returned by peek() was published."""
        if self.peek() is None:  # on disk this also loads the head segment
            raise IndexError("pop from an empty spool")
        if self.directory is None:
            e = self._mem.popleft()
        else:
            assert self._head
            e = self._head.popleft()
            self._head_pos += 1
            if not self._head:  # a fully published segment goes
                self._remove_head_segment()
            else:
                self._write_consumed(self._segments[0], self._head_pos)
        if e is self._flight:
            self._flight = None
        self._count -= len(e.events)
        self._bytes -= e.size

    def begin(self) -> _Entry | None:
        """peek(), the entry then being published until :meth:`settle` says how it went.

        An overflow meanwhile may drop it: it is then counted as dropped only if its
        publish fails."""
        if self._flight is not None:  # never settled: as if its publish failed
            self.settle(self._flight, delivered=False)
        self._flight, self._flight_dropped = self.peek(), False
        return self._flight

    def settle(self, entry: _Entry, delivered: bool) -> None:
        """The publish of ``entry`` (from :meth:`begin`) ended: popped if delivered; if
        an overflow dropped it meanwhile, counted as dropped unless delivered."""
        if entry is not self._flight:
            raise ValueError("settle() of an entry not from the last begin()")
        dropped, self._flight, self._flight_dropped = self._flight_dropped, None, False
        if dropped:
            if not delivered:
                self.dropped_events += len(entry.events)
                self.dropped_bytes += entry.size
            self._write_dropped()
        elif delivered:
            self.pop()

    def _count_dropped(self, e: _Entry) -> None:
        self._count -= len(e.events)
        self._bytes -= e.size
        if e is self._flight:  # being published: settle() counts it if that fails
            self._flight_dropped = True
        else:
            self.dropped_events += len(e.events)
            self.dropped_bytes += e.size

    def _remove_head_segment(self) -> None:
        seg = self._segments.pop(0)
        seg.unlink(missing_ok=True)
        seg.with_suffix(".pos").unlink(missing_ok=True)
        self._head, self._head_pos = None, 0

    def _drop_oldest(self) -> None:
        if self.directory is None:
            self._count_dropped(self._mem.popleft())
            return
        self._load_head()
        assert self._head is not None
        for e in self._head:
            self._count_dropped(e)
        # counted before the segment goes: a crash in between removes it at recovery
        self._dropped_through = int(self._segments[0].stem)
        self._write_dropped()
        self._remove_head_segment()
