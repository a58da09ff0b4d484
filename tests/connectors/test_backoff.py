"""Reconnect delays: exponential growth to a cap, each delay jittered within its band."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from millrace.connectors._common.backoff import Backoff


@given(
    initial=st.floats(0.001, 5.0),
    maximum=st.floats(0.001, 120.0),
    factor=st.floats(1.0, 10.0),
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_delays_stay_in_their_band(
    initial: float, maximum: float, factor: float, jitter: float, seed: int
) -> None:
    b = Backoff(initial, maximum, factor, jitter, rng=random.Random(seed))
    for n in range(40):
        base = min(maximum, initial * factor**n)  # computed here, not by Backoff
        delay = b.next()
        assert base * (1 - jitter) - 1e-9 <= delay <= base + 1e-9


def test_growth_cap_and_reset_without_jitter() -> None:
    b = Backoff(0.5, 30.0, 2.0, jitter=0.0)
    assert [b.next() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    b.reset()
    assert b.next() == 0.5


def test_full_jitter_spreads_reconnects() -> None:
    # many connectors failing together must not retry in lockstep
    delays = [Backoff(1.0, 30.0, 2.0, jitter=1.0, rng=random.Random(i)).next() for i in range(200)]
    assert min(delays) < 0.1 and max(delays) > 0.9
    assert len({round(d, 3) for d in delays}) > 150
