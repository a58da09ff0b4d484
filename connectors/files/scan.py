"""The drop directory, scanned: which files are complete and not read yet.

A scan walks the directory (``os.scandir``; see the connector's module doc for why it
polls), keeps the files the ``include``/``exclude``/``temp_patterns`` rules want, and
calls a file complete once its size and modification time have been stable for
``settle_ms``. A file the ledger holds as read (same size, time and digest) is skipped,
or handed back with only its ``after`` action left. The scanner remembers what it saw
between scans (``watch``) and the files not to read again until they change (``skip``);
it runs in a worker thread and does no reading of its own but :meth:`DropScanner.read`.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from millrace.pipeline.errors import ConnectorError

from .config import FilesConnection
from .ledger import Ledger, digest_file

log = logging.getLogger("millrace.connectors.files")


@dataclass(frozen=True, slots=True)
class Ready:
    """A complete file found by a scan."""

    rel: str
    path: Path
    size: int
    mtime_ns: int
    done: bool  # already in the ledger: only the `after` action is left


class DropScanner:
    """The files of ``cfg``'s drop directory that are ready to read (see the module doc);
    ``name`` prefixes its log lines."""

    def __init__(self, cfg: FilesConnection, name: str) -> None:
        self.cfg = cfg
        self.name = name
        self.watch: dict[str, tuple[int, int, float]] = {}  # rel -> size, mtime, since
        self.skip: dict[str, tuple[int, int]] = {}  # rel -> (size, mtime) not to read

    def skip_until_changed(self, item: Ready) -> None:
        self.skip[item.rel] = (item.size, item.mtime_ns)

    def _matches(self, patterns: Sequence[str], rel: str, name: str) -> bool:
        # case-insensitive: plant PCs write DATA.CSV as often as data.csv
        return any(
            fnmatch.fnmatchcase((rel if "/" in p else name).lower(), p.lower()) for p in patterns
        )

    def _wanted(self, rel: str, name: str) -> bool:
        c = self.cfg
        return (
            self._matches(c.include, rel, name)
            and not self._matches(c.exclude, rel, name)
            and not self._matches(c.temp_patterns, name, name)
        )

    def _walk(self) -> Iterator[tuple[str, Path, os.stat_result]]:
        c = self.cfg
        root = c.directory_path()
        skip_dirs = {os.path.realpath(c.state_path()), os.path.realpath(c.done_path())}
        stack: list[tuple[Path, str]] = [(root, "")]
        while stack:
            d, prefix = stack.pop()
            try:
                it = os.scandir(d)
            except OSError as exc:
                if d == root:
                    if isinstance(exc, FileNotFoundError | NotADirectoryError):
                        raise ConnectorError(f"Directory not found: {root}") from exc
                    raise ConnectorError(f"Directory not readable: {root}: {exc}") from exc
                log.warning("%s: %s skipped: %s", self.name, d, exc)
                continue
            with it:
                for e in it:
                    rel = prefix + e.name
                    try:
                        if e.is_dir():
                            if (
                                c.recursive
                                and os.path.realpath(e.path) not in skip_dirs
                                and not self._matches(c.temp_patterns, e.name, e.name)
                                and not self._matches(c.exclude, rel, e.name)
                            ):
                                stack.append((Path(e.path), rel + "/"))
                            continue
                        if not e.is_file() or not self._wanted(rel, e.name):
                            continue
                        st = e.stat()
                    except OSError:
                        continue  # gone while scanning
                    yield rel, Path(e.path), st

    def scan(self, ledger: Ledger) -> list[Ready]:
        """The files complete and not read yet (or read, with their `after` action left)."""
        now = time.monotonic()
        settle_s = self.cfg.settle_ms / 1000
        seen: set[str] = set()
        ready: list[Ready] = []
        for rel, path, st in self._walk():
            seen.add(rel)
            size, mtime = st.st_size, st.st_mtime_ns
            prev = self.watch.get(rel)
            if prev is None or prev[:2] != (size, mtime):
                self.watch[rel] = (size, mtime, now)
                if settle_s > 0:
                    continue  # changed since the last scan: not complete yet
            elif now - prev[2] < settle_s:
                continue
            if self.skip.get(rel) == (size, mtime):
                continue
            done = False
            rec = ledger.get(rel)
            if rec is not None and (rec.key.size, rec.key.mtime_ns) == (size, mtime):
                try:
                    same = digest_file(path, size) == rec.key.digest
                except OSError:
                    continue
                if same and rec.status == "done":
                    if self.cfg.after == "mark":
                        self.skip[rel] = (size, mtime)
                        continue
                    done = True  # read before a crash or restart; still to delete/move
            ready.append(Ready(rel, path, size, mtime, done))
        for rel in list(self.watch):
            if rel not in seen:
                del self.watch[rel]
                self.skip.pop(rel, None)
        if self.cfg.order == "mtime":
            ready.sort(key=lambda r: (r.mtime_ns, r.rel))
        else:
            ready.sort(key=lambda r: r.rel)
        return ready

    def read(self, item: Ready) -> bytes | None:
        """The file's bytes, or None if it changed or went away meanwhile."""
        try:
            data = item.path.read_bytes()
            st = os.stat(item.path)
        except FileNotFoundError:
            return None
        if (st.st_size, st.st_mtime_ns, len(data)) != (item.size, item.mtime_ns, item.size):
            self.watch.pop(item.rel, None)  # still being written: wait for it to settle
            return None
        return data
