"""Applied batch ids as a Bloom filter in time generations: memory fixed by
configuration, whatever the rate and the window.

The batch ledger (``pipeline.batches``) asks one question of it: *may* this id have
been applied within the window? A miss is certain (the id was never added, or every
generation it was added to has expired); a hit is probable and the ledger confirms it
with the store. So the filter may err only one way, and every choice below keeps it
that way: an id is never removed before its expiry, only kept longer.

An id goes into the generation of its expiry's time slice (``window / generations``
wide). A generation is dropped when its whole slice lies in the past of the log time
the fold has reached, so the ids live out their window and then cost nothing. At most
``generations + 2`` are held (a slice ahead for ids the store read back with a later
expiry, e.g. a restore's): one more would merge the oldest into the next (its bits
ORed in: those ids then live until the later slice ends); an id older than every
generation held at the bound goes into the next later one.

Sizing: ``nbytes`` is split evenly between the generations; with ``HASHES`` hash
functions a generation holding n ids in m bits answers a miss with a false hit
with probability (1 - e^(-7n/m))^7: 1e-4 at 19 bits per id, 1 % at 9.6, ~25 % at 3.
A false hit costs a store query for that fold step's hit ids, never a wrong decision;
so the filter degrades gradually as the ids of a window outgrow it (no cliff), and the
README says how to size it for a rate. Bits are set from the 128-bit digest the ledger
names an id by (double hashing over its two 64-bit halves).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: hash functions per id (optimal for ~10 bits per id; more ids per bit still work)
HASHES = 7
#: time slices per window: an id lives at most a slice longer than its window
GENERATIONS = 4

U64 = npt.NDArray[np.uint64]


def digests_array(digests: list[bytes]) -> U64:
    """16-byte digests as an (n, 2) array of their little-endian 64-bit halves."""
    if not digests:
        return np.zeros((0, 2), np.uint64)
    return np.frombuffer(b"".join(digests), dtype="<u8").astype(np.uint64).reshape(-1, 2)


class GenerationFilter:
    """Probable membership of ids until their expiry, in at most ``nbytes`` (module doc)."""

    def __init__(self, window_us: int, nbytes: int, generations: int = GENERATIONS) -> None:
        if window_us < 1 or nbytes < 1 or generations < 1:
            raise ValueError("window_us, nbytes and generations must be at least 1")
        self.slice_us = -(-window_us // generations)
        self.max_generations = generations + 2
        self.bits = max(64, nbytes // self.max_generations * 8)
        #: slice index -> bit array; a generation is allocated when first written
        self._gens: dict[int, npt.NDArray[np.uint8]] = {}

    @property
    def nbytes(self) -> int:
        """Bytes of the generations held (at most ``nbytes`` of the constructor)."""
        return sum(g.nbytes for g in self._gens.values())

    def _positions(self, digests: U64) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]:
        h1 = digests[:, 0:1]
        h2 = digests[:, 1:2] | np.uint64(1)
        idx = (h1 + np.arange(HASHES, dtype=np.uint64) * h2) % np.uint64(self.bits)
        byte = (idx >> np.uint64(3)).astype(np.intp)
        mask = (np.uint64(1) << (idx & np.uint64(7))).astype(np.uint8)
        return byte, mask

    def add(self, digests: U64, expires_us: npt.NDArray[np.int64]) -> None:
        """Remember ids until (at least) their expiry."""
        if len(digests) == 0:
            return
        byte, mask = self._positions(digests)
        slots = expires_us // self.slice_us
        for slot in np.unique(slots):
            sel = slots == slot
            gen = self._generation(int(slot))
            at, bits = byte[sel].ravel(), mask[sel].ravel()
            # a fancy OR loses bits when one byte comes twice (the last write wins);
            # those few are set again with the unbuffered ufunc.at (7x slower for all)
            gen[at] |= bits
            lost = (gen[at] & bits) == 0
            if lost.any():
                np.bitwise_or.at(gen, at[lost], bits[lost])

    def _generation(self, slot: int) -> npt.NDArray[np.uint8]:
        gen = self._gens.get(slot)
        if gen is not None:
            return gen
        if len(self._gens) >= self.max_generations:
            later = [s for s in self._gens if s > slot]
            if later:  # held longer than asked: still only a false hit at worst
                return self._gens[min(later)]
            oldest, following = sorted(self._gens)[:2]
            self._gens[following] |= self._gens.pop(oldest)
        gen = self._gens[slot] = np.zeros(self.bits // 8, np.uint8)
        return gen

    def contains(self, digests: U64) -> npt.NDArray[np.bool_]:
        """Per id: True when it may have been added and not expired, False when not."""
        hit = np.zeros(len(digests), np.bool_)
        if len(digests) == 0 or not self._gens:
            return hit
        byte, mask = self._positions(digests)
        for gen in self._gens.values():
            hit |= np.all((gen[byte] & mask) != 0, axis=1)
        return hit

    def expire(self, now_us: int) -> None:
        """Drop the generations whose every id expired by ``now_us`` (log time)."""
        for slot in [s for s in self._gens if (s + 1) * self.slice_us <= now_us]:
            del self._gens[slot]
