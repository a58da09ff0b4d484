"""The Bloom filter in time generations (pipeline/batch_filter.py): it may answer a
false hit, never a false miss before an id's expiry, and holds at most its bytes."""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.batch_filter import GenerationFilter, digests_array

WINDOW = 1_000


def digests(names: list[str]) -> np.ndarray:
    return digests_array([hashlib.blake2b(n.encode(), digest_size=16).digest() for n in names])


@settings(max_examples=150, deadline=None)
@given(
    adds=st.lists(
        st.tuples(st.text(min_size=1, max_size=6), st.integers(0, 20 * WINDOW)),
        min_size=1,
        max_size=60,
    ),
    nbytes=st.sampled_from([1, 8, 64, 4096]),
    generations=st.integers(1, 5),
    now=st.integers(0, 20 * WINDOW),
)
def test_an_id_is_found_until_its_expiry_whatever_the_size(
    adds: list[tuple[str, int]], nbytes: int, generations: int, now: int
) -> None:
    """Expiries in any order and far apart (more slices than generations: merges),
    filters down to 64 bits (every answer a hit): still no id missed before it expires."""
    f = GenerationFilter(WINDOW, nbytes, generations)
    for name, expiry in adds:
        f.add(digests([name]), np.array([expiry], np.int64))
        assert f.nbytes <= max(nbytes, 8 * (generations + 2))
    f.expire(now)
    live = [name for name, expiry in adds if expiry > now]
    assert f.contains(digests(live)).all()


def test_generations_go_when_their_slice_has_passed() -> None:
    f = GenerationFilter(WINDOW, 6_000, generations=4)  # slices of 250
    names = [f"id-{i}" for i in range(100)]
    f.add(digests(names), np.full(100, 1_100, np.int64))  # slice 4: [1000, 1250)
    f.expire(1_100)
    assert f.contains(digests(names)).all()  # part of the slice is ahead: kept
    f.expire(1_250)
    assert not f.contains(digests(names)).any()
    assert f.nbytes == 0


def test_false_hits_are_rare_at_the_designed_load() -> None:
    """19 bits per id (7 hashes): about 1e-4 false hits; asserted with ample margin."""
    n = 20_000
    f = GenerationFilter(WINDOW, n * 19 // 8 * 6, generations=4)  # one generation in use
    f.add(digests([f"in-{i}" for i in range(n)]), np.full(n, WINDOW, np.int64))
    false_hits = int(f.contains(digests([f"out-{i}" for i in range(n)])).sum())
    assert false_hits < 20, false_hits


def test_a_saturated_filter_answers_hits_and_stays_in_its_bytes() -> None:
    f = GenerationFilter(WINDOW, 600, generations=4)
    for t in range(0, 50 * WINDOW, 100):
        f.add(digests([f"{t}-{i}" for i in range(500)]), np.full(500, t + WINDOW, np.int64))
        f.expire(t)
        assert f.nbytes <= 600
    assert f.contains(digests(["never-added"])).all()
