"""The event contract (schemas/) and its codec (pipeline/codec.py)."""

from __future__ import annotations

import io
import json
import math
import struct
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.pipeline.codec import (
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MAGIC,
    AvroCodec,
    default_codec,
    fingerprint,
)
from millrace.pipeline.errors import DecodeError, SchemaError
from millrace.pipeline.telemetry_columns import COLUMN_FIELDS
from millrace.pipeline.topics import ALL_TOPICS, TOPIC_SCHEMAS
from millrace.schemas import HISTORY_DIR, SCHEMA_DIR

CODEC = default_codec()
CURRENT = {
    (s := json.loads(p.read_text()))["namespace"] + "." + s["name"]: s
    for p in SCHEMA_DIR.glob("*.avsc")
}
HISTORY = sorted(HISTORY_DIR.glob("*.avsc"))
TOPIC_OF = {record: topic for topic, record in TOPIC_SCHEMAS.items()}

# Change a schema only after copying its old file to schemas/history/<Name>.v<N>.avsc:
# events already on the log carry the old fingerprint and must still decode.
#: the column-wise fields of TelemetryBatch v5, empty (a row-wise batch's)
NO_COLUMNS: dict[str, list[Any]] = {f: [] for f in COLUMN_FIELDS}
PINNED_FINGERPRINTS = {
    "io.millrace.events.TelemetryBatch": "72944428ced85a9c",
    "io.millrace.events.IdentityEvent": "cf12afc42f39ec1b",
    "io.millrace.events.Command": "e6fe52c99ae6d073",
    "io.millrace.events.ResourceStatus": "ecf7cd8a0d6a12ab",
    "io.millrace.events.AlarmEvent": "93cebc62777ed7d2",
    "io.millrace.events.AuditEvent": "8e17cf34ebb2376c",
    "io.millrace.events.DeadLetter": "a943e867182110e7",
}


# -- helpers


