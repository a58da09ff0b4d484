"""The event builders (pipeline/events.py): faithful to the schemas in schemas/, the
schemas' defaults, and the only place in the source tree that writes an event's dict."""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.pipeline import events
from millrace.pipeline.clock import now_us
from millrace.pipeline.topics import (
    ALARMS,
    AUDIT,
    COMMANDS,
    DEADLETTER,
    IDENTITY,
    STATUS,
    TASKS,
    TELEMETRY,
    TOPIC_SCHEMAS,
)
from millrace.schemas import SCHEMA_DIR
from tests.pipeline.test_codec import CODEC, assert_same, strategy

ROOT = Path(__file__).resolve().parents[2]
#: the packages whose producers must build events through pipeline/events.py
SOURCE_DIRS = ("api", "bench", "connectors", "pipeline", "projections")
HOME = Path("pipeline/events.py")
#: dict literals shaped like an event that are not events: (file, record) -> why
NOT_EVENTS = {
    ("projections/queries.py", "DeadLetter"): "dead letters read back for GET /deadletters",
    ("pipeline/archive/fastread.py", "TelemetryBatch"): "an archived record decoded (the "
    "datum fastavro would return, compared with it by a hypothesis test), not produced",
}

#: topic -> its builder
BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    TELEMETRY: events.telemetry_batch,
    IDENTITY: events.identity_event,
    COMMANDS: events.command_event,
    STATUS: events.status_event,
    ALARMS: events.alarm_event,
    AUDIT: events.audit_event,
    DEADLETTER: events.dead_letter,
    TASKS: events.task_event,
}
TIMES = {"ts_us", "received_us"}  # defaulted to the clock
IDS = {"event_id", "command_id", "audit_id"}  # defaulted to a random id


def schemas() -> dict[str, dict[str, Any]]:
    """Full record name -> its current schema, as the files say."""
    out = {}
    for path in SCHEMA_DIR.glob("*.avsc"):
        s = json.loads(path.read_text())
        out[f"{s['namespace']}.{s['name']}"] = s
    return out


SCHEMAS = schemas()


def schema_of(topic: str) -> dict[str, Any]:
    return SCHEMAS[TOPIC_SCHEMAS[topic]]


def field_of(param: str) -> str:
    """The schema field a builder parameter sets (``type_`` sets ``type``)."""
    return param.rstrip("_")


def params(topic: str) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(BUILDERS[topic]).parameters)


def call(topic: str, event: dict[str, Any]) -> dict[str, Any]:
    """The builder of ``topic`` given every field of ``event``, by keyword."""
    return BUILDERS[topic](**{p: event[field_of(p)] for p in params(topic)})


def required_args(topic: str) -> dict[str, Any]:
    """Some value for each parameter without a default, by the field's type."""
    samples = {"string": "x", "int": 1, "long": 2, "bytes": b"p", "boolean": True}
    out: dict[str, Any] = {}
    types = {f["name"]: f["type"] for f in schema_of(topic)["fields"]}
    for name, p in params(topic).items():
        if p.default is inspect.Parameter.empty:
            t = types[field_of(name)]
            if isinstance(t, dict) and t["type"] == "enum":
                out[name] = t["symbols"][0]
            elif isinstance(t, dict) and t["type"] == "array":
                out[name] = []
            elif isinstance(t, list):  # a union without null: its first member
                out[name] = samples[t[0]]
            else:
                out[name] = samples[t]
    return out


# -- the builders against the schema files


@pytest.mark.parametrize("topic", sorted(BUILDERS))
def test_builder_covers_its_record(topic: str) -> None:
    """Every parameter sets a field, every field has a parameter, and the output carries
    exactly the record's fields."""
    fields = {f["name"] for f in schema_of(topic)["fields"]}
    assert {field_of(p) for p in params(topic)} == fields
    assert set(BUILDERS[topic](**required_args(topic))) == fields


@pytest.mark.parametrize("topic", sorted(BUILDERS))
def test_defaults_are_the_schemas(topic: str) -> None:
    """A field left out takes the default written in the .avsc file; a left-out time
    is the clock's, a left-out id a fresh random one; a field without a schema default
    has no builder default but a time or an id."""
    before = now_us()
    built = BUILDERS[topic](**required_args(topic))
    again = BUILDERS[topic](**required_args(topic))
    after = now_us()
    by_param = params(topic)
    for f in schema_of(topic)["fields"]:
        name = f["name"]
        param = by_param.get(name) or by_param[name + "_"]
        if "default" in f:
            assert_same(built[name], f["default"])
            assert param.default in (f["default"], None), name  # None: a fresh {} or []
        elif name in TIMES:
            assert before <= built[name] <= after
        elif name in IDS:
            assert len(built[name]) == 32 and built[name] != again[name]
            int(built[name], 16)
        else:
            assert param.default is inspect.Parameter.empty, f"{name} has no schema default"


