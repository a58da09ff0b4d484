"""The batch ledger held compactly (pipeline/batches.py): ids read back from the store
decide like ids the fold applied itself, and an id costs a bounded number of bytes
(bench group ``memory`` found the ledger's 2,000,000 ids at 685 MiB of RSS)."""

from __future__ import annotations

import secrets
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from millrace.pipeline.batch_ledger import BatchLedger
from millrace.pipeline.batches import Applied, AppliedBatches, origin

T0 = 1_750_000_000_000_000
WINDOW = 3_600_000_000


@dataclass
class Ev:
    """What the ledger reads of an event (a decoded value with its batch id)."""

    offset: int
    bid: str
    timestamp_us: int = T0
    partition: int = 0
    topic: str = "telemetry"
    raw: bytes = b""
    value: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.value = {"batch_id": self.bid, "identity": "dev"}


class Store(AppliedBatches):
    """Applied ids as the ``applied_batches`` projection returns them."""

    def __init__(self, rows: dict[str, Applied]) -> None:
        self.rows = rows

    def applied_batches(
        self, partition: int, since_us: int, keys: Any = None
    ) -> dict[str, Applied]:
        return {
            k: a
            for k, a in self.rows.items()
            if a.expires_us > since_us and (keys is None or k in keys)
        }


def test_ids_read_back_decide_like_ids_applied_here() -> None:
    store = Store(
        {
            "a": Applied(origin("telemetry", 0, 5), T0 + WINDOW),  # applied by this fold
            "b": Applied("restore:task-1/file-2", T0 + WINDOW),  # by a restore
            "c": Applied(origin("telemetry", 1, 7), T0 + WINDOW),  # another partition
            "d": Applied(origin("telemetry", 0, 6), T0 - 1),  # expired
            "e": Applied("telemetry/0/007", T0 + WINDOW),  # not a canonical offset
        }
    )
    ledger = BatchLedger(WINDOW)
    # a redo of offset 5 keeps a; every other origin of an unexpired id drops the batch
    evs = [Ev(5, "a"), Ev(6, "d"), Ev(8, "b"), Ev(9, "c"), Ev(10, "e"), Ev(11, "a")]
    kept = ledger.admit(evs, store)
    assert [e.offset for e in kept.events] == [5, 6]
    assert kept.dropped == 4
    # and what the fold applied now is held as its own
    again = ledger.admit([Ev(12, "d"), Ev(13, "f"), Ev(14, "f")], store)
    assert [e.offset for e in again.events] == [13]


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 3)), min_size=1, max_size=40))
def test_the_first_offset_of_each_id_is_kept_whatever_the_steps(
    items: list[tuple[str, int]],
) -> None:
    """Events with ids, cut into steps anywhere; a redo of a step keeps what it kept."""
    evs = [Ev(i, bid, T0 + i) for i, (bid, _) in enumerate(items)]
    first: dict[str, int] = {}
    for e in evs:
        first.setdefault(e.bid, e.offset)
    ledger = BatchLedger(WINDOW)
    kept: list[int] = []
    start = 0
    for _, size in items:  # step sizes 1..4, until the events run out
        step = evs[start : start + size + 1]
        if not step:
            break
        got = [e.offset for e in ledger.admit(step, None).events]
        ledger._parts[0].next_offset = step[0].offset  # the same step redone
        assert [e.offset for e in ledger.admit(step, None).events] == got
        kept += got
        start += len(step)
    for e in evs[start:]:
        kept += [x.offset for x in ledger.admit([e], None).events]
    assert kept == sorted(first.values())


def test_an_id_costs_a_bounded_number_of_bytes() -> None:
    n = 20_000
    bids = ["content:" + secrets.token_hex(16) for _ in range(n)]
    evs = [Ev(i + 1, bid, T0 + i + 1) for i, bid in enumerate(bids)]
    ledger = BatchLedger(WINDOW)
    ledger.admit([Ev(0, "warm-up", T0)], None)  # one-off imports and caches
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(0, n, 5_000):
            ledger.admit(evs[i : i + 5_000], None)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert ledger.held() == n + 1
    # an int key (48 B), a packed int value (40 B) and the dict's entry: the id string,
    # an Applied and its origin string took about 300
    assert held / n < 170, held / n
