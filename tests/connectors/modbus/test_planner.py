"""Coalescing of endpoints into reads: every endpoint in exactly one read that covers
it, no read beyond the protocol's limits, groups never mixed."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from millrace.connectors.modbus.planner import Read, Span, plan, split

KINDS = ["holding", "input", "coil", "discrete"]


@st.composite
def spans(draw: st.DrawFn) -> list[Span]:
    n = draw(st.integers(0, 60))
    out = []
    for key in range(n):
        kind = draw(st.sampled_from(KINDS))
        size = 1 if kind in ("coil", "discrete") else draw(st.sampled_from([1, 1, 2, 4, 10, 125]))
        # cluster addresses so that coalescing, overlaps and limits all happen
        base = draw(st.sampled_from([0, 100, 3000, 65536 - 125]))
        address = min(base + draw(st.integers(0, 2500)), 65536 - size)
        out.append(
            Span(
                key=key,
                unit_id=draw(st.sampled_from([1, 2])),
                kind=kind,
                interval_ms=draw(st.sampled_from([100, 1000])),
                address=address,
                size=size,
            )
        )
    return out


def _limit(r: Read, max_registers: int, max_bits: int) -> int:
    return max_bits if r.kind in ("coil", "discrete") else max_registers


@given(
    spans(),
    st.integers(1, 125),
    st.integers(1, 2000),
    st.integers(0, 40),
    st.integers(0, 300),
)
def test_plan_covers_every_endpoint_once_within_limits(
    items: list[Span], max_registers: int, max_bits: int, gap_r: int, gap_b: int
) -> None:
    items = [s for s in items if s.size <= max_registers or s.kind in ("coil", "discrete")]
    reads = plan(
        items,
        max_registers=max_registers,
        max_bits=max_bits,
        max_gap_registers=gap_r,
        max_gap_bits=gap_b,
    )
    served = [s.key for r in reads for s in r.spans]
    assert sorted(served) == sorted(s.key for s in items)  # exactly once each
    for r in reads:
        assert 1 <= r.count <= _limit(r, max_registers, max_bits)
        assert r.address >= 0 and r.end <= 65536
        for s in r.spans:
            assert (s.unit_id, s.kind, s.interval_ms) == (r.unit_id, r.kind, r.interval_ms)
            assert r.address <= s.address and s.end <= r.end
        # the read starts and ends on an endpoint: no bytes read for nothing at the edges
        assert r.address == min(s.address for s in r.spans)
        assert r.end == max(s.end for s in r.spans)
    # reads of one group never overlap (one request per address and poll), unless
    # the endpoints themselves overlap and the limit forces them apart
    by_group: dict[tuple[int, str, int], list[Read]] = {}
    for r in reads:
        by_group.setdefault((r.unit_id, r.kind, r.interval_ms), []).append(r)
    for key, group in by_group.items():
        spans_of = sorted(
            (s for s in items if (s.unit_id, s.kind, s.interval_ms) == key),
            key=lambda s: s.address,
        )
        if any(a.end > b.address for a, b in itertools.pairwise(spans_of)):
            continue
        group.sort(key=lambda r: r.address)
        assert all(a.end <= b.address for a, b in itertools.pairwise(group))


@given(spans())
def test_adjacent_endpoints_share_a_read(items: list[Span]) -> None:
    """With the protocol's limits and no gap allowance, two reads of a group are
    separated by a gap or because the first could not grow (limit reached)."""
    reads = plan(items, max_registers=125, max_bits=2000)
    by_group: dict[tuple[int, str, int], list[Read]] = {}
    for r in reads:
        by_group.setdefault((r.unit_id, r.kind, r.interval_ms), []).append(r)
    for group in by_group.values():
        group.sort(key=lambda r: r.address)
        for a, b in itertools.pairwise(group):
            first = min(b.spans, key=lambda s: (s.address, s.size, s.key))
            limit = 2000 if a.kind in ("coil", "discrete") else 125
            assert b.address > a.end or max(a.end, first.end) - a.address > limit


def test_examples() -> None:
    def sp(key: int, address: int, size: int = 1, kind: str = "holding", **kw: int) -> Span:
        return Span(key, kw.get("unit", 1), kind, kw.get("interval", 1000), address, size)

    # float32 at 0, uint16 at 2, overlapping uint16 halves at 0 and 1, a gap of 3, int64
    reads = plan(
        [sp(0, 0, 2), sp(1, 2), sp(2, 0), sp(3, 1), sp(4, 6, 4)],
        max_gap_registers=3,
    )
    assert [(r.address, r.count) for r in reads] == [(0, 10)]
    reads = plan([sp(0, 0, 2), sp(1, 2), sp(4, 6, 4)], max_gap_registers=2)
    assert [(r.address, r.count) for r in reads] == [(0, 3), (6, 4)]
    # the 125-register limit splits 0..199 into 125 + 75
    reads = plan([sp(i, i) for i in range(200)])
    assert [(r.address, r.count) for r in reads] == [(0, 125), (125, 75)]
    # bits: 2000 per read; units, kinds and intervals are never mixed
    reads = plan([sp(i, i, kind="coil") for i in range(2500)])
    assert [(r.address, r.count) for r in reads] == [(0, 2000), (2000, 500)]
    reads = plan(
        [sp(0, 0), sp(1, 1, unit=2), sp(2, 2, kind="input"), sp(3, 3, interval=100)],
        max_gap_registers=10,
    )
    assert len(reads) == 4
    parts = split(plan([sp(0, 0, 2), sp(1, 2)])[0])
    assert [(r.address, r.count, r.spans[0].key) for r in parts] == [(0, 2, 0), (2, 1, 1)]