def test_sample_defaults_are_the_schemas() -> None:
    (samples,) = [f for f in schema_of(TELEMETRY)["fields"] if f["name"] == "samples"]
    fields = samples["type"]["items"]["fields"]
    built = events.sample(5, {"a": 1.0})
    assert set(built) == {f["name"] for f in fields}
    for f in fields:
        if "default" in f:
            assert built[f["name"]] == f["default"]


def test_batch_id_only_when_the_schema_has_it() -> None:
    has_it = "batch_id" in {f["name"] for f in schema_of(TELEMETRY)["fields"]}
    built = events.telemetry_batch("d", [], received_us=1, batch_id="b-1")
    assert built.get("batch_id") == ("b-1" if has_it else None)
    assert ("batch_id" in built) is has_it
    assert_same(CODEC.decode(TELEMETRY, CODEC.encode(TELEMETRY, built)), built)


def test_fields_are_copied_not_shared() -> None:
    """A producer that merges into an event's map (the identity watch groups states)
    does not change the caller's."""
    state = {"a": "1"}
    ev = events.identity_event("d", "STATE_REPORTED", 1, state=state)
    ev["state"]["b"] = "2"
    assert state == {"a": "1"}


@pytest.mark.parametrize("topic", sorted(BUILDERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_roundtrip(topic: str, data: st.DataObject) -> None:
    """Given every field of a valid event, the builder returns that event, and the
    codec decodes what it encodes back to it."""
    event = data.draw(strategy(fastavro.parse_schema(schema_of(topic))))
    if topic == TELEMETRY:
        event["samples"] = []  # the builder turns samples into columns (test below)
    built = call(topic, event)
    assert_same(built, event)
    assert_same(CODEC.decode(topic, CODEC.encode(topic, built)), built)


# -- nobody else writes an event's dict


def _keys(node: ast.AST) -> set[str] | None:
    """The keys of a dict literal or ``dict(k=...)`` call, when all are known names."""
    if isinstance(node, ast.Dict):
        if node.keys and all(
            isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys
        ):
            return {k.value for k in node.keys if isinstance(k, ast.Constant)}
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
        and node.keywords
        and all(k.arg for k in node.keywords)
    ):
        return {str(k.arg) for k in node.keywords}
    return None


def event_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, record) of each dict in ``tree`` shaped like an event of a built record:
    it has the record's fields without a default and no key the record lacks."""
    records = [schema_of(topic) for topic in BUILDERS]
    shapes = [
        (
            s["name"],
            {f["name"] for f in s["fields"] if "default" not in f},
            {f["name"] for f in s["fields"]},
        )
        for s in records
    ]
    for node in ast.walk(tree):
        keys = _keys(node)
        if keys:
            for name, required, fields in shapes:
                if required <= keys <= fields:
                    yield getattr(node, "lineno", 0), name


def test_the_scan_finds_an_event_literal() -> None:
    code = (
        "a = {'identity': i, 'received_us': 1, 'samples': []}\n"
        "b = dict(command_id='c', identity='i', resource='r', value=1, ts_us=1)\n"
        "c = {'identity': i, 'received_us': 1, 'samples': [], 'version': 3}\n"  # a row
        "d = {**a, 'samples': []}\n"
    )
    assert sorted(event_literals(ast.parse(code))) == [(1, "TelemetryBatch"), (2, "Command")]


def test_every_producer_uses_the_builders() -> None:
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel == HOME:
                continue
            for line, record in event_literals(ast.parse(path.read_text(), str(rel))):
                if (rel.as_posix(), record) not in NOT_EVENTS:
                    found.append(f"{rel}:{line}: a {record} built by hand")
    assert found == [], "build events with millrace.pipeline.events:\n" + "\n".join(found)


def test_the_builders_module_is_where_the_scan_looks() -> None:
    """The scan would pass vacuously if the builders' module moved."""
    tree = ast.parse((ROOT / HOME).read_text())
    assert {r for _, r in event_literals(tree)} == {schema_of(t)["name"] for t in BUILDERS}
