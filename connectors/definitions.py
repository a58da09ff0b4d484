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
from millrace.pipeline.events import dead_letter, sample, telemetry_batch
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.pipeline.telemetry_columns import iter_samples
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
            dropped = False
            for ts_us, quality, row in iter_samples(batch):
                values = {}
                for signal, value in row.items():
                    d = defs.get(signal)
                    problem = d.check(value) if d is not None else None
                    if problem is None:
                        values[signal] = value
                        continue
                    payload = {
                        "identity": batch["identity"],
                        "signal": signal,
                        "ts_us": ts_us,
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
                    dropped = True
                if values:
                    kept.append(sample(ts_us, values, quality))
            if not dropped:
                good.append((key, batch))
            elif kept:
                good.append((key, _with_rows(batch, kept)))
        if dead:
            self.rejected += len(dead)
            await self.inner.publish(DEADLETTER, dead)
        if good:
            await self.inner.publish(TELEMETRY, good)


def _with_rows(batch: Event, rows: Sequence[Event]) -> Event:
    """``batch`` carrying ``rows`` instead of its readings."""
    return telemetry_batch(
        batch["identity"],
        rows,
        received_us=batch["received_us"],
        source=batch.get("source", ""),
        ip=batch.get("ip"),
        batch_id=batch.get("batch_id"),
    )
