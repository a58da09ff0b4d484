"""LeaderElection: the port a singleton stage asks "am I the one?", and its memory double.

A election is joined with ``start()`` and left with ``close()``. Between them
``is_leader()`` says whether this member may run the singleton *now*; it turns false as
soon as the member learns it lost (or may have lost) leadership, and ``changed()``
returns whenever the answer may have changed, so a waiter never polls.

Semantics every implementation keeps:

* at most one member of a group answers ``True`` at any time, except for a bounded
  window after a member was cut off (its process frozen, its network gone) during which
  it has not yet noticed; the implementation documents that bound;
* a member that leaves (``close``) or dies hands leadership to another member, if any;
* ``is_leader()`` is cheap (no I/O), so callers may ask it as often as they like.

:class:`MemoryLeaderGroup` is the double: members of one group in one process, the
first live one leads; tests revoke, cut off and kill members at will.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable


class LeaderElection(ABC):
    """Port: membership in a group that elects one leader (see the module docstring)."""

    @abstractmethod
    async def start(self) -> None:
        """Join the group (may return before leadership is decided)."""

    @abstractmethod
    async def close(self) -> None:
        """Leave the group, handing leadership on; idempotent."""

    @abstractmethod
    def is_leader(self) -> bool:
        """Whether this member leads now (no I/O)."""

    @abstractmethod
    def changed(self) -> Awaitable[object]:
        """An awaitable that completes when ``is_leader()`` may have changed since this
        call. It is armed by the call, not by the first ``await`` of it: a change in
        between (other tasks ran first, as when it is wrapped in a task) still
        completes it, so ``if not is_leader(): await changed()`` never misses one."""


class Leadership:
    """The flag an election keeps and the wake-up of its waiters (shared helper)."""

    def __init__(self) -> None:
        self.leader = False
        self._event = asyncio.Event()

    def set(self, leader: bool) -> None:
        if leader != self.leader:
            self.leader = leader
            self.notify()

    def notify(self) -> None:
        # wake every current waiter, then arm a fresh event for the next ones
        self._event.set()
        self._event = asyncio.Event()

    def changed(self) -> Awaitable[object]:
        """Armed now: bound to the current event, which the next change sets."""
        event = self._event
        return event.wait()


class MemoryLeaderGroup:
    """An in-process group: members join in order; the first started, live, not
    cut-off member leads (a test double for :class:`LeaderElection`)."""

    def __init__(self) -> None:
        self.members: list[MemoryLeaderElection] = []
        #: how many times leadership moved to a member (for assertions)
        self.elections = 0

    def member(self, name: str = "") -> MemoryLeaderElection:
        m = MemoryLeaderElection(self, name or f"m{len(self.members)}")
        self.members.append(m)
        return m

    @property
    def leader(self) -> MemoryLeaderElection | None:
        for m in self.members:
            if m.state.leader:
                return m
        return None

    def rebalance(self) -> None:
        """Hand leadership to the first eligible member (a revoke first, as Kafka does:
        the old leader hears it lost before the new one hears it won)."""
        eligible = [m for m in self.members if m.joined and not m.cut_off]
        new = eligible[0] if eligible else None
        for m in self.members:
            if m is not new and not m.cut_off:
                m.state.set(False)
        if new is not None and not new.state.leader:
            new.state.set(True)
            self.elections += 1

    async def revoke(self, pause_s: float = 0.01) -> None:
        """A rebalance that takes leadership from everyone for ``pause_s`` (as a join of
        a new member does), then elects again."""
        for m in self.members:
            if not m.cut_off:
                m.state.set(False)
        await asyncio.sleep(pause_s)
        self.rebalance()

    def cut_off(self, member: MemoryLeaderElection) -> None:
        """``member`` stops hearing from the group (frozen, partitioned): the group
        elects another at once, while ``member`` still believes it leads until
        :meth:`MemoryLeaderElection.notice` (its lease running out)."""
        member.cut_off = True
        self.rebalance()

    def restore(self, member: MemoryLeaderElection) -> None:
        member.cut_off = False
        self.rebalance()


class MemoryLeaderElection(LeaderElection):
    """A member of a :class:`MemoryLeaderGroup`."""

    def __init__(self, group: MemoryLeaderGroup, name: str) -> None:
        self.group = group
        self.name = name
        self.joined = False
        self.cut_off = False
        self.state = Leadership()
        self.starts = 0
        self.closes = 0

    async def start(self) -> None:
        self.starts += 1
        self.joined = True
        self.group.rebalance()

    async def close(self) -> None:
        self.closes += 1
        self.joined = False
        self.state.set(False)
        self.group.rebalance()

    def notice(self) -> None:
        """A cut-off member's lease ran out: it stops believing it leads."""
        self.state.set(False)

    def is_leader(self) -> bool:
        return self.state.leader

    def changed(self) -> Awaitable[object]:
        return self.state.changed()
