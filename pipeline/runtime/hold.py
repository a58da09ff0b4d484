"""Every process-role worker held at one position, through the log.

What a replay in the distributed deployment needs before it swaps tables: no worker
folds, and none has a write in flight, so the sink's committed progress *is* the live
fold's position. It is the pipeline pause (``pipeline.runtime.control``), answered:

1. the holder (:class:`PauseHold`) appends a pause AuditEvent (target ``pipeline`` /
   ``runtime``, actor the holder, e.g. ``replay:<task id>``);
2. every worker's :class:`~millrace.pipeline.runtime.control.PauseFollower` closes its
   gate and, once the take in flight has ended, appends a ``held`` AuditEvent
   (:func:`held_event`: the pause's audit id, the worker, the partitions it owns);
3. the holder waits until the answers to its pauses cover every partition of the
   processors' topics. A partition's owner has then answered; a rebalance moves
   partitions between workers that all stand still. The pause is appended again every
   ``repeat_s`` until covered: a worker that got partitions after it answered answers
   the next one;
4. when the work is done (or failed) the holder appends resume.

A worker started during the hold starts paused (its follower begins with the last
pause/resume on the log) and answers too; still, the replay checks the progress did
not move before its swap (``projections.replay_live``). A hold ends with resume: an
operator's pause in force at that moment is lifted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.errors import DecodeError, MillraceError
from millrace.pipeline.events import audit_event
from millrace.pipeline.log.base import EventLog, TopicPartition
from millrace.pipeline.topics import AUDIT

log = logging.getLogger("millrace.runtime.hold")

#: the action of a worker's answer to a pause
HELD = "held"
TARGET = ("pipeline", "runtime")


class HoldError(MillraceError):
    """The workers did not all answer the pause in time (names the partitions)."""


def control_event(action: str, actor: str) -> dict[str, Any]:
    """A pause or resume AuditEvent appended by a stage (not an API user)."""
    return audit_event(
        actor=actor, actor_role="system", action=action, target_type=TARGET[0], target_id=TARGET[1]
    )


def held_event(
    pause: dict[str, Any], worker: str, owned: Iterable[TopicPartition]
) -> dict[str, Any]:
    """A worker's answer to ``pause``: it stands still, owning ``owned``."""
    after = {
        "pause": str(pause.get("audit_id")),
        "worker": worker,
        "partitions": sorted([tp.topic, tp.partition] for tp in owned),
    }
    return audit_event(
        actor=worker,
        actor_role="system",
        action=HELD,
        target_type=TARGET[0],
        target_id=TARGET[1],
        after=json.dumps(after),
    )


def answer_of(event: dict[str, Any]) -> tuple[str, set[TopicPartition]] | None:
    """(the pause's audit id, the partitions) of a ``held`` event, else None."""
    if event.get("action") != HELD or event.get("target_type") != TARGET[0]:
        return None
    try:
        after = json.loads(str(event.get("after") or "{}"))
        owned = {TopicPartition(str(t), int(p)) for t, p in after["partitions"]}
        return str(after["pause"]), owned
    except (ValueError, KeyError, TypeError):
        return None


class PauseHold:
    """Holds every worker (see the module doc) for the length of :meth:`held`."""

    def __init__(
        self,
        event_log: EventLog,
        publisher: EventPublisher,
        needed: Callable[[], set[TopicPartition]],
        *,
        codec: AvroCodec | None = None,
        repeat_s: float = 3.0,
        timeout_s: float = 120.0,
        poll_s: float = 0.2,
    ) -> None:
        self.log = event_log
        self.publisher = publisher
        self.needed = needed
        self.codec = codec or default_codec()
        self.repeat_s = repeat_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    async def _append(self, action: str, actor: str) -> str:
        event = control_event(action, actor)
        await self.publisher.publish(AUDIT, [(TARGET[1], event)])
        return str(event["audit_id"])

    async def _answers(self, positions: dict[int, int], pauses: set[str]) -> set[TopicPartition]:
        """The partitions answered to ``pauses`` since ``positions`` (moved on)."""
        found: set[TopicPartition] = set()
        for p, pos in positions.items():
            while records := await self.log.read(AUDIT, p, pos, 1000):
                for rec in records:
                    try:
                        answer = answer_of(self.codec.decode(AUDIT, rec.value))
                    except DecodeError:
                        continue
                    if answer is not None and answer[0] in pauses:
                        found |= answer[1]
                pos = positions[p] = records[-1].offset + 1
        return found

    async def release(self, actor: str) -> None:
        """Resume as ``actor`` (a run killed while holding left its pause in force)."""
        await self._append("resume", actor)

    @contextlib.asynccontextmanager
    async def held(self, actor: str) -> AsyncIterator[None]:
        """Pause as ``actor`` until every partition is answered; resume on leaving."""
        positions = {
            p: (await self.log.offsets(AUDIT, p))[1] for p in range(self.log.partitions(AUDIT))
        }
        pauses: set[str] = set()
        covered: set[TopicPartition] = set()
        deadline = time.monotonic() + self.timeout_s
        again = 0.0
        try:
            while True:
                now = time.monotonic()
                if now >= again:
                    pauses.add(await self._append("pause", actor))
                    again = now + self.repeat_s
                covered |= await self._answers(positions, pauses)
                missing = self.needed() - covered
                if not missing:
                    break
                if now > deadline:
                    names = ", ".join(sorted(f"{tp.topic}/{tp.partition}" for tp in missing)[:10])
                    raise HoldError(f"no worker answered the pause for {names}")
                await asyncio.sleep(self.poll_s)
            log.info("%s: every worker holds (%d partitions)", actor, len(covered))
            yield
        finally:
            await self.release(actor)
