"""The connection's configuration as routes: which endpoint or payload mapping each topic
filter feeds (a :class:`TopicRouter`), the QoS of each subscription, the endpoints a
subscription serves (their status follows its SUBACK) and the writable templated
endpoints (identity ``{1}``) commands may address. Configuration the models could not
reject (built in code, not validated) is collected in ``problems``; the connector
refuses to connect with any.
"""

from __future__ import annotations

from dataclasses import dataclass

from millrace.connectors._common.models import EndpointBase, MappingConfig

from .config import MqttEndpoint
from .jsonpath import JsonPathError, compile_path
from .payload import MappingSpec, ValueSpec
from .topics import TemplatePattern, TopicRouter, filter_problem, has_level_refs


@dataclass
class EndpointRoute:
    endpoint: MqttEndpoint
    spec: ValueSpec
    templated: bool
    pattern: TemplatePattern | None  # writable templated endpoints: which commands fit
    label: str


@dataclass
class MappingRoute:
    mapping: MappingConfig
    spec: MappingSpec
    label: str


Route = EndpointRoute | MappingRoute


class Routes:
    """Routes, subscriptions and writable templates of one connection (module doc)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.router: TopicRouter[Route] = TopicRouter()
        self.subscriptions: dict[str, int] = {}  # topic filter -> QoS
        self.filter_endpoints: dict[str, list[MqttEndpoint]] = {}
        self.writable_templates: list[EndpointRoute] = []

    def add_endpoint(self, ep: EndpointBase) -> None:
        if not isinstance(ep, MqttEndpoint):
            self.problems.append(f"endpoint {ep.identity}/{ep.signal} is not an mqtt endpoint")
            return
        label = f"endpoint {ep.identity}/{ep.signal} (topic {ep.topic})"
        spec = ValueSpec(
            value_path=compile_path(ep.value_path) if ep.value_path is not None else None,
            data_type=ep.data_type,
            timestamp_path=(
                compile_path(ep.timestamp_path) if ep.timestamp_path is not None else None
            ),
            timestamp_format=ep.timestamp_format,
        )
        templated = has_level_refs(ep.identity) or has_level_refs(ep.signal)
        pattern = TemplatePattern.of(ep.identity, ep.signal, ep.topic) if templated else None
        route = EndpointRoute(ep, spec, templated, pattern, label)
        self.router.add(ep.topic, route)
        self._subscribe_to(ep.topic, ep.qos)
        self.filter_endpoints.setdefault(ep.topic, []).append(ep)
        if templated and ep.writable:
            self.writable_templates.append(route)

    def add_mapping(self, i: int, m: MappingConfig) -> None:
        assert m.topic is not None
        label = f"mapping {i} (topic {m.topic})"
        problem = filter_problem(m.topic)
        if problem is not None:
            self.problems.append(f"{label}: {problem}")
            return
        try:
            spec = MappingSpec(
                values={signal: compile_path(p) for signal, p in m.values.items()},
                identity_path=compile_path(m.identity_path) if m.identity_path else None,
                timestamp_path=compile_path(m.timestamp_path) if m.timestamp_path else None,
                timestamp_format=m.timestamp_format,
            )
        except JsonPathError as exc:
            self.problems.append(f"{label}: {exc}")
            return
        if not spec.values:
            self.problems.append(f"{label}: no values to map")
            return
        self.router.add(m.topic, MappingRoute(m, spec, label))
        self._subscribe_to(m.topic, m.qos)

    def _subscribe_to(self, topic_filter: str, qos: int) -> None:
        self.subscriptions[topic_filter] = max(qos, self.subscriptions.get(topic_filter, 0))

    def writable_template(self, identity: str, signal: str) -> MqttEndpoint | None:
        for route in self.writable_templates:
            assert route.pattern is not None
            if route.pattern.matches(identity, signal):
                return route.endpoint
        return None
