"""The connector port.

A connector turns a device protocol into events.  Lifecycle (as telegraf inputs):
the constructor stores config and does no I/O; :meth:`Connector.init` validates;
:meth:`Connector.start` opens connections and begins publishing through the
:class:`EventPublisher` it is given; :meth:`Connector.stop` closes everything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

Event = Mapping[str, Any]


class EventPublisher(ABC):
    """Port: where connectors (and the API) put events.  The runtime's implementation
    encodes them with the topic's Avro schema and appends them to the event log."""

    @abstractmethod
    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        """Append ``(key, event)`` pairs to ``topic`` as one batch; return when the
        log acknowledged them."""


class MemoryEventPublisher(EventPublisher):
    """Test double: keeps what was published, per topic, in order."""

    def __init__(self) -> None:
        self.published: dict[str, list[tuple[str, Event]]] = {}

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        self.published.setdefault(topic, []).extend(events)


class Connector(ABC):
    """Port: a protocol connector."""

    name: str = "connector"

    def init(self) -> None:  # noqa: B027 - optional hook
        """Validate configuration; raise ConfigError. No I/O."""

    @abstractmethod
    async def start(self, publisher: EventPublisher) -> None:
        """Open connections and start producing events (returns once started)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop producing and close connections."""
