"""``GET /metrics``: the engine in Prometheus exposition format (``prometheus_client``).

One :class:`EngineMetrics` per app holds its own ``CollectorRegistry`` (several apps in
one process, as in the tests, never collide): two histograms observed as things happen
(API request duration by route template, method and status; runtime batch duration),
and a collector that reads the engine's figures when scraped — ``/status``'s dict
(runtime records, batches, dead letters, errors, lag; alarm runner events and errors;
connectors' states, readings and reconnects) plus callables for the alarm runner's lag
and store errors. Reading them at scrape time costs nothing between scrapes and keeps
one source for ``/status`` and ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: connector states reported as a one-hot gauge (``millrace_connector_state``)
STATES = ("running", "connecting", "reconnecting", "stopped", "error")


class EngineMetrics:
    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        *,
        connectors: Callable[[], list[dict[str, Any]]] = list,
        store_errors: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "millrace_api_request_duration_seconds",
            "API request duration by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "millrace_runtime_batch_duration_seconds",
            "Duration of one runtime batch (read, fold, write, commit)",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        #: store errors so far (replaceable: the readiness check counts them)
        self.store_errors = store_errors
        self.registry.register(_EngineCollector(status, connectors, lambda: self.store_errors()))

    def observe_batch(self, records: int, seconds: float) -> None:
        self.batch_seconds.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector(Collector):
    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        connectors: Callable[[], list[dict[str, Any]]],
        store_errors: Callable[[], int],
    ) -> None:
        self.status = status
        self.connectors = connectors
        self.store_errors = store_errors

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        st = self.status()
        rt: dict[str, Any] = st.get("runtime") or {}
        alarms: dict[str, Any] = st.get("alarms") or {}
        yield _counter(
            "millrace_ingest_published_records",
            "Records this process appended to the log",
            st.get("published", 0),
        )
        readings = sum(int(v) for k, v in (rt.get("rows") or {}).items() if k == "readings")
        yield _counter("millrace_ingest_readings", "Readings folded into projections", readings)
        yield _counter("millrace_ingest_batches", "Runtime batches applied", rt.get("batches", 0))
        yield _counter("millrace_runtime_records", "Log records folded", rt.get("records", 0))
        yield _counter(
            "millrace_deadletters", "Records dead-lettered by the runtime", rt.get("deadletters", 0)
        )
        yield _counter("millrace_runtime_errors", "Failed runtime batches", rt.get("errors", 0))
        yield _counter("millrace_store_errors", "Store errors seen by the API", self.store_errors())
        yield _gauge(
            "millrace_runtime_lag_records",
            "Records appended but not folded yet",
            st.get("lag_records", 0),
        )
        yield _gauge(
            "millrace_runtime_paused",
            "1 while an operator paused the runtime",
            1 if st.get("paused") else 0,
        )
        yield _gauge(
            "millrace_alarm_runner_lag_records",
            "Records the alarm runner has not evaluated",
            st.get("alarm_lag_records", 0),
        )
        yield _counter(
            "millrace_alarm_runner_events",
            "Events the alarm runner evaluated",
            alarms.get("events", 0),
        )
        yield from _connector_families(st.get("connectors") or self.connectors())


def _connector_families(
    connectors: list[dict[str, Any]],
) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    state = GaugeMetricFamily(
        "millrace_connector_state",
        "1 for the connector's current state",
        labels=["connector", "state"],
    )
    readings = CounterMetricFamily(
        "millrace_connector_readings", "Readings a connector published", labels=["connector"]
    )
    reconnects = CounterMetricFamily(
        "millrace_connector_reconnects", "Reconnects of a connector", labels=["connector"]
    )
    for c in connectors:
        name = str(c.get("name", ""))
        current = str(c.get("current_state", ""))
        for s in sorted({*STATES, current} - {""}):
            state.add_metric([name, s], 1.0 if s == current else 0.0)
        m = c.get("metrics") or {}
        readings.add_metric([name], float(m.get("readings", 0)))
        reconnects.add_metric([name], float(m.get("reconnects", 0)))
    yield state
    yield readings
    yield reconnects


def _counter(name: str, doc: str, value: Any) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(value or 0))


def _gauge(name: str, doc: str, value: Any) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value or 0))


class RequestTimer:
    """ASGI middleware observing every HTTP request's duration under its route
    template (``/api/v1/identities/{identity}``; unmatched paths: ``unmatched``, so a
    scanner cannot grow the label set)."""

    def __init__(self, app: ASGIApp, metrics: EngineMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = str(getattr(route, "path", "")) or "unmatched"
            self.metrics.request_seconds.labels(
                template, str(scope.get("method", "")), str(status[0])
            ).observe(time.perf_counter() - started)
