"""The files connector: CSV files dropped in a directory become telemetry.

The directory is polled (``os.scandir`` every ``poll_ms``) rather than watched with
inotify (watchfiles): drop directories are often network shares (SMB/NFS) on which
changes made by another host raise no events, the ``settle_ms`` rule needs a timer
anyway (a file is complete only once it has *stopped* changing), and a restart must
scan the whole directory regardless. A scan is cheap (one stat per entry), so polling
costs little and behaves the same on every file system. The scan is :mod:`.scan`.

A file is read when its size and modification time have been stable for
``settle_ms`` and its name matches neither ``exclude`` nor ``temp_patterns``. Complete
files are read oldest name (or mtime) first, in chunks: the readings of a chunk are
handed to the publisher (which spools them to disk while the log is down) and then the
chunk's end offset is recorded; after the last chunk the file goes into the ledger and
only then is it deleted or moved (see :mod:`.ledger`). A crash therefore repeats at most
the chunk in flight, and a restart resumes a half-read file at its last chunk.

Readings keep their row times. Unlike a device session, files legitimately deliver
times that go back (a backfill, files with overlapping ranges, rows written newest
first), so the base class's dropping of non-advancing times is switched off unless
``only_newer`` asks for it (then it also persists across restarts).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from millrace.connectors._common.base import ProtocolConnector
from millrace.connectors._common.models import ConnectionBase, EndpointBase, MappingConfig
from millrace.pipeline.errors import ConnectorError

from .config import FilesConnection
from .csvparse import BadLine, CsvFile, FileFormatError, Row, check_timestamp_format
from .ledger import FileKey, Ledger, Record, digest
from .scan import DropScanner, Ready

log = logging.getLogger("millrace.connectors.files")


@dataclass
class _Stats:
    rows: int = 0
    readings: int = 0
    bad_lines: int = 0


class FilesConnector(ProtocolConnector):
    """Reads the CSV files of one drop directory (see the module doc)."""

    protocol = "files"
    #: rows read before their readings are flushed and the offset recorded
    chunk_rows = 2000

    def __init__(
        self,
        name: str,
        connection: ConnectionBase,
        endpoints: Sequence[EndpointBase] = (),
        mappings: Sequence[MappingConfig] = (),
        **kwargs: Any,
    ) -> None:
        if not isinstance(connection, FilesConnection):
            raise TypeError("FilesConnector needs a FilesConnection")
        super().__init__(name, connection, endpoints, mappings, **kwargs)
        self.cfg = connection
        # files may overlap in time or arrive late, which is not a re-sent value
        self.batcher.drop_repeated_times = connection.only_newer
        self.ledger: Ledger | None = None
        # flush() is a barrier (the base's _flush_lock): a file is recorded as read only
        # after every reading batched so far was published, including a batch the
        # flusher task took; a chunk is read and flushed under that lock
        self.scanner = DropScanner(connection, self.resource_id)
        self._after_failed: set[str] = set()
        for k in ("files_read", "files_failed", "rows", "bad_lines"):
            self.counters[k] = 0.0

    # -- session ------------------------------------------------------------------------
    async def connect(self) -> None:
        c = self.cfg
        directory = c.directory_path()
        if not directory.is_dir():
            raise ConnectorError(f"Directory not found: {directory}")
        if not os.access(directory, os.R_OK | os.X_OK):
            raise ConnectorError(f"Directory not readable: {directory}")
        if c.after != "mark" and not os.access(directory, os.W_OK):
            raise ConnectorError(
                f"Directory not writable (needed by after: {c.after}): {directory}"
            )
        o = c.csv
        try:
            ZoneInfo(o.timezone)
        except (KeyError, ValueError, OSError) as exc:  # ZoneInfoNotFoundError: a KeyError
            raise ConnectorError(f"Unknown timezone {o.timezone!r}") from exc
        try:
            codecs.lookup(o.encoding)
        except LookupError as exc:
            raise ConnectorError(f"Unknown encoding {o.encoding!r}") from exc
        if (why := check_timestamp_format(o.timestamp_format)) is not None:
            raise ConnectorError(why)
        if not self.endpoints and o.identity is None and o.identity_column is None:
            raise ConnectorError("csv.identity or csv.identity_column is needed without endpoints")
        state = c.state_path()
        ledger = Ledger(state)
        try:
            await asyncio.to_thread(ledger.load, lambda rel: (directory / rel).exists())
            if c.after == "move":
                c.done_path().mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConnectorError(f"State or done directory not usable: {exc}") from exc
        if c.only_newer:
            for key, ts in ledger.load_watermarks().items():
                self.batcher.last_ts[key] = max(ts, self.batcher.last_ts.get(key, ts))
        self.ledger = ledger
        self.scanner.watch.clear()

    async def serve(self) -> None:
        period = self.cfg.poll_ms / 1000
        while True:
            _honour_cancel()
            assert self.ledger is not None
            for item in await asyncio.to_thread(self.scanner.scan, self.ledger):
                await self._handle(item)
                _honour_cancel()
            await asyncio.sleep(period)

    async def disconnect(self) -> None:
        self.scanner.watch.clear()

    # -- readings -----------------------------------------------------------------------
    async def flush(self) -> None:
        await super().flush()
        _honour_cancel()

    async def _publish_status(self, resource: str, rtype: str, current: str, info: str) -> None:
        await super()._publish_status(resource, rtype, current, info)
        _honour_cancel()  # the heartbeat loop would otherwise outlive stop()

    # -- one file -------------------------------------------------------------------------
    async def _handle(self, item: Ready) -> None:
        assert self.ledger is not None
        if item.done:
            await self._after(item)
            return
        try:
            data = await asyncio.to_thread(self.scanner.read, item)
        except OSError as exc:
            if item.rel not in self._after_failed:
                self._after_failed.add(item.rel)
                log.warning("%s: %s not readable: %s", self.resource_id, item.rel, exc)
            return
        if data is None:
            return
        key = FileKey(item.rel, item.size, item.mtime_ns, digest(data))
        if self.ledger.is_done(key):
            await self._after(item)
            return
        await self._ingest(item, key, data)

    async def _ingest(self, item: Ready, key: FileKey, data: bytes) -> None:
        assert self.ledger is not None
        ledger = self.ledger
        try:
            f = CsvFile(data, self.cfg.csv, self.endpoints)
            lay = f.layout()
        except FileFormatError as exc:
            await self._fail(item, key, exc)
            return
        for ep, why in lay.missing:
            self.endpoint_state(ep, "error", f"{why}: {key.path}")
        for ep in lay.found:
            self.endpoint_state(ep, "running", "")
        start, start_line = ledger.progress(key) or (0, 0)
        if start:
            log.info("%s: resuming %s at line %d", self.resource_id, key.path, start_line)
        rows = f.rows(start, start_line)
        stats = _Stats()
        done = False
        while not done:
            async with self._flush_lock:
                try:
                    done, offset, line = await self._chunk(rows, key.path, stats)
                    await self._flush_locked()
                except BaseException:
                    self.discard_pending()
                    raise
                # what was published is recorded, even when a stop comes meanwhile
                if done:
                    await _durably(self._commit, key, stats)
                else:
                    await _durably(self._save_progress, key, offset, line)
            _honour_cancel()
        await self._after(item)

    async def _chunk(
        self, rows: Iterator[Row | BadLine], rel: str, stats: _Stats
    ) -> tuple[bool, int, int]:
        """Emit up to one chunk of rows; (end of file?, offset and line after the chunk)."""
        for n, item in enumerate(rows, 1):
            if isinstance(item, BadLine):
                stats.bad_lines += 1
                self.counters["bad_lines"] += 1
                await self.dead_letter(
                    item.raw, f"{rel} line {item.line}: {item.reason}", "DecodeError", key=rel
                )
            else:
                stats.rows += 1
                self.counters["rows"] += 1
                for r in item.readings:
                    if r.endpoint is not None:
                        self.emit(r.endpoint, r.value, item.ts_us)
                    else:
                        self.emit_reading(r.identity, r.signal, r.value, item.ts_us)
                stats.readings += len(item.readings)
            if n >= self.chunk_rows or self.batcher.full:
                return False, item.end, item.next_line
            if n % 256 == 0:
                await asyncio.sleep(0)  # let the loop breathe on a large file
        return True, 0, 0

    def _save_progress(self, key: FileKey, offset: int, line: int) -> None:
        assert self.ledger is not None
        if self.cfg.only_newer:
            self.ledger.save_watermarks(self.batcher.last_ts)
        self.ledger.save_progress(key, offset, line)

    def _commit(self, key: FileKey, stats: _Stats) -> None:
        assert self.ledger is not None
        if self.cfg.only_newer:
            self.ledger.save_watermarks(self.batcher.last_ts)
        self.ledger.record(
            Record(key, "done", self.now_us(), stats.rows, stats.readings, stats.bad_lines)
        )
        self.ledger.clear_progress()
        self.counters["files_read"] += 1

    async def _fail(self, item: Ready, key: FileKey, exc: FileFormatError) -> None:
        """A file the configuration cannot read: dead-lettered, left where it is, and not
        tried again until it changes or the connector restarts (the configuration may
        have been fixed)."""
        assert self.ledger is not None
        where = f" line {exc.line}" if exc.line else ""
        await self.dead_letter(
            exc.raw, f"{key.path}{where}: {exc.reason}", "FileFormatError", key=key.path
        )
        self.scanner.skip_until_changed(item)
        self.counters["files_failed"] += 1
        await _durably(self.ledger.record, Record(key, "failed", self.now_us(), reason=exc.reason))

    async def _after(self, item: Ready) -> None:
        """Delete or move a file that is in the ledger (for `mark`: remember it)."""
        c = self.cfg
        try:
            if c.after == "delete":
                await asyncio.to_thread(_unlink, item.path)
            elif c.after == "move":
                await asyncio.to_thread(_move, item.path, c.done_path() / item.rel)
        except OSError as exc:
            self.counters["errors"] += 1
            if item.rel not in self._after_failed:
                self._after_failed.add(item.rel)
                log.warning("%s: could not %s %s: %s", self.resource_id, c.after, item.rel, exc)
            self.scanner.skip_until_changed(item)  # retried after a restart
            return
        self._after_failed.discard(item.rel)
        if c.after == "mark":
            self.scanner.skip_until_changed(item)
        else:
            self.scanner.watch.pop(item.rel, None)


def _honour_cancel() -> None:
    """Raise CancelledError if the current task was cancelled but goes on running.

    In Python 3.11 ``asyncio.wait_for`` (which BufferedPublisher.publish uses) returns
    the result instead of raising when the awaited call completes in the same loop
    iteration as a cancel(): the cancellation is lost and stop(), which awaits the
    cancelled task, would wait forever for a loop that never ends. Called after every
    publish and between files so that such a swallowed cancel still stops the task
    (after what was published has been recorded)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _durably(fn: Callable[..., None], *args: Any) -> None:
    """Run a state write in a thread to its end even if the task is cancelled meanwhile
    (a stop right after a flush): what was published is then also recorded."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _move(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest``, or next to it as ``name.1.csv``... if it exists."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    target, n = dest, 0
    while target.exists():
        n += 1
        target = dest.with_name(f"{dest.stem}.{n}{dest.suffix}")
    shutil.move(src, target)