def strategy(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Valid Python values for a schema parsed by fastavro (full names for named types)."""
    named = {} if named is None else named
    if isinstance(schema, list):
        return st.one_of([strategy(s, named) for s in schema])
    if isinstance(schema, str):
        primitive = {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "double": st.floats(allow_nan=False),
            "string": st.text(max_size=12),
            "bytes": st.binary(max_size=12),
        }
        return primitive[schema] if schema in primitive else named[schema]
    kind = schema["type"]
    if kind == "record":
        fields = {f["name"]: strategy(f["type"], named) for f in schema["fields"]}
        named[schema["name"]] = result = st.fixed_dictionaries(fields)
    elif kind == "enum":
        named[schema["name"]] = result = st.sampled_from(schema["symbols"])
    elif kind == "array":
        result = st.lists(strategy(schema["items"], named), max_size=4)
    elif kind == "map":
        result = st.dictionaries(st.text(max_size=6), strategy(schema["values"], named), max_size=4)
    else:
        result = strategy(kind, named)
    return result


def event_of(topic: str) -> st.SearchStrategy[dict[str, Any]]:
    return strategy(fastavro.parse_schema(CURRENT[TOPIC_SCHEMAS[topic]]))


def assert_same(got: Any, expected: Any, path: str = "") -> None:
    """Equal values of exactly the same types (True != 1 != 1.0 here), NaN equal to NaN."""
    assert type(got) is type(expected), f"{path}: {got!r} is not {expected!r}"
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), path
        for k in expected:
            assert_same(got[k], expected[k], f"{path}.{k}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same(g, e, f"{path}[{i}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got), path
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"


def fastavro_bytes(schema: dict[str, Any], event: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), event)
    return buf.getvalue()


def batch(**values: Any) -> dict[str, Any]:
    return {
        "identity": "plant/line1/press4",
        "source": "opcua:plc1",
        "received_us": 1_700_000_000_000_000,
        "samples": [{"ts_us": 1_700_000_000_000_001, "values": values, "quality": 0}],
        "ip": "192.0.2.7",
        "batch_id": "http:0123456789abcdef",
        **NO_COLUMNS,
    }


def rabin64(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification writes it, independent of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


# -- the contract


def test_every_topic_has_a_schema() -> None:
    assert set(TOPIC_SCHEMAS.values()) <= set(CURRENT)
    for topic in ALL_TOPICS:
        assert CODEC.encode_many(topic, []) == []  # raises for a topic the codec lacks


def test_topic_without_a_schema_is_refused() -> None:
    with pytest.raises(SchemaError, match=r"no schema for record io\.millrace\.events\.Nope"):
        AvroCodec(CURRENT.values(), topics={"nope": "io.millrace.events.Nope"})


@pytest.mark.parametrize("record", sorted(CURRENT))
def test_schema_follows_the_conventions(record: str) -> None:
    schema = CURRENT[record]
    assert schema["namespace"] == "io.millrace.events"
    assert schema.get("doc")
    text = json.dumps(schema)
    assert "logicalType" not in text, "times are plain long microseconds"

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n)
        elif isinstance(node, dict):
            if node.get("type") == "enum":
                assert node.get("default") in node["symbols"], node["name"]
            for field in node.get("fields", []):
                assert field.get("doc"), f"{node['name']}.{field['name']} has no doc"
                walk(field["type"])
            walk(node.get("items"))
            walk(node.get("values"))

    walk(schema)


@pytest.mark.parametrize("record", sorted(PINNED_FINGERPRINTS))
def test_current_fingerprints_are_pinned(record: str) -> None:
    assert fingerprint(CURRENT[record]).hex() == PINNED_FINGERPRINTS[record], (
        f"{record} changed: copy its previous file to schemas/history/ as "
        "<Name>.v<N>.avsc, keep the change backward compatible, then update this pin"
    )


def test_fingerprint_is_the_little_endian_crc64_avro_of_the_canonical_form() -> None:
    assert fingerprint("int").hex() == "8f5c393f1ad57572"  # the spec's test vector
    for schema in CURRENT.values():
        canonical = fastavro.schema.to_parsing_canonical_form(schema)
        assert fingerprint(schema) == struct.pack("<Q", rabin64(canonical.encode()))


def test_single_object_header() -> None:
    data = CODEC.encode("telemetry", batch(t=1.0))
    assert data[:2] == SINGLE_OBJECT_MAGIC == b"\xc3\x01"
    assert data[2:10] == fingerprint(CURRENT["io.millrace.events.TelemetryBatch"])


# -- round trips


@pytest.mark.parametrize("topic", ALL_TOPICS)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_every_schema(topic: str, data: st.DataObject) -> None:
    event = data.draw(event_of(topic))
    encoded = CODEC.encode(topic, event)
    assert encoded[10:] == fastavro_bytes(CURRENT[TOPIC_SCHEMAS[topic]], event)
    assert_same(CODEC.decode(topic, encoded), event)
    schema_id = 100 + ALL_TOPICS.index(topic)  # registry ids are global: one per schema
    confluent = CODEC.encode_confluent(topic, event, schema_id)
    assert confluent[:5] == CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
    lookup = {schema_id: CURRENT[TOPIC_SCHEMAS[topic]]}.__getitem__
    assert_same(CODEC.decode(topic, confluent, schema_lookup=lookup), event)


def test_telemetry_values_keep_their_python_types() -> None:
    values = {
        "on": True,
        "off": False,
        "zero": 0,
        "one": 1,
        "one_f": 1.0,
        "min": -(2**63),
        "max": 2**63 - 1,
        "pi": 3.14,
        "inf": float("-inf"),
        "nan": float("nan"),
        "text": "ünïcødé ✓ 日本",
        "empty": "",
    }
    event = batch(**values)
    assert_same(CODEC.decode("telemetry", CODEC.encode("telemetry", event)), event)


def test_ints_beyond_64_bits_become_doubles_as_in_fastavro() -> None:
    decoded = CODEC.decode("telemetry", CODEC.encode("telemetry", batch(v=2**64)))
    assert_same(decoded["samples"][0]["values"], {"v": float(2**64)})


def test_empty_collections_and_defaults() -> None:
    event = {"identity": "x", "received_us": 0, "samples": [{"ts_us": 0, "values": {}}]}
    decoded = CODEC.decode("telemetry", CODEC.encode("telemetry", event))
    assert decoded == {
        **event,
        "source": "",
        "samples": [{"ts_us": 0, "values": {}, "quality": 0}],
        "ip": None,
        "batch_id": None,
        **NO_COLUMNS,
    }
    status = {
        "resource_id": "r",
        "service_id": "s",
        "resource_type": "connection",
        "desired_state": "running",
        "current_state": "error",
        "ts_us": 1,
    }
    assert CODEC.decode("status", CODEC.encode("status", status)) == {
        **status,
        "info": "",
        "runner": None,
        "metrics": {},
    }


def test_many() -> None:
    events = [batch(v=i) for i in range(5)]
    assert CODEC.decode_many("telemetry", CODEC.encode_many("telemetry", events)) == events


# -- bad events


BAD_EVENTS = [
    ("telemetry", {**batch(), "received_us": 1.5}, "TelemetryBatch.received_us: expected long"),
    ("telemetry", {**batch(), "received_us": True}, "TelemetryBatch.received_us: expected long"),
    ("telemetry", {**batch(), "received_us": 2**63}, "TelemetryBatch.received_us"),
    ("telemetry", {**batch(), "recieved_us": 1}, "TelemetryBatch.recieved_us: not a field"),
    ("telemetry", {"identity": "x", "samples": []}, "TelemetryBatch.received_us: missing"),
    ("telemetry", {**batch(), "samples": {}}, "TelemetryBatch.samples: expected array"),
    ("telemetry", batch(t1=None), "TelemetryBatch.samples[0].values['t1']: expected boolean|"),
    ("telemetry", batch(t1=[1]), "TelemetryBatch.samples[0].values['t1']"),
    ("telemetry", batch(t1="\ud800"), "samples[0].values['t1']: not encodable as UTF-8"),
    ("telemetry", batch(**{"\ud800": 1}), "TelemetryBatch.samples[0].values['\\ud800']"),
    ("telemetry", batch(big=2**2000), "TelemetryBatch"),
    ("telemetry", "not a record", "TelemetryBatch: expected record TelemetryBatch"),
    ("identity", {"type": "CREATED"}, "IdentityEvent.event_id: missing"),
    (
        "identity",
        {"event_id": "e", "identity": "i", "ts_us": 0, "type": "BOGUS"},
        "IdentityEvent.type: expected one of CREATED, UPDATED",
    ),
    ("commands", {"command_id": "c", "identity": "i", "resource": "r", "value": None}, "value"),
    ("deadletter", {"ts_us": 1, "source_topic": "t", "payload": "s"}, "DeadLetter.payload"),
    ("alarms", {"alarm_id": "a", "ts_us": 1, "type": "RAISED!"}, "AlarmEvent.type: expected"),
]


@pytest.mark.parametrize(("topic", "event", "message"), BAD_EVENTS)
def test_bad_event_names_the_field(topic: str, event: Any, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        CODEC.encode(topic, event)
    assert message in str(info.value)
    assert not isinstance(info.value, DecodeError)


def test_bad_nested_values_name_the_full_path() -> None:
    samples = [{"ts_us": 1, "values": {}}, {"ts_us": 2, "values": {"x": 1}, "quality": 2**40}]
    with pytest.raises(SchemaError, match=r"TelemetryBatch\.samples\[1\]\.quality: expected int"):
        CODEC.encode("telemetry", {"identity": "i", "received_us": 0, "samples": samples})
    tags = {"event_id": "e", "identity": "i", "ts_us": 0, "type": "TAGS_SET", "tags": {"a": "b"}}
    with pytest.raises(SchemaError, match=r"IdentityEvent\.tags\['a'\]: expected array"):
        CODEC.encode("identity", tags)
    with pytest.raises(SchemaError, match=r"values\[1\]: map keys must be strings"):
        CODEC.encode("telemetry", batch() | {"samples": [{"ts_us": 0, "values": {1: 2.0}}]})


@pytest.mark.parametrize("topic", ALL_TOPICS)
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_wrong_field_is_named(topic: str, data: st.DataObject) -> None:
    event = data.draw(event_of(topic))
    field = data.draw(st.sampled_from(sorted(event)))
    with pytest.raises(SchemaError, match=rf"\.{field}: "):
        CODEC.encode(topic, {**event, field: object()})


def test_unknown_topic() -> None:
    with pytest.raises(SchemaError, match="unknown topic 'nope'"):
        CODEC.encode("nope", {})
    with pytest.raises(DecodeError, match="unknown topic 'nope'"):
        CODEC.decode("nope", b"")
    with pytest.raises(SchemaError, match="4 bytes"):
        CODEC.encode_confluent("telemetry", batch(), 2**32)


# -- undecodable bytes


@pytest.mark.parametrize("topic", ALL_TOPICS)
@settings(max_examples=100)
@given(garbage=st.binary(max_size=64), framing=st.sampled_from(["none", "single", "confluent"]))
def test_garbage_raises_decode_error_only(topic: str, garbage: bytes, framing: str) -> None:
    schema_id = 100 + ALL_TOPICS.index(topic)
    header = {
        "none": b"",
        "single": SINGLE_OBJECT_MAGIC + fingerprint(CURRENT[TOPIC_SCHEMAS[topic]]),
        "confluent": CONFLUENT_MAGIC + schema_id.to_bytes(4, "big"),
    }[framing]
    lookup = {schema_id: CURRENT[TOPIC_SCHEMAS[topic]]}.__getitem__
    try:
        CODEC.decode(topic, header + garbage, schema_lookup=lookup)
    except DecodeError:
        pass  # a garbage payload that happens to be a valid event is fine too


@pytest.mark.parametrize("topic", ALL_TOPICS)
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_truncated_or_padded_bytes_raise_decode_error(topic: str, data: st.DataObject) -> None:
    encoded = CODEC.encode(topic, data.draw(event_of(topic)))
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        CODEC.decode(topic, encoded[:cut])
    with pytest.raises(DecodeError, match="bytes left after the event"):
        CODEC.decode(topic, encoded + b"\x00")


def test_decode_errors_say_why() -> None:
    telemetry = CODEC.encode("telemetry", batch(t=1.0))
    with pytest.raises(DecodeError, match=r"unknown schema fingerprint .* \(a .*TelemetryBatch\)"):
        CODEC.decode("alarms", telemetry)
    with pytest.raises(DecodeError, match="no known schema"):
        CODEC.decode("telemetry", SINGLE_OBJECT_MAGIC + b"\x00" * 8 + telemetry[10:])
    with pytest.raises(DecodeError, match="unknown or truncated header"):
        CODEC.decode("telemetry", telemetry[:9])
    confluent = CODEC.encode_confluent("telemetry", batch(t=1.0), 3)
    with pytest.raises(DecodeError, match="no schema_lookup"):
        CODEC.decode("telemetry", confluent)
    with pytest.raises(DecodeError, match="schema id 3: KeyError"):
        CODEC.decode("telemetry", confluent, schema_lookup={}.__getitem__)


def test_confluent_lookup_is_cached_and_checked() -> None:
    codec = AvroCodec.load()
    calls: list[int] = []

    def lookup(schema_id: int) -> str:
        calls.append(schema_id)
        record = "TelemetryBatch" if schema_id == 1 else "AlarmEvent"
        return json.dumps(CURRENT[f"io.millrace.events.{record}"])

    data = codec.encode_confluent("telemetry", batch(t=1.0), 1)
    assert codec.decode_many("telemetry", [data, data], lookup) == [batch(t=1.0)] * 2
    assert calls == [1]
    wrong = codec.encode_confluent("telemetry", batch(t=1.0), 2)
    with pytest.raises(DecodeError, match=r"schema id 2 is a io\.millrace\.events\.AlarmEvent"):
        codec.decode("telemetry", wrong, lookup)


# -- evolution


def v1_schema() -> dict[str, Any]:
    return json.loads((HISTORY_DIR / "TelemetryBatch.v1.avsc").read_text())


def test_v1_telemetry_reads_with_defaults() -> None:
    old = {"identity": "i", "received_us": 5, "samples": [{"ts_us": 6, "values": {"b": True}}]}
    data = SINGLE_OBJECT_MAGIC + fingerprint(v1_schema()) + fastavro_bytes(v1_schema(), old)
    decoded = CODEC.decode("telemetry", data)
    assert_same(
        decoded,
        {
            "identity": "i",
            "source": "",
            "received_us": 5,
            "samples": [{"ts_us": 6, "values": {"b": True}, "quality": 0}],
            "ip": None,
            "batch_id": None,
            **NO_COLUMNS,
        },
    )
    lookup = {9: v1_schema()}.__getitem__
    confluent = CONFLUENT_MAGIC + (9).to_bytes(4, "big") + fastavro_bytes(v1_schema(), old)
    assert CODEC.decode("telemetry", confluent, lookup) == decoded


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: p.name)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_history_is_backward_compatible(path: Path, data: st.DataObject) -> None:
    old = json.loads(path.read_text())
    record = f"{old['namespace']}.{old['name']}"
    assert record in CURRENT, f"{path.name}: no current schema {record}"
    event = data.draw(strategy(fastavro.parse_schema(old)))
    framed = SINGLE_OBJECT_MAGIC + fingerprint(old) + fastavro_bytes(old, event)
    decoded = CODEC.decode(TOPIC_OF[record], framed)
    CODEC.encode(TOPIC_OF[record], decoded)  # a valid event of the current schema
    current_types = {f["name"]: f["type"] for f in CURRENT[record]["fields"]}
    for field in old["fields"]:
        if field["type"] == current_types.get(field["name"]):
            assert_same(decoded[field["name"]], event[field["name"]])


def test_history_file_names_are_checked(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "Other.v1.avsc").write_text(json.dumps(v1_schema()))
    with pytest.raises(SchemaError, match=r"name it TelemetryBatch\.v<N>\.avsc"):
        AvroCodec.load(SCHEMA_DIR, tmp_path / "history")
    (tmp_path / "history" / "Other.v1.avsc").write_text("{")
    with pytest.raises(SchemaError, match="invalid Avro schema"):
        AvroCodec.load(SCHEMA_DIR, tmp_path / "history")


def test_an_unknown_enum_symbol_reads_as_the_default() -> None:
    future = json.loads(json.dumps(CURRENT["io.millrace.events.AlarmEvent"]))
    future["fields"][2]["type"]["symbols"].append("ESCALATED")
    codec = AvroCodec(CURRENT.values(), history=[future])
    event = {
        "alarm_id": "a",
        "ts_us": 1,
        "type": "ESCALATED",
        "rule_id": "r",
        "rule_type": "threshold",
        "identity": "i",
        "priority": 200,
        "message": "hot",
    }
    data = SINGLE_OBJECT_MAGIC + fingerprint(future) + fastavro_bytes(future, event)
    assert codec.decode("alarms", data)["type"] == "UNKNOWN"


def test_unsupported_avro_types_are_refused_at_load() -> None:
    fixed = {"type": "fixed", "name": "Id", "size": 16}
    schema = {"type": "record", "name": "R", "fields": [{"name": "id", "type": fixed}]}
    with pytest.raises(SchemaError, match='does not support the Avro type "fixed"'):
        AvroCodec([schema], topics={"r": "R"})
