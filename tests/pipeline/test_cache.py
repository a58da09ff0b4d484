"""``pipeline.cache.LastGoodCache``: the TTL, the last good value kept when a refresh
fails, the default before any good load, invalidation. The clock is the test's."""

from __future__ import annotations

import pytest

from millrace.pipeline.cache import LastGoodCache


class Source:
    """Counts loads; fails while ``failing``; returns ``value`` otherwise."""

    def __init__(self) -> None:
        self.loads = 0
        self.failing = False
        self.value: dict[str, int] = {"a": 1}

    async def __call__(self) -> dict[str, int]:
        self.loads += 1
        if self.failing:
            raise ConnectionError("store away")
        return dict(self.value)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_loads_once_per_ttl_and_again_when_it_expires() -> None:
    source, clock = Source(), Clock()
    cache = LastGoodCache(source, ttl_s=2.0, clock=clock)
    assert await cache.get() == {"a": 1}
    source.value = {"a": 2}
    clock.t += 1.999
    assert await cache.get() == {"a": 1}
    assert source.loads == 1
    clock.t += 0.001
    assert await cache.get() == {"a": 2}
    assert source.loads == 2


async def test_a_failing_refresh_keeps_the_last_good_value() -> None:
    source, clock = Source(), Clock()
    cache = LastGoodCache(source, ttl_s=1.0, clock=clock)
    assert await cache.get() == {"a": 1}
    source.failing = True
    source.value = {"a": 9}
    clock.t += 5
    assert await cache.get() == {"a": 1}
    assert (source.loads, cache.failures) == (2, 1)
    # the failure is not retried before the TTL runs out again
    assert await cache.get() == {"a": 1}
    assert source.loads == 2
    clock.t += 1
    source.failing = False
    assert await cache.get() == {"a": 9}


async def test_before_any_good_load_a_failure_raises_or_gives_the_default() -> None:
    source, clock = Source(), Clock()
    source.failing = True
    bare = LastGoodCache(source, ttl_s=1.0, clock=clock)
    with pytest.raises(ConnectionError):
        await bare.get()
    with pytest.raises(ConnectionError):  # nothing to keep: tried again at once
        await bare.get()
    assert source.loads == 2

    source.loads = 0
    defaulted = LastGoodCache(source, ttl_s=1.0, default={}, clock=clock)
    assert await defaulted.get() == {}
    assert await defaulted.get() == {}
    assert source.loads == 1  # the default holds for the TTL, then a new try
    clock.t += 1
    source.failing = False
    assert await defaulted.get() == {"a": 1}


async def test_invalidate_makes_the_next_get_load() -> None:
    source, clock = Source(), Clock()
    cache = LastGoodCache(source, ttl_s=60.0, clock=clock)
    assert await cache.get() == {"a": 1}
    source.value = {"a": 3}
    cache.invalidate()
    assert await cache.get() == {"a": 3}
    assert source.loads == 2
