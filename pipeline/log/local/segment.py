"""A segment: one ``<base>.log`` file of framed records and its sparse ``<base>.index``.

The index holds one entry every ``index_interval_bytes`` of log: (offset, file position,
newest timestamp of the records before that position).  Entries are written only after
the log bytes they point to (and, in ``batch`` mode, after those bytes are fsynced), so
an index entry never points past acknowledged data.  A reader bisects the index and
scans at most one interval plus one record to reach any offset.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path

from millrace.pipeline.errors import CorruptRecordError
from millrace.pipeline.log.base import Record
from millrace.pipeline.log.local import records

log = logging.getLogger(__name__)

INDEX_ENTRY = struct.Struct("<qqq")
NO_TIMESTAMP = -(2**63)
FIRST_CHUNK = 32 * 1024  # a point read costs one small pread ...
MAX_CHUNK = 256 * 1024  # ... a long scan grows its reads up to this
_OPEN_FLAGS = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)


class FrameError(CorruptRecordError):
    """A torn or corrupt frame at ``position`` of a segment file."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


def segment_name(base: int, suffix: str) -> str:
    return f"{base:020d}{suffix}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _datasync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


class Segment:
    """One segment of a partition.  ``size`` is the number of acknowledged bytes:
    readers never look past it, so a record is visible only once its append returned."""

    def __init__(self, directory: Path, base: int, fd: int, index_fd: int, size: int) -> None:
        self.base = base
        self.log_path = directory / segment_name(base, ".log")
        self.index_path = directory / segment_name(base, ".index")
        self.fd = fd
        self.index_fd = index_fd
        self.size = size
        # arrays, not lists: ~24 bytes an entry, and a 64 MiB segment has ~16k entries.
        # Appended positions-first so a lock-free reader never sees an offset without
        # its position.
        self.index_offsets = array("q")
        self.index_positions = array("q")
        self.index_newest = array("q")
        self.index_persisted = 0  # entries written to the index file
        self.index_synced = 0  # entries known to be on disk
        self.last_index_pos = 0
        self.newest: int | None = None  # None: not known yet (segment loaded from disk)
        self.dirty = False
        self._index_loaded = True

    # --- lifecycle ---------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base: int) -> Segment:
        flags = _OPEN_FLAGS | os.O_CREAT | os.O_EXCL
        fd = os.open(directory / segment_name(base, ".log"), flags, 0o644)
        try:
            index_fd = os.open(
                directory / segment_name(base, ".index"), _OPEN_FLAGS | os.O_CREAT | os.O_TRUNC
            )
        except BaseException:
            os.close(fd)
            raise
        segment = cls(directory, base, fd, index_fd, 0)
        segment.newest = NO_TIMESTAMP
        return segment

    @classmethod
    def load(cls, directory: Path, base: int, index: bool = True) -> Segment:
        """Open an existing segment; with ``index=False`` its index is loaded on first
        use (:meth:`ensure_index`)."""
        fd = os.open(directory / segment_name(base, ".log"), _OPEN_FLAGS)
        try:
            index_fd = os.open(directory / segment_name(base, ".index"), _OPEN_FLAGS | os.O_CREAT)
        except BaseException:
            os.close(fd)
            raise
        segment = cls(directory, base, fd, index_fd, os.fstat(fd).st_size)
        segment._index_loaded = False
        if index:
            segment._load_index()
        return segment

    def close(self) -> None:
        for fd in (self.fd, self.index_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fd = self.index_fd = -1

    def delete(self) -> None:
        """Unlink both files; open descriptors stay readable until :meth:`close`."""
        for path in (self.log_path, self.index_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # --- index -------------------------------------------------------------------

    def ensure_index(self) -> None:
        """Load the index of a segment opened with ``index=False`` (done lazily, on the
        first read, so opening a large log stays cheap)."""
        if not self._index_loaded:
            self._load_index()

    def _load_index(self) -> None:
        """Keep the longest consistent prefix of the index file: offsets and positions
        strictly increasing, positions inside the log."""
        raw = os.pread(self.index_fd, os.fstat(self.index_fd).st_size, 0)
        flat = array("q")
        flat.frombytes(raw[: len(raw) // INDEX_ENTRY.size * INDEX_ENTRY.size])
        if sys.byteorder == "big":
            flat.byteswap()
        offsets, positions, newest = flat[0::3], flat[1::3], flat[2::3]
        n = len(offsets)
        consistent = n == 0 or (
            offsets[0] > self.base
            and positions[0] > 0
            and positions[-1] < self.size
            and all(map(operator.lt, offsets, offsets[1:]))
            and all(map(operator.lt, positions, positions[1:]))
        )
        if not consistent:
            n = _consistent_prefix(self.base, self.size, offsets, positions)
            del offsets[n:], positions[n:], newest[n:]
        # positions first: a concurrent lazy reader must never find an offset without it
        self.index_positions, self.index_newest = positions, newest
        self.index_offsets = offsets
        self.last_index_pos = positions[-1] if n else 0
        self.index_persisted = self.index_synced = n
        self._index_loaded = True
        if n * INDEX_ENTRY.size != len(raw):
            os.ftruncate(self.index_fd, n * INDEX_ENTRY.size)

    def _add_entry(self, offset: int, position: int, newest: int) -> None:
        self.index_positions.append(position)
        self.index_newest.append(newest)
        self.index_offsets.append(offset)
        self.last_index_pos = position

    def _drop_entries(self, keep: int) -> None:
        del self.index_offsets[keep:]
        del self.index_positions[keep:]
        del self.index_newest[keep:]
        self.last_index_pos = self.index_positions[-1] if keep else 0
        if self.index_persisted > keep:
            self.index_persisted = keep
            self.index_synced = min(self.index_synced, keep)
            os.ftruncate(self.index_fd, keep * INDEX_ENTRY.size)

    def _persist_index(self) -> None:
        n = len(self.index_offsets)
        if self.index_persisted == n:
            return
        start = self.index_persisted
        buf = b"".join(
            INDEX_ENTRY.pack(self.index_offsets[i], self.index_positions[i], self.index_newest[i])
            for i in range(start, n)
        )
        try:
            os.pwrite(self.index_fd, buf, start * INDEX_ENTRY.size)
        except OSError as exc:  # the index is advisory: the next append retries
            log.warning("cannot write index %s: %s", self.index_path, exc)
            return
        self.index_persisted = n

    def floor(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last indexed record at or before ``offset``."""
        self.ensure_index()
        i = bisect_right(self.index_offsets, offset) - 1
        if i < 0:
            return self.base, 0
        return self.index_offsets[i], self.index_positions[i]

    # --- write -------------------------------------------------------------------

    def append(
        self,
        buf: bytes,
        first_offset: int,
        starts: list[int],
        timestamps: list[int],
        interval: int,
        sync: bool,
    ) -> None:
        """Write one batch of frames with a single write, fsync if asked, then index
        and publish it.  On failure the file is cut back to the acknowledged size."""
        try:
            written = 0
            while written < len(buf):
                written += os.pwrite(
                    self.fd, buf[written:] if written else buf, self.size + written
                )
            if sync:
                _datasync(self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise
        self.dirty = not sync
        newest = NO_TIMESTAMP if self.newest is None else self.newest
        last = self.last_index_pos
        for i, rel in enumerate(starts):
            position = self.size + rel
            if position - last >= interval:
                self._add_entry(first_offset + i, position, newest)
                last = position
            if timestamps[i] > newest:
                newest = timestamps[i]
        self.newest = newest
        self._persist_index()
        self.size += len(buf)

    def sync(self, index: bool = False) -> None:
        if self.dirty:
            _datasync(self.fd)
            self.dirty = False
        if index:
            self._persist_index()
            if self.index_synced != self.index_persisted:
                _datasync(self.index_fd)
                self.index_synced = self.index_persisted

    # --- read --------------------------------------------------------------------

    def frames(self, position: int, end: int, expected: int) -> Iterator[tuple[bytes, int, int]]:
        """(chunk, position in chunk, frame size) of each frame from ``position`` to
        ``end``, checking CRC, framing and that offsets count up from ``expected``.
        Raises :class:`FrameError` at the first frame that is not whole and valid."""
        need = records.HEADER_SIZE
        chunk = FIRST_CHUNK
        while position < end:
            want = min(max(chunk, need), end - position)
            chunk = min(chunk * 2, MAX_CHUNK)
            buf = os.pread(self.fd, want, position)
            if len(buf) < want:
                raise FrameError(
                    f"{self.log_path} ends at {position + len(buf)}", position + len(buf)
                )
            view = memoryview(buf)
            p = 0
            while True:
                size = records.check_frame(buf, view, p, expected)
                if size > 0:
                    yield buf, p, size
                    p += size
                    expected += 1
                    continue
                if size == records.INCOMPLETE and position + p < end:
                    need = records.frame_size(buf, p) or records.HEADER_SIZE
                    if position + p + need <= end:
                        break  # read on from the start of this frame
                if position + p == end:
                    return
                raise FrameError(
                    f"{'torn' if size == records.INCOMPLETE else 'corrupt'} record "
                    f"(offset {expected}) at byte {position + p} of {self.log_path}",
                    position + p,
                )
            position += p

    def read(
        self, offset: int, max_records: int, topic: str, partition: int, out: list[Record]
    ) -> None:
        """Append to ``out`` the records from ``offset`` on, until it holds
        ``max_records`` or this segment's acknowledged end."""
        end = self.size
        expected, position = self.floor(offset)
        for buf, p, _size in self.frames(position, end, expected):
            if expected >= offset:
                try:
                    out.append(records.decode(buf, p, topic, partition))
                except ValueError as exc:
                    raise CorruptRecordError(
                        f"undecodable record {expected} in {self.log_path}: {exc}"
                    ) from exc
                if len(out) >= max_records:
                    return
            expected += 1

    def newest_timestamp(self) -> int:
        """Newest record timestamp (NO_TIMESTAMP when empty); computed once for a
        segment loaded from disk by scanning after its last index entry."""
        if self.newest is None:
            self.ensure_index()
            newest, expected, position = NO_TIMESTAMP, self.base, 0
            if self.index_offsets:
                expected, position = self.index_offsets[-1], self.index_positions[-1]
                newest = self.index_newest[-1]
            for buf, p, _size in self.frames(position, self.size, expected):
                newest = max(newest, records.timestamp_at(buf, p))
            self.newest = newest
        return self.newest

    # --- recovery ----------------------------------------------------------------

    def recover(self, interval: int) -> int:
        """Cut the log at its first torn or corrupt record after the last index entry
        that points at a valid record, rebuild the index past it, and return the
        next offset."""
        keep = len(self.index_offsets)
        while keep and not self._valid_at(
            self.index_positions[keep - 1], self.index_offsets[keep - 1]
        ):
            keep -= 1
        self._drop_entries(keep)
        expected, position, newest = self.base, 0, NO_TIMESTAMP
        if keep:
            expected, position = self.index_offsets[-1], self.index_positions[-1]
            newest = self.index_newest[-1]
        file_size = os.fstat(self.fd).st_size
        valid_end = position
        last = self.last_index_pos
        try:
            for buf, p, size in self.frames(position, file_size, expected):
                if valid_end - last >= interval:
                    self._add_entry(expected, valid_end, newest)
                    last = valid_end
                newest = max(newest, records.timestamp_at(buf, p))
                valid_end += size
                expected += 1
        except FrameError as exc:
            log.warning(
                "recovering %s: %s; truncating %d bytes", self.log_path, exc, file_size - valid_end
            )
        if valid_end < file_size:
            os.ftruncate(self.fd, valid_end)
            os.fsync(self.fd)
        self.size = valid_end
        self.newest = newest
        self._persist_index()
        os.fsync(self.index_fd)
        self.index_synced = self.index_persisted
        return expected

    def _valid_at(self, position: int, offset: int) -> bool:
        head = os.pread(self.fd, records.HEADER_SIZE, position)
        size = records.frame_size(head, 0)
        if size is None:
            return False
        buf = os.pread(self.fd, size, position)
        return records.check_frame(buf, memoryview(buf), 0, offset) > 0


def _consistent_prefix(base: int, size: int, offsets: array[int], positions: array[int]) -> int:
    prev_offset, prev_position = base, 0
    for i, (offset, position) in enumerate(zip(offsets, positions, strict=True)):
        if offset <= prev_offset or position <= prev_position or position >= size:
            return i
        prev_offset, prev_position = offset, position
    return len(offsets)
