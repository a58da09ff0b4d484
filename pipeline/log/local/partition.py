"""One partition of the local log: a run of segments, the last one active."""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path

from millrace.pipeline.errors import LogClosedError, LogError
from millrace.pipeline.log.base import Message, Record
from millrace.pipeline.log.local import records
from millrace.pipeline.log.local.config import LocalLogConfig
from millrace.pipeline.log.local.segment import Segment, fsync_dir, segment_name

log = logging.getLogger(__name__)


class Partition:
    """Appends go through ``_append_lock`` (held across write and fsync).  Readers take
    no lock across I/O: they snapshot the immutable ``_view`` (segments and their base
    offsets) and never read past a segment's acknowledged ``size``.  Segments dropped by
    retention stay open until the last in-flight reader leaves."""

    def __init__(self, topic: str, number: int, directory: Path, config: LocalLogConfig) -> None:
        self.topic = topic
        self.number = number
        self.directory = directory
        self._config = config
        self._view: tuple[tuple[Segment, ...], tuple[int, ...]] = ((), ())
        self.next_offset = 0
        self._append_lock = threading.Lock()
        self._meta_lock = threading.Lock()  # guards _view swaps, _readers, _retired
        self._readers = 0
        self._retired: list[Segment] = []
        self._last_sync = time.monotonic()
        self._closed = False
        #: (topic, partition) -> the offset below which segments may go (the archiver's
        #: position when an archive is configured); None: retention alone decides
        self.retention_hold: Callable[[str, int], int] | None = None

    # --- lifecycle ---------------------------------------------------------------

    def recover(self) -> None:
        """Open the segments on disk and repair the tail of the last one."""
        bases = sorted(
            int(path.stem)
            for path in self.directory.glob("*.log")
            if path.stem.isdigit() and path.name == segment_name(int(path.stem), ".log")
        )
        for path in self.directory.glob("*.index"):
            if path.stem.isdigit() and int(path.stem) not in bases:
                path.unlink()  # left behind by a crash during retention
        segments: list[Segment] = []
        try:
            for base in bases:  # only the active segment's index is needed now
                segments.append(Segment.load(self.directory, base, index=base == bases[-1]))
            if segments:
                self.next_offset = segments[-1].recover(self._config.index_interval_bytes)
        except BaseException:
            for segment in segments:
                segment.close()
            raise
        self._set_segments(tuple(segments))

    def close(self) -> None:
        with self._append_lock:
            if self._closed:
                return
            segments = self._view[0]
            try:
                for segment in segments:
                    segment.sync(index=True)
            finally:
                with self._meta_lock:
                    self._closed = True
                    self._view = ((), ())
                    self._retired.extend(segments)
                    self._close_retired()

    def _set_segments(self, segments: tuple[Segment, ...]) -> None:
        self._view = (segments, tuple(s.base for s in segments))

    def _close_retired(self) -> None:
        if not self._readers:
            for segment in self._retired:
                segment.close()
            self._retired.clear()

    # --- append ------------------------------------------------------------------

    def append(self, messages: Sequence[Message], now_us: int) -> int:
        """Append ``messages`` with one write; return the offset of the first."""
        config = self._config
        with self._append_lock:
            if self._closed:
                raise LogClosedError("the log is closed")
            first = self.next_offset
            parts: list[bytes] = []
            starts: list[int] = []
            timestamps: list[int] = []
            position = 0
            compress = config.compression == "zstd"
            for i, msg in enumerate(messages):
                ts = now_us if msg.timestamp_us is None else msg.timestamp_us
                starts.append(position)
                timestamps.append(ts)
                position += records.encode(
                    parts, first + i, ts, msg.key, msg.value, msg.headers, compress
                )
            buf = b"".join(parts)
            segment, rolled = self._active(len(buf))
            segment.append(
                buf, first, starts, timestamps, config.index_interval_bytes, self._sync_now()
            )
            self.next_offset = first + len(messages)
            if rolled:
                try:
                    self._retain(now_us)
                except (OSError, LogError) as exc:  # the append itself succeeded
                    log.error("retention of %s/%d failed: %s", self.topic, self.number, exc)
            return first

    def _sync_now(self) -> bool:
        mode = self._config.fsync
        if mode == "batch":
            return True
        if mode == "interval":
            now = time.monotonic()
            if (now - self._last_sync) * 1000 >= self._config.fsync_interval_ms:
                self._last_sync = now
                return True
        return False

    def _active(self, size: int) -> tuple[Segment, bool]:
        segments = self._view[0]
        if segments:
            active = segments[-1]
            if active.size == 0 or active.size + size <= self._config.segment_bytes:
                return active, False
            if self._config.fsync != "never":
                active.sync(index=True)
        segment = Segment.create(self.directory, self.next_offset)
        if self._config.fsync != "never":
            fsync_dir(self.directory)
        with self._meta_lock:
            self._set_segments((*segments, segment))
        return segment, True

    def flush(self) -> None:
        """fsync what was appended but not yet synced."""
        with self._append_lock:
            if self._closed:
                return
            for segment in self._view[0]:
                segment.sync()
            self._last_sync = time.monotonic()

    # --- retention ---------------------------------------------------------------

    def enforce_retention(self, now_us: int) -> int:
        with self._append_lock:
            return 0 if self._closed else self._retain(now_us)

    def _retain(self, now_us: int) -> int:
        """Delete the oldest non-active segments while they are older than
        ``retention_ms`` or the partition stays at or above ``retention_bytes``
        without them (Kafka's rule).  Returns the number of segments deleted."""
        max_bytes, max_ms = self._config.retention_bytes, self._config.retention_ms
        if max_bytes is None and max_ms is None:
            return 0
        segments = self._view[0]
        total = sum(s.size for s in segments)
        drop = 0
        hold = self._hold()
        for i, segment in enumerate(segments[:-1]):
            if hold is not None and segments[i + 1].base > hold:
                break  # a record of it is not archived yet
            by_bytes = max_bytes is not None and total - segment.size >= max_bytes
            by_age = max_ms is not None and now_us - segment.newest_timestamp() > max_ms * 1000
            if not (by_bytes or by_age):
                break
            total -= segment.size
            drop += 1
        if drop:
            with self._meta_lock:
                self._set_segments(segments[drop:])
                self._retired.extend(segments[:drop])
            for segment in segments[:drop]:
                segment.delete()
            with self._meta_lock:
                self._close_retired()
        return drop

    def _hold(self) -> int | None:
        if self.retention_hold is None:
            return None
        try:
            return self.retention_hold(self.topic, self.number)
        except Exception:  # when in doubt, keep the segments
            log.exception("retention hold of %s/%d failed", self.topic, self.number)
            return 0

    # --- read --------------------------------------------------------------------

    def offsets(self) -> tuple[int, int]:
        segments = self._view[0]  # before next_offset, so first <= end
        end = self.next_offset
        return (segments[0].base if segments else end), end

    def read(self, offset: int, max_records: int) -> list[Record]:
        out: list[Record] = []
        if max_records <= 0 or offset >= self.next_offset:
            return out  # next_offset is published after the bytes: nothing to see
        with self._meta_lock:
            if self._closed:
                raise LogClosedError("the log is closed")
            self._readers += 1
            segments, bases = self._view
        try:
            if not segments:
                return out
            offset = max(offset, bases[0])
            for i in range(bisect_right(bases, offset) - 1, len(segments)):
                segment = segments[i]
                segment.read(max(offset, segment.base), max_records, self.topic, self.number, out)
                if len(out) >= max_records:
                    break
        except OSError as exc:
            if self._closed:
                raise LogClosedError("the log was closed during a read") from exc
            raise LogError(f"reading {self.topic}/{self.number}: {exc}") from exc
        finally:
            with self._meta_lock:
                self._readers -= 1
                self._close_retired()
        return out
