"""The batch ledger with its Bloom filter and bounded exact ids (pipeline/batch_ledger.py)
decides exactly as a clean pass over the log that remembers every id: a false hit never
drops a batch that was not applied, a duplicate within the window is always dropped,
a step redone after a crash (its rows written or not) keeps what it kept, whatever the
filter size, the exact-id bound, the load page size and the restarts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline import batch_ledger
from millrace.pipeline.batch_ledger import BatchLedger
from millrace.pipeline.batches import Applied, AppliedBatches, origin
from tests.pipeline.test_batch_ledger_memory import Ev

T0 = 1_750_000_000_000_000
WINDOW = 1_000


class Store(AppliedBatches):
    """The ``applied_batches`` projection: rows as written (several per id possible),
    read back as ProjectionWriter reads them (the first application's origin and
    expiry; pages in id order with all rows of the last id)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int, int]] = []  # key, origin, applied, expires

    def write(self, table: Any) -> None:
        """One insert: rows of one id collapse to the last (ReplacingMergeTree on insert)."""
        d = table.to_pydict()
        last = {
            row[0]: row
            for row in zip(
                d["batch_key"], d["origin"], d["applied_us"], d["expires_us"], strict=True
            )
        }
        self.rows += last.values()

    def applied_batches(
        self, partition: int, since_us: int, keys: Sequence[str] | None = None
    ) -> dict[str, Applied]:
        first: dict[str, tuple[int, str, int]] = {}
        for key, where, applied, expires in self.rows:
            if expires <= since_us or (keys is not None and key not in keys):
                continue
            old = first.get(key)
            if old is None or (applied, where) < old[:2]:
                first[key] = (applied, where, expires)
        return {k: Applied(w, e) for k, (_, w, e) in first.items()}

    def applied_keys(
        self, partition: int, since_us: int, after: str | None, limit: int
    ) -> list[tuple[str, int]]:
        rows = sorted(
            (k, e) for k, _, _, e in self.rows if e > since_us and (after is None or k > after)
        )
        page = rows[:limit]
        while page and len(page) < len(rows) and rows[len(page)][0] == page[-1][0]:
            page.append(rows[len(page)])  # WITH TIES
        return page


def reference(events: list[Ev]) -> list[int]:
    """Offsets a clean pass keeps: an id applied at another unexpired origin is dropped."""
    applied: dict[str, tuple[int, int]] = {}  # id -> (offset, expiry)
    kept = []
    for e in events:
        prior = applied.get(e.bid)
        if prior is not None and prior[1] > e.timestamp_us:
            continue
        applied[e.bid] = (e.offset, e.timestamp_us + WINDOW)
        kept.append(e.offset)
    return kept


def reapplied_within(kept: list[Ev]) -> bool:
    """The step applied an id twice (its window ran out inside the step): a known gap,
    older than the filter. The step's insert keeps one row per id (the last), so a redo
    of the step after its rows landed reads the second application only and drops the
    first (the redo's inserts carry the first write's tokens, so chDB keeps the first
    write's rows; the log is as it was). Across steps, before a merge, the store keeps
    both rows and the redo decides as the first pass did (tested here)."""
    return len({e.bid for e in kept}) < len(kept)


step_st = st.tuples(
    st.integers(1, 6),  # events in the step
    st.sampled_from(["ok", "ok", "lost", "redo", "restart"]),
)


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f", "u"]), st.integers(0, 400)),
        min_size=1,
        max_size=40,
    ),
    steps=st.lists(step_st, min_size=1, max_size=20),
    filter_bytes=st.sampled_from([1, 16, 4096]),
    max_keys=st.sampled_from([1, 3, 1000]),
    page=st.sampled_from([1, 2, 50_000]),
)
def test_decisions_equal_a_clean_pass_that_remembers_every_id(
    items: list[tuple[str, int]],
    steps: list[tuple[int, str]],
    filter_bytes: int,
    max_keys: int,
    page: int,
) -> None:
    """``lost``: the step's write failed (nothing stored) and it is redone; ``redo``: it
    was written but not committed and is redone; ``restart``: a new process (ledger)
    before the step. "u" ids are unique (mostly new ids, some filter hits false)."""
    events, t = [], T0
    for i, (bid, gap) in enumerate(items):
        t += gap
        events.append(Ev(i, f"u{i}" if bid == "u" else bid, t))
    store = Store()
    kept: list[int] = []

    def ledger() -> BatchLedger:
        return BatchLedger(WINDOW, max_keys=max_keys, filter_bytes=filter_bytes)

    with mock.patch.object(batch_ledger, "LOAD_PAGE", page):
        fold = ledger()
        pos = 0
        for size, what in [*steps, *[(6, "ok")] * len(events)]:
            step = events[pos : pos + size]
            if not step:
                break
            if what == "restart":
                fold = ledger()
            got = fold.admit(step, store)
            if what == "lost":  # the write failed: the step is folded again
                got = fold.admit(step, store)
            elif what == "redo" and not reapplied_within(got.events):
                # written, not committed: folded again, written again
                assert got.rows is not None
                store.write(got.rows)
                again = fold.admit(step, store)
                assert [e.offset for e in again.events] == [e.offset for e in got.events]
                got = again
            assert got.rows is not None
            store.write(got.rows)
            kept += [e.offset for e in got.events]
            pos += len(step)
    assert kept == reference(events)
    last = {events[o].bid: o for o in kept}  # the store names each id's last application
    named = {w for _, w, _, _ in store.rows}
    assert all(origin("telemetry", 0, o) in named for o in last.values())


def test_a_partition_is_loaded_in_pages() -> None:
    store = Store()
    first = BatchLedger(WINDOW)
    evs = [Ev(i, f"id-{i}", T0 + i) for i in range(10)]
    rows = first.admit(evs, store).rows
    assert rows is not None
    store.write(rows)
    pages: list[int] = []
    real = store.applied_keys

    def counted(*args: Any) -> list[tuple[str, int]]:
        out = real(*args)
        pages.append(len(out))
        return out

    store.applied_keys = counted  # type: ignore[method-assign,assignment]
    with mock.patch.object(batch_ledger, "LOAD_PAGE", 3):
        restarted = BatchLedger(WINDOW)
        got = restarted.admit([Ev(10, "id-4", T0 + 10), Ev(11, "new", T0 + 11)], store)
    assert pages == [3, 3, 3, 1]
    assert [e.offset for e in got.events] == [11]
    assert restarted.held() == 2  # the loaded ids are in the filter, not held exactly
