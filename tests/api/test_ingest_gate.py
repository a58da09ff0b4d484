"""HTTP ingest's identity gate (``api.ingest_gate``): locked and (with registration
required) unknown identities refused, from one query per period for all identities;
this process's writes seen at the next request; too many identities to hold → each
asked on its own."""

from __future__ import annotations

from typing import Any

import pytest

from millrace.api.ingest_gate import LOCKED, MISSING, IngestGate


class Queries:
    """The store's answer, counted."""

    def __init__(self, locked: set[str], present: set[str]) -> None:
        self.locked, self.present, self.calls = locked, present, 0

    def gate_sets(self, registered: bool, most: int) -> tuple[Any, Any]:
        self.calls += 1
        if not registered:
            return frozenset(self.locked), None
        if len(self.present) > most:
            return frozenset(self.locked), None
        return frozenset(self.locked), frozenset(self.present)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def gate(q: Queries, registered: bool, clock: Clock, **kw: Any) -> tuple[IngestGate, list[str]]:
    asked: list[str] = []

    async def point(identity: str) -> str | None:
        asked.append(identity)
        if identity in q.locked:
            return "locked"
        return "provisioned" if identity in q.present else None

    return IngestGate(q, registered, point, ttl_s=1.0, clock=clock, **kw), asked  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_one_query_per_period_for_every_identity() -> None:
    q, clock = Queries({"l"}, {"l", "a"}), Clock()
    g, _ = gate(q, False, clock)
    answers = [await g.refusal(i) for i in ["l", "a", "zz", "l"]]
    assert answers == [LOCKED, None, None, LOCKED] and q.calls == 1
    q.locked.add("a")  # another process locks it: seen once the period is over
    clock.t = 0.9
    assert await g.refusal("a") is None and q.calls == 1
    clock.t = 1.0
    assert await g.refusal("a") == LOCKED and q.calls == 2


@pytest.mark.asyncio
async def test_this_process_writes_are_seen_at_the_next_request() -> None:
    q, clock = Queries(set(), {"a"}), Clock()
    g, _ = gate(q, True, clock)
    assert await g.refusal("b") == MISSING
    q.present.add("b")
    g.invalidate()
    assert await g.refusal("b") is None and q.calls == 2


@pytest.mark.asyncio
async def test_too_many_identities_are_asked_one_by_one() -> None:
    q, clock = Queries({"l"}, {"l", "a", "b"}), Clock()
    g, asked = gate(q, True, clock, max_identities=2)
    assert [await g.refusal(i) for i in ["a", "l", "nope"]] == [None, LOCKED, MISSING]
    assert asked == ["a", "nope"]  # a locked one is known from the query
