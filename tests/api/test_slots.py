"""api.slots: counting slots per key and in total."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millrace.api.slots import Slots


def test_per_key_and_total() -> None:
    slots = Slots(total=3, per_key=2)
    assert slots.try_acquire("a") and slots.try_acquire("a")
    assert not slots.try_acquire("a")
    assert slots.try_acquire("b")
    assert not slots.try_acquire("c")  # 3 in use
    slots.release("a")
    assert slots.try_acquire("c")
    assert (slots.held("a"), slots.held("b"), slots.held("c"), slots.in_use) == (1, 1, 1, 3)


def test_release_without_a_slot_raises() -> None:
    with pytest.raises(RuntimeError):
        Slots(1, 1).release("a")
    with pytest.raises(ValueError):
        Slots(0, 1)


@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abc")), max_size=60))
def test_never_more_than_the_limits(ops: list[tuple[bool, str]]) -> None:
    slots = Slots(total=4, per_key=2)
    held: dict[str, int] = {}
    for acquire, key in ops:
        if acquire:
            expect = sum(held.values()) < 4 and held.get(key, 0) < 2
            assert slots.try_acquire(key) is expect
            if expect:
                held[key] = held.get(key, 0) + 1
        elif held.get(key):
            slots.release(key)
            held[key] -= 1
        assert slots.in_use == sum(held.values()) <= 4
        assert all(slots.held(k) == n <= 2 for k, n in held.items())
