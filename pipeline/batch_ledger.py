"""The telemetry fold's memory of applied batch ids: exact where it must be, a Bloom
filter elsewhere, bounded by configuration (``pipeline.batches`` has the key rule, the
``applied_batches`` port and the restore marks).

A partition's ledger holds two things:

* ``ids``: the ids this ledger applied or read back recently, exactly (an id as the 128
  bits of its blake2b digest; an id applied by this partition's fold as one int packing
  its expiry and offset, other origins as an :class:`Applied`), at most ``max_keys``
  over all partitions, oldest forgotten first but never those of the step just
  admitted. These decide without a store query, and they hold every id of the
  current step: the sink writes a step's ``applied_batches`` rows before the next step
  is admitted (every runtime folds and writes a partition's steps one after the other),
  so an id applied earlier is either here or in the store.
* ``filter``: every id the partition applied or read back within the window, as a
  :class:`~millrace.pipeline.batch_filter.GenerationFilter` (``filter_bytes``, time
  generations dropped as log time passes their slice). A miss is certain; the step's
  ids that hit and are not in ``ids`` are asked of the store, one query per
  partition and step, and decided on its answer. So a false hit costs a query,
  never a batch: the store's answer, not the filter, says whether an id was applied
  and where.

Decisions are the ones an exact set of the window's ids would take (the module doc of
``pipeline.batches``): an id applied at another unexpired origin is dropped, one applied
at the same origin (a step redone after a crash, the sink's intent protocol) is applied
again with the same rows. When the fold first sees a partition, or its offsets jump
(another worker folded it, or a failed step is redone), the partition is loaded again:
its unexpired ids are streamed from the store into a new filter in pages of
``LOAD_PAGE`` ids (bounded memory while loading). While the restore mark moves, every
id of a step not in ``ids`` is asked of the store (a restore wrote ids the filter does
not hold); once it stands still, a partition loaded before the move is loaded again.

Memory: ``filter_bytes`` per partition folded (allocated as the generations fill) +
about 120 bytes per id in ``ids``. The previous ledger held every id of the window
(up to 2,000,000, ~300 MiB) and, past that, asked the store about every id of every
step: this one's cost grows smoothly with the false-hit rate instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import pyarrow as pa

from millrace.pipeline.batch_filter import GenerationFilter, digests_array
from millrace.pipeline.batches import (
    DEFAULT_WINDOW_US,
    Applied,
    AppliedBatches,
    batch_key,
    origin,
)
from millrace.pipeline.tables import APPLIED_BATCHES_SCHEMA
from millrace.pipeline.topics import TELEMETRY

#: ids held exactly (over all partitions) before the oldest are forgotten
DEFAULT_MAX_KEYS = 200_000
#: bytes of Bloom filter per telemetry partition folded (``ingest.batch_filter_mib``)
DEFAULT_FILTER_BYTES = 16 * 2**20
#: ids per store read while a partition is loaded
LOAD_PAGE = 50_000

#: an id applied by the live fold of the ledger's partition: ``expires_us << 44 | offset``
_OFFSET_BITS = 44
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
#: what the ledger holds per id: the packed int above, or where and until when otherwise
Held = int | Applied


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


def held_key(key: str) -> int:
    """An id as the ledger holds it: 128 bits of its blake2b digest."""
    return int.from_bytes(_digest(key), "little")


def _expiry(held: Held) -> int:
    return held >> _OFFSET_BITS if isinstance(held, int) else held.expires_us


def _hold(partition: int, loaded: Mapping[str, Applied]) -> dict[int, Held]:
    """Ids read back from the store, as the ledger of ``partition`` holds them."""
    prefix = f"{TELEMETRY}/{partition}/"
    out: dict[int, Held] = {}
    for key, applied in loaded.items():
        where = applied.origin
        tail = where[len(prefix) :] if where.startswith(prefix) else ""
        if (
            tail.isascii()
            and tail.isdigit()
            and int(tail) <= _OFFSET_MASK
            and str(int(tail)) == tail
        ):
            out[held_key(key)] = applied.expires_us << _OFFSET_BITS | int(tail)
        else:
            out[held_key(key)] = applied
    return out


@dataclass(slots=True)
class _Partition:
    filter: GenerationFilter
    ids: dict[int, Held] = field(default_factory=dict)
    next_offset: int = -1
    complete: bool = True
    mark: tuple[int, int] | None = None  # the restore mark when it was loaded
    fresh: int = 0  # ids of the last admitted step (never forgotten by the bound)


@dataclass(slots=True)
class Admitted:
    """The events of a fold step to apply, and the ``applied_batches`` rows for them."""

    events: list[Any]
    rows: pa.Table | None
    dropped: int


class BatchLedger:
    """Applied batch ids per telemetry partition (see the module doc)."""

    def __init__(
        self,
        window_us: int = DEFAULT_WINDOW_US,
        max_keys: int = DEFAULT_MAX_KEYS,
        filter_bytes: int = DEFAULT_FILTER_BYTES,
    ):
        self.window_us = window_us
        self.max_keys = max_keys
        self.filter_bytes = filter_bytes
        self._parts: dict[int, _Partition] = {}
        self.dropped = 0
        self.loads = 0
        #: store queries for ids not decided in memory, and the ids they asked about
        self.asks = 0
        self.asked = 0
        self._mark: tuple[int, int] | None = None

    def held(self) -> int:
        """Ids held exactly (the filter's are not counted)."""
        return sum(len(p.ids) for p in self._parts.values())

    def filter_nbytes(self) -> int:
        return sum(p.filter.nbytes for p in self._parts.values())

    def _part(
        self, partition: int, first: Any, reader: AppliedBatches | None, moved: bool
    ) -> _Partition:
        part = self._parts.get(partition)
        if part is not None and part.next_offset == first.offset:
            if part.mark == self._mark:
                return part
            if moved:  # a restore is writing: ask the store about ids not in memory
                part.complete = False
                return part
            # a restore wrote since the load and has stopped: load again
        # first sight of the partition, or its offsets jumped: load it again
        part = _Partition(GenerationFilter(self.window_us, self.filter_bytes), mark=self._mark)
        self._parts[partition] = part  # the old one's memory goes before the load
        if reader is not None:
            self._load(part, partition, first.timestamp_us, reader)
        return part

    def _load(
        self, part: _Partition, partition: int, since_us: int, reader: AppliedBatches
    ) -> None:
        after: str | None = None
        while True:
            page = reader.applied_keys(partition, since_us, after, LOAD_PAGE)
            if page:
                digests = digests_array([_digest(k) for k, _ in page])
                part.filter.add(digests, np.array([e for _, e in page], np.int64))
            if len(page) < LOAD_PAGE:
                break
            after = page[-1][0]
        self.loads += 1

    def _confirm(
        self,
        part: _Partition,
        partition: int,
        since_us: int,
        step: Sequence[tuple[Any, str, bytes]],
        reader: AppliedBatches,
    ) -> None:
        """Read from the store the step's ids of ``partition`` that memory cannot decide."""
        todo = [
            (k, d)
            for e, k, d in step
            if e.partition == partition and int.from_bytes(d, "little") not in part.ids
        ]
        if not todo:
            return
        if part.complete:
            hits = part.filter.contains(digests_array([d for _, d in todo]))
            asked = [k for (k, _), hit in zip(todo, hits.tolist(), strict=True) if hit]
        else:
            asked = [k for k, _ in todo]
        if not asked:
            return
        self.asks += 1
        self.asked += len(asked)
        found = reader.applied_batches(partition, since_us, asked)
        part.ids.update(_hold(partition, found))
        if found:
            part.filter.add(
                digests_array([_digest(k) for k in found]),
                np.array([a.expires_us for a in found.values()], np.int64),
            )

    def admit(self, events: Sequence[Any], reader: AppliedBatches | None) -> Admitted:
        """The events whose batch id was not applied at another origin (in log order;
        the first of several with one id wins), and the rows recording them."""
        if not events:
            return Admitted([], None, 0)
        keep: list[Any] = []
        parts: list[int] = []
        keys: list[str] = []
        origins: list[str] = []
        identities: list[str] = []
        applied: list[int] = []
        expires: list[int] = []
        dropped = 0
        window = self.window_us
        part: _Partition | None = None
        current = -1
        step: list[tuple[Any, str, bytes]] = []
        for ev in events:
            key = batch_key(ev.value, ev.raw)
            step.append((ev, key, _digest(key)))
        moved = False
        if reader is not None:
            mark = reader.restore_mark()
            moved, self._mark = mark != self._mark, mark
        added: dict[int, tuple[_Partition, list[bytes], list[int]]] = {}
        for ev, key, digest in step:
            if part is None or ev.partition != current:
                current = ev.partition
                part = self._part(current, ev, reader, moved)
                if current not in added:
                    added[current] = (part, [], [])
                    part.fresh = 0
                self._prune(part, ev.timestamp_us)
                part.filter.expire(ev.timestamp_us)
                if reader is not None:
                    self._confirm(part, current, ev.timestamp_us, step, reader)
            held = int.from_bytes(digest, "little")
            where = origin(ev.topic, ev.partition, ev.offset)
            prior = part.ids.get(held)
            part.next_offset = ev.offset + 1
            live = ev.topic == TELEMETRY and ev.offset <= _OFFSET_MASK
            if prior is None:
                here = False
            elif isinstance(prior, int):
                here = live and prior & _OFFSET_MASK == ev.offset
            else:
                here = prior.origin == where
            if prior is not None and not here and _expiry(prior) > ev.timestamp_us:
                dropped += 1
                continue
            expiry = ev.timestamp_us + window
            if not here:
                part.ids.pop(held, None)  # to the end: the dict stays in log order
                part.ids[held] = (
                    expiry << _OFFSET_BITS | ev.offset if live else Applied(where, expiry)
                )
                part.fresh += 1
                _, digests, expiries = added[current]
                digests.append(digest)
                expiries.append(expiry)
            keep.append(ev)
            parts.append(ev.partition)
            keys.append(key)
            origins.append(where)
            identities.append(str(ev.value.get("identity", "")))
            applied.append(ev.timestamp_us)
            expires.append(expiry)
        for held_part, digests, expiries in added.values():
            held_part.filter.add(digests_array(digests), np.array(expiries, np.int64))
        self._bound()
        self.dropped += dropped
        rows = pa.Table.from_arrays(
            [
                pa.array(parts, pa.uint32()),
                pa.array(keys, pa.string()),
                pa.array(origins, pa.string()),
                pa.array(identities, pa.string()),
                pa.array(applied, pa.int64()),
                pa.array(expires, pa.int64()),
            ],
            schema=APPLIED_BATCHES_SCHEMA,
        )
        return Admitted(keep, rows, dropped)

    @staticmethod
    def _prune(part: _Partition, now_us: int) -> None:
        """Forget expired ids from the front (ids are inserted in log order)."""
        ids = part.ids
        while ids:
            key = next(iter(ids))
            if _expiry(ids[key]) > now_us:
                break
            del ids[key]

    def _bound(self) -> None:
        """Forget the oldest exact ids past ``max_keys`` (a tenth more, so that this runs
        seldom), never the last step's: they are in the filter, and in the store once
        the step is written."""
        excess = self.held() - self.max_keys
        if excess <= 0:
            return
        excess += self.max_keys // 10
        for part in sorted(self._parts.values(), key=lambda p: -len(p.ids)):
            n = min(excess, len(part.ids) - part.fresh)
            if n <= 0:
                continue
            ids = part.ids
            for key in list(islice(ids, n)):
                del ids[key]
            excess -= n
            if excess <= 0:
                return
