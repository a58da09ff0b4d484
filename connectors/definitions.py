"""Resource definitions at the connector edge.

Readings a connector brings that break their resource's definition (wrong format, a
value outside ``allowed``) are not published as telemetry: each goes to
``deadletter`` with the resource and the reason, and the rest of the batch goes on.
This wraps the publisher the connectors are given, so every protocol gets it. The
definitions come through ``pipeline.cache.LastGoodCache`` (the composition root reads
them with ``projections.definitions``: connectors do not import projections).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

from millrace.pipeline.connector import Event, EventPublisher
from millrace.pipeline.events import dead_letter
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.pipeline.topics import DEADLETTER, TELEMETRY

Definitions = Callable[[], Awaitable[dict[str, ResourceDefinition]]]


class DefinitionCheckingPublisher(EventPublisher):
    """Publishes through ``inner``; telemetry is checked against ``definitions``."""

    def __init__(self, inner: EventPublisher, definitions: Definitions) -> None:
        self.inner = inner
        self.definitions = definitions
        self.rejected = 0

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        if topic != TELEMETRY or not events:
            await self.inner.publish(topic, events)
            return
        defs = await self.definitions()
        if not defs:
            await self.inner.publish(topic, events)
            return
        good: list[tuple[str, Event]] = []
        dead: list[tuple[str, Event]] = []
        for key, batch in events:
            kept = []
            for sample in batch["samples"]:
                values = {}
                for signal, value in sample["values"].items():
                    d = defs.get(signal)
                    problem = d.check(value) if d is not None else None
                    if problem is None:
                        values[signal] = value
                        continue
                    payload = {
                        "identity": batch["identity"],
                        "signal": signal,
                        "ts_us": sample["ts_us"],
                        "value": value,
                    }
                    dead.append(
                        (
                            key,
                            dead_letter(
                                source_topic=TELEMETRY,
                                key=key.encode(),
                                payload=json.dumps(payload, default=str).encode(),
                                reason=f"{signal}: {problem}",
                                error_type="DefinitionViolation",
                                stage=f"connector:{batch.get('source', '')}",
                                ts_us=int(batch.get("received_us", 0)),
                            ),
                        )
                    )
                if values:
                    kept.append({**sample, "values": values})
            if kept:
                good.append((key, {**batch, "samples": kept}))
        if dead:
            self.rejected += len(dead)
            await self.inner.publish(DEADLETTER, dead)
        if good:
            await self.inner.publish(TELEMETRY, good)
