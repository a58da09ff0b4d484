"""Reading a restore file's records ahead, in a thread of their own.

A restore folds a file chunk by chunk: decode, admit the batch ids, fold, insert. The
inserts and the id query run in chDB's threads (the GIL released), so while one chunk
is being inserted the next one's records can be decoded: :class:`Prefetch` runs the
record iterator (read, decode, filter) in a thread and hands its items over in pages
through a bounded queue. Order is kept, and an error the iterator raises (a corrupt
block) is raised by :meth:`Prefetch.__next__` after the items before it, where the
iterator itself would have raised it. Nothing else changes: which records are folded,
in which chunks, and the sink's protocol are the fold's (``restore.fold``).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class _End:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetch(Iterator[T], Generic[T]):
    """``source``'s items, read ahead by a thread (up to ``depth`` pages of ``page``
    items); :meth:`close` stops the thread (call it when done, or when giving up)."""

    def __init__(self, source: Iterator[T], *, page: int = 2000, depth: int = 4) -> None:
        self._source = source
        self._page = page
        self._queue: queue.Queue[list[T] | _End] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._items: deque[T] = deque()
        self._end: _End | None = None
        self._thread = threading.Thread(target=self._fill, name="restore-prefetch", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        page: list[T] = []
        try:
            for item in self._source:
                page.append(item)
                if len(page) >= self._page:
                    if not self._put(page):
                        return
                    page = []
        except BaseException as exc:  # handed to the reader, raised where it reads
            if not page or self._put(page):
                self._put(_End(exc))
            return
        if not page or self._put(page):
            self._put(_End())

    def _put(self, item: list[T] | _End) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> T:
        while not self._items:
            if self._end is not None:
                if self._end.error is not None:
                    error, self._end = self._end.error, _End()
                    raise error
                raise StopIteration
            got = self._queue.get()
            if isinstance(got, _End):
                self._end = got
            else:
                self._items.extend(got)
        return self._items.popleft()

    def close(self) -> None:
        """Stop reading ahead (the thread ends at its next item or page)."""
        self._stop.set()
        while self._thread.is_alive():
            try:  # a thread waiting to put is let go
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()
