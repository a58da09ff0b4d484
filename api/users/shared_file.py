"""One JSON document in the data directory, shared by every ``millrace api`` process.

Why a file and not the log: what it holds — password hashes, refresh-token hashes, API
key hashes, failure counters — are secrets or per-attempt noise, and DESIGN.md says no
secret is ever in an event (the log is replicated, archived and replayed forever). What
happened to them (user created, role changed, login, lockout, logout, key rotated) IS on
the log, as audit events without the secret. The processes of one deployment share the
data directory (as they share ``api_keys.json``); a change is made under an exclusive
``flock`` on the document as it is on disk then, written to a temporary file (mode 0600),
fsynced and renamed, and every process takes in a change (size, time or inode differ)
within ``reload_s`` of its next read — or at once, when it asks with ``fresh=True`` (what
security decisions do: a revoked session or disabled user is refused by every process at
its next request).
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger("millrace.api")

D = TypeVar("D", dict[str, Any], list[Any])


class SharedJsonFile(Generic[D]):
    """A JSON document on disk (or only in memory, ``path=None``), read cached and
    changed under a lock; ``empty`` makes the document of a missing file (and says
    whether it is an object or an array)."""

    def __init__(
        self,
        path: Path | None,
        empty: Callable[[], D],
        *,
        reload_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.reload_s = reload_s
        self._clock = clock
        self._empty: Callable[[], D] = empty
        self._lock = threading.RLock()
        self._data: D = empty()
        self._seen: tuple[int, int, int] | None = None
        self._checked = clock()
        with self._lock:
            self._load()

    def _signature(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> None:
        if self.path is None:
            return
        seen = self._signature()
        if seen == self._seen:
            return
        data = json.loads(self.path.read_text()) if seen is not None else self._empty()
        if not isinstance(data, type(self._data)):
            raise ValueError(f"{self.path}: not a JSON {type(self._data).__name__}")
        self._data, self._seen = data, seen

    def read(self, *, fresh: bool = False) -> D:
        """The document (do not change it; use :meth:`changing`). At most every
        ``reload_s`` (always when ``fresh``) it is read again if the file changed."""
        if self.path is not None and (fresh or self._clock() - self._checked >= self.reload_s):
            with self._lock:
                self._checked = self._clock()
                try:
                    self._load()
                except (OSError, ValueError):
                    # unreadable (edited by hand): keep what was last read, try later
                    log.exception("cannot read %s", self.path)
        return self._data

    @contextmanager
    def changing(self) -> Iterator[D]:
        """The document as it is on disk, to change in place; saved when the block
        ends without an exception (then discarded)."""
        with self._lock:
            if self.path is None:
                work = copy.deepcopy(self._data)
                yield work
                self._data = work
                return
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._load()
                work = copy.deepcopy(self._data)
                yield work
                self._save(work)
            finally:
                os.close(fd)

    def _save(self, data: D) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._data, self._seen = data, self._signature()
