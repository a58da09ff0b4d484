"""Concurrency slots: at most ``per_key`` at once per caller and ``total`` in all.

Used on the event loop only (no lock needed). A slot is taken without waiting — the
caller answers 429 when none is free — and given back when the work it guarded has
really finished, which for work on a thread may be after the request was cancelled.
"""

from __future__ import annotations


class Slots:
    """Counting slots per key and in total."""

    def __init__(self, total: int, per_key: int) -> None:
        if total < 1 or per_key < 1:
            raise ValueError("slots: total and per_key must be at least 1")
        self.total = total
        self.per_key = per_key
        self._held: dict[str, int] = {}
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def try_acquire(self, key: str) -> bool:
        """Take a slot for ``key`` if one is free for it; False if not."""
        if self._in_use >= self.total or self._held.get(key, 0) >= self.per_key:
            return False
        self._held[key] = self._held.get(key, 0) + 1
        self._in_use += 1
        return True

    def release(self, key: str) -> None:
        n = self._held.get(key, 0)
        if n <= 0:
            raise RuntimeError(f"slots: {key!r} holds no slot")
        if n == 1:
            del self._held[key]
        else:
            self._held[key] = n - 1
        self._in_use -= 1
