"""Which requests read a set of endpoints: nearby addresses coalesced, pure.

Every Modbus request costs a round trip, often over a slow serial gateway, so values
of one unit, register kind and poll interval that lie close together are read by one
request spanning them (the protocol allows 125 registers or 2000 bits per read). Gaps
of at most ``max_gap`` unused words/bits are read and discarded; a wider gap, or a span
that would exceed the limit, starts a new request. Overlapping endpoints (a float32 and
its two halves as uint16) share a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """One endpoint's place: ``size`` words (or bits) from ``address``."""

    key: int  # the caller's index of the endpoint
    unit_id: int
    kind: str  # holding | input | coil | discrete
    interval_ms: int
    address: int
    size: int

    @property
    def end(self) -> int:
        return self.address + self.size


@dataclass(frozen=True, slots=True)
class Read:
    """One request: ``count`` words/bits of ``kind`` from ``address`` of ``unit_id``;
    ``spans`` are the endpoints it serves (their offset is ``span.address - address``)."""

    unit_id: int
    kind: str
    interval_ms: int
    address: int
    count: int
    spans: tuple[Span, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def plan(
    spans: Sequence[Span],
    *,
    max_registers: int = 125,
    max_bits: int = 2000,
    max_gap_registers: int = 0,
    max_gap_bits: int = 0,
) -> list[Read]:
    """The reads covering ``spans``: each span in exactly one read, none longer than the
    limit of its kind, grouped per (unit, kind, interval). ValueError if a span alone is
    longer than the limit (the configuration checks prevent it)."""
    groups: dict[tuple[int, str, int], list[Span]] = {}
    for s in spans:
        groups.setdefault((s.unit_id, s.kind, s.interval_ms), []).append(s)
    reads: list[Read] = []
    for (unit, kind, interval), members in sorted(groups.items()):
        bits = kind in ("coil", "discrete")
        limit = max_bits if bits else max_registers
        gap = max_gap_bits if bits else max_gap_registers
        members.sort(key=lambda s: (s.address, s.size, s.key))
        current: list[Span] = []
        start = end = 0
        for s in members:
            if s.size > limit:
                raise ValueError(f"{s.size} {'bits' if bits else 'registers'} exceed {limit}")
            if s.address < 0 or s.end > 65536:
                raise ValueError(f"span {s.address}+{s.size} is outside 0..65535")
            if current and s.address - end <= gap and max(end, s.end) - start <= limit:
                current.append(s)
                end = max(end, s.end)
                continue
            if current:
                reads.append(Read(unit, kind, interval, start, end - start, tuple(current)))
            current, start, end = [s], s.address, s.end
        if current:
            reads.append(Read(unit, kind, interval, start, end - start, tuple(current)))
    return reads


def split(read: Read) -> list[Read]:
    """``read`` as one read per endpoint: used when a coalesced read is refused (an
    illegal address in a gap or in one endpoint) to find which endpoints still work."""
    return [
        Read(read.unit_id, read.kind, read.interval_ms, s.address, s.size, (s,)) for s in read.spans
    ]
