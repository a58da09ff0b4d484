"""Records read ahead in a thread: the same items in the same order, an error raised
where the iterator raised it, and a reader that gives up stops the thread."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millrace.pipeline.archive.errors import ArchiveFormatError
from millrace.pipeline.restore.prefetch import Prefetch


def items(n: int, fail_at: int | None) -> Iterator[int]:
    for i in range(n):
        if i == fail_at:
            raise ArchiveFormatError(f"corrupt archive block at {i}")
        yield i


@given(st.integers(0, 60), st.integers(1, 7), st.integers(1, 3), st.none() | st.integers(0, 60))
def test_the_same_items_then_the_error_where_it_was(
    n: int, page: int, depth: int, fail_at: int | None
) -> None:
    ahead = Prefetch(items(n, fail_at), page=page, depth=depth)
    got: list[int] = []
    try:
        if fail_at is not None and fail_at < n:
            with pytest.raises(ArchiveFormatError, match=f"at {fail_at}$"):
                got.extend(ahead)
            assert got == list(range(fail_at))
        else:
            assert list(ahead) == list(range(n))
            assert next(ahead, None) is None  # exhausted stays exhausted
    finally:
        ahead.close()


def test_close_stops_a_reader_that_gave_up() -> None:
    before = threading.active_count()
    ahead = Prefetch(itertools.count(), page=10, depth=2)
    assert [next(ahead) for _ in range(25)] == list(range(25))
    ahead.close()
    assert threading.active_count() == before
