"""``connectors.definitions``: the publisher that checks connector telemetry against the
resource definitions (the deployments' wiring: tests/cli/test_definition_check.py)."""

from __future__ import annotations

from millrace.connectors.definitions import DefinitionCheckingPublisher
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.events import sample, status_event, telemetry_batch
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.pipeline.topics import DEADLETTER, STATUS, TELEMETRY

DEFS = {"mode": ResourceDefinition(format="string", allowed=["auto", "manual"])}


def _checking(
    defs: dict[str, ResourceDefinition],
) -> tuple[DefinitionCheckingPublisher, MemoryEventPublisher]:
    inner = MemoryEventPublisher()

    async def load() -> dict[str, ResourceDefinition]:
        return defs

    return DefinitionCheckingPublisher(inner, load), inner


async def test_a_batch_with_only_bad_values_publishes_no_telemetry() -> None:
    pub, inner = _checking(DEFS)
    batch = telemetry_batch("d", [sample(1, {"mode": "x"}), sample(2, {"mode": "y"})], source="s")
    await pub.publish(TELEMETRY, [("d", batch)])
    assert TELEMETRY not in inner.published
    reasons = [e["reason"] for _, e in inner.published[DEADLETTER]]
    assert len(reasons) == 2 and all(r.startswith("mode: ") for r in reasons)
    assert pub.rejected == 2


async def test_without_definitions_or_off_telemetry_nothing_is_checked() -> None:
    batch = telemetry_batch("d", [sample(1, {"mode": "x"})], source="s")
    pub, inner = _checking({})
    await pub.publish(TELEMETRY, [("d", batch)])
    assert inner.published == {TELEMETRY: [("d", batch)]}
    pub, inner = _checking(DEFS)
    status = status_event(
        "r",
        service_id="svc",
        resource_type="connector",
        desired_state="running",
        current_state="running",
        info="mode: x",
    )
    await pub.publish(STATUS, [("r", status)])
    assert inner.published == {STATUS: [("r", status)]} and pub.rejected == 0
