"""Pure parts of the MQTT connector: JSON paths, topic filters and templates, payload
decoding to readings and command encoding (no broker)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millrace.connectors.mqtt.jsonpath import (
    JsonPathError,
    PathNotFoundError,
    compile_path,
    format_path,
)
from millrace.connectors.mqtt.payload import (
    DecodeError,
    MappingSpec,
    ValueSpec,
    coerce,
    command_payload,
    endpoint_reading,
    mapping_readings,
    timestamp_us,
    whole_payload,
)
from millrace.connectors.mqtt.topics import (
    TemplatePattern,
    TopicError,
    TopicRouter,
    command_topic,
    command_topic_problem,
    filter_problem,
    matches,
    ref_problem,
    render,
)
from millrace.pipeline.timestamps import MAX_TS_US, MIN_TS_US

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# -- JSON paths ------------------------------------------------------------------------------
keys = st.text(min_size=0, max_size=8)
steps = st.lists(st.one_of(keys, st.integers(min_value=-5, max_value=5)), max_size=6)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


@given(steps)
def test_path_text_round_trips(s: list[str | int]) -> None:
    assert compile_path(format_path(s)).steps == tuple(s)


def nest(path: list[str | int], leaf: Any) -> Any:
    """A document holding ``leaf`` at ``path``, with decoys around it."""
    node = leaf
    for step in reversed(path):
        if isinstance(step, str):
            node = {step: node, step + "~decoy": "decoy"}
        else:
            size = max(step + 1, -step) + 1
            arr: list[Any] = ["decoy"] * size
            arr[step] = node
            node = arr
    return node


@given(steps, scalars)
def test_path_selects_the_value_in_a_json_document(s: list[str | int], leaf: Any) -> None:
    doc = json.loads(json.dumps(nest(s, leaf)))  # through real JSON text
    assert compile_path(format_path(s)).get(doc) == leaf


def test_path_syntax() -> None:
    doc = {"a": {"b.c": [10, {"d": True}]}, "x y": 1, "it's": 2}
    assert compile_path("$").get(doc) is doc
    assert compile_path("$.a['b.c'][1].d").get(doc) is True
    assert compile_path('$.a["b.c"][-2]').get(doc) == 10
    assert compile_path("$['x y']").get(doc) == 1
    assert compile_path("$['it\\'s']").get(doc) == 2


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a.b", "starts with '\\$'"),
        ("$..a", "recursive descent"),
        ("$.*", "wildcard"),
        ("$.a[*]", "not supported"),
        ("$.a[0:2]", "not supported"),
        ("$[?(@.a>1)]", "not supported"),
        ("$.", "member name"),
        ("$.a[", "expected an index"),
        ("$['a'", "unterminated|missing"),
        ("$.a b", "unexpected ' '"),
        ("$[01]", "expected an index"),
    ],
)
def test_bad_paths_are_rejected_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(JsonPathError, match=why):
        compile_path(text)


def test_missing_path_says_where() -> None:
    with pytest.raises(PathNotFoundError, match=r"\$\.a\.b\.c not found \(no \$\.a\.b\)"):
        compile_path("$.a.b.c").get({"a": {}})
    with pytest.raises(PathNotFoundError, match="has 1 elements"):
        compile_path("$.a[3]").get({"a": [1]})
    with pytest.raises(PathNotFoundError, match="is a number, not an object"):
        compile_path("$.a.b").get({"a": 5})


# -- topics ------------------------------------------------------------------------------------
level = st.sampled_from(["a", "b", "c", "$sys", ""])
topics = st.lists(level, min_size=1, max_size=5).map("/".join).filter(bool)  # 1+ characters
filters = (
    st.tuples(st.lists(st.one_of(level, st.just("+")), min_size=1, max_size=5), st.booleans())
    .map(lambda t: "/".join([*t[0], "#"] if t[1] else t[0]))
    .filter(bool)
)


def oracle(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 section 4.7 as a regular expression."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    parts = []
    for lvl in topic_filter.split("/"):
        parts.append({"+": "[^/]*", "#": "\x00"}.get(lvl, re.escape(lvl)))
    rx = "/".join(parts)
    rx = rx.replace("/\x00", "(/.*)?").replace("\x00", ".*")
    return re.fullmatch(rx, topic) is not None


@given(filters, topics)
def test_filter_matching_agrees_with_the_spec(topic_filter: str, topic: str) -> None:
    assert filter_problem(topic_filter) is None
    assert matches(topic_filter, topic) == oracle(topic_filter, topic)


@given(st.lists(filters, max_size=6), topics)
def test_router_finds_every_matching_filter(fs: list[str], topic: str) -> None:
    router: TopicRouter[int] = TopicRouter()
    for i, f in enumerate(fs):
        router.add(f, i)
    assert sorted(router.lookup(topic)) == [i for i, f in enumerate(fs) if oracle(f, topic)]


@pytest.mark.parametrize(
    ("topic_filter", "problem"),
    [
        ("a/#/b", "'#' must be the last level"),
        ("a/b#", "'#' must be a whole level"),
        ("a/+b/c", "'\\+' must be a whole level"),
        ("a/b+", "'\\+' must be a whole level"),
        ("", "must not be empty"),
        ("a\x00b", "NUL"),
    ],
)
def test_invalid_filters(topic_filter: str, problem: str) -> None:
    found = filter_problem(topic_filter)
    assert found is not None and re.search(problem, found)


@pytest.mark.parametrize("topic_filter", ["#", "+", "a/+/c", "a/#", "+/+/#", "/a", "a//b"])
def test_valid_filters(topic_filter: str) -> None:
    assert filter_problem(topic_filter) is None


def test_templates_take_topic_levels() -> None:
    levels = ["plant", "press-7", "temp", "c"]
    assert render("{1}", levels) == "press-7"
    assert render("dev-{1}.{-1}", levels) == "dev-press-7.c"
    assert render("{x} {} {1", levels) == "{x} {} {1"  # not references: literal
    with pytest.raises(TopicError, match="no level 4"):
        render("{4}", levels)
    with pytest.raises(TopicError, match=r"level 1 .* empty"):
        render("{1}", ["a", "", "c"])


def test_template_references_are_checked_against_the_filter() -> None:
    assert ref_problem("{1}", "plant/+/temp") is None
    assert ref_problem("{-3}", "plant/+/temp") is None
    assert "does not have" in (ref_problem("{3}", "plant/+/temp") or "")
    assert "does not have" in (ref_problem("{-4}", "plant/+/temp") or "")
    assert ref_problem("{7}", "plant/#") is None  # a topic under '#' may be that long


def test_template_pattern_recognises_what_the_endpoint_produces() -> None:
    p = TemplatePattern.of("{1}", "{2}-{1}", "plant/+/+/x")
    assert p.matches("press-7", "temp-press-7")
    assert not p.matches("press-7", "temp-press-8")  # the same level twice
    assert not p.matches("a/b", "t-a/b")  # one level never holds '/'
    lit = TemplatePattern.of("{0}-{1}", "v", "plant/+")
    assert lit.matches("plant-x", "v") and not lit.matches("site-x", "v")


def test_command_topic() -> None:
    assert command_topic_problem("plant/{identity}/set/{signal}") is None
    assert "unknown placeholder {device}" in (command_topic_problem("p/{device}/set") or "")
    assert "'+' or '#'" in (command_topic_problem("p/+/set") or "")
    assert "unbalanced" in (command_topic_problem("p/{identity/set") or "")
    assert command_topic("p/{identity}/set/{signal}", "a", "b") == "p/a/set/b"
    with pytest.raises(TopicError):
        command_topic("p/{identity}", "a+b", "s")


# -- values and times --------------------------------------------------------------------------
@given(scalars)
def test_value_at_a_path_is_the_json_value(value: Any) -> None:
    payload = json.dumps({"data": {"v": [value]}}).encode()
    spec = ValueSpec(value_path=compile_path("$.data.v[0]"))
    got, ts = endpoint_reading(payload, spec)
    assert got == value and type(got) is type(value) and ts is None


@given(
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False))
)
def test_bare_number_payload(value: int | float) -> None:
    assert whole_payload(json.dumps(value).encode(), "auto") == value
    assert whole_payload(json.dumps(value).encode(), "float64") == float(value)


def test_whole_payload_forms() -> None:
    assert whole_payload(b"true", "auto") is True
    assert whole_payload(b"0", "bool") is False
    assert whole_payload(b"on", "auto") == "on"  # not JSON: the text
    assert whole_payload(b'"on"', "auto") == "on"
    assert whole_payload(b"123", "string") == "123"  # text, not a number
    assert whole_payload(b" 42 \n", "int16") == 42
    for payload, data_type, why in [
        (b"", "auto", "empty"),
        (b'{"v": 1}', "auto", "set value_path"),
        (b"[1]", "auto", "an array"),
        (b"warm", "float64", "not a JSON value of type float64"),
        (b"\xff\xfe", "auto", "neither JSON nor UTF-8"),
        (b"70000", "int16", "out of range for int16"),
        (b"1.5", "int32", "expected int32"),
        (b"null", "auto", "null"),
    ]:
        with pytest.raises(DecodeError, match=why):
            whole_payload(payload, data_type)


@pytest.mark.parametrize(
    ("value", "data_type", "expected"),
    [
        (1, "bool", True),
        (True, "bool", True),
        (3.0, "int16", 3),
        (-(2**15), "int16", -(2**15)),
        (2**16 - 1, "uint16", 2**16 - 1),
        (5, "float32", 5.0),
        ("x", "string", "x"),
        (2**63 - 1, "uint64", 2**63 - 1),
    ],
)
def test_coerce_accepts(value: Any, data_type: str, expected: Any) -> None:
    got = coerce(value, data_type)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        (2, "bool"),
        ("true", "bool"),
        (True, "int32"),
        (-1, "uint16"),
        (2**31, "int32"),
        (2**63, "uint64"),
        (2**63, "auto"),
        ("1", "float64"),
        (1e39, "float32"),
        (1, "string"),
        ({"a": 1}, "auto"),
        ([1], "float64"),
        (None, "auto"),
    ],
)
def test_coerce_rejects(value: Any, data_type: str) -> None:
    with pytest.raises(DecodeError):
        coerce(value, data_type)


#: the times an event may carry (pipeline.timestamps)
ts_range = st.integers(min_value=MIN_TS_US, max_value=MAX_TS_US - 1)


@given(ts_range)
def test_epoch_timestamps(ts: int) -> None:
    assert timestamp_us(ts, "epoch_us") == ts
    assert timestamp_us(ts // 1000, "epoch_ms") == ts // 1000 * 1000
    assert timestamp_us(ts // 1_000_000, "epoch_s") == ts // 1_000_000 * 1_000_000
    assert timestamp_us(str(ts // 1000), "epoch_ms") == ts // 1000 * 1000


@given(ts_range, st.integers(-14 * 60, 14 * 60))
def test_iso8601_timestamps(ts: int, offset_min: int) -> None:
    tz = timezone(timedelta(minutes=offset_min))
    text = (EPOCH + timedelta(microseconds=ts)).astimezone(tz).isoformat()
    assert timestamp_us(text, "iso8601") == ts


def test_timestamp_forms_and_errors() -> None:
    assert timestamp_us(1.5, "epoch_s") == 1_500_000
    assert timestamp_us("2024-05-01T12:00:00Z", "iso8601") == 1_714_564_800_000_000
    assert timestamp_us("2024-05-01T12:00:00", "iso8601") == 1_714_564_800_000_000  # UTC
    for raw, fmt, why in [
        ("yesterday", "epoch_ms", "not a number"),
        (True, "epoch_ms", "expected a number"),
        (-1, "epoch_s", "outside"),
        (1e30, "epoch_s", "outside"),
        (1714564800, "iso8601", "expected an ISO 8601"),
        ("2024-13-01", "iso8601", "not ISO 8601"),
        ([1], "epoch_ms", "an array"),
    ]:
        with pytest.raises(DecodeError, match=why):
            timestamp_us(raw, fmt)


def test_endpoint_reading_with_time_and_errors() -> None:
    spec = ValueSpec(
        value_path=compile_path("$.v"),
        data_type="float64",
        timestamp_path=compile_path("$.ts"),
        timestamp_format="epoch_ms",
    )
    assert endpoint_reading(b'{"v": 2, "ts": 1700000000123}', spec) == (2.0, 1_700_000_000_123_000)
    for payload, why in [
        (b"{nope", "not JSON"),
        (b'{"ts": 1}', r"value missing: \$\.v not found"),
        (b'{"v": "hot", "ts": 1}', r"\$\.v: value 'hot' is a string, expected float64"),
        (b'{"v": 1}', r"timestamp missing"),
        (b'{"v": 1, "ts": "x"}', "timestamp 'x' is not a number"),
    ]:
        with pytest.raises(DecodeError, match=why):
            endpoint_reading(payload, spec)


# -- payload mappings ------------------------------------------------------------------------
@given(st.dictionaries(st.text(min_size=1, max_size=6), scalars, min_size=1, max_size=6))
def test_mapping_takes_every_value(values: dict[str, Any]) -> None:
    doc = {"id": "m-1", "t": 1700000000, "data": values}
    spec = MappingSpec(
        values={f"s{i}": compile_path(format_path(["data", k])) for i, k in enumerate(values)},
        identity_path=compile_path("$.id"),
        timestamp_path=compile_path("$.t"),
        timestamp_format="epoch_s",
    )
    result = mapping_readings(json.dumps(doc).encode(), spec)
    assert result.identity == "m-1" and result.ts_us == 1_700_000_000_000_000
    assert result.values == [(f"s{i}", v) for i, v in enumerate(values.values())]
    assert result.errors == []


def test_mapping_partial_payloads_and_errors() -> None:
    spec = MappingSpec(
        values={"a": compile_path("$.a"), "b": compile_path("$.b"), "c": compile_path("$.c")}
    )
    partial = mapping_readings(b'{"a": 1, "c": null}', spec)  # b missing, c null: skipped
    assert partial.values == [("a", 1)] and partial.errors == [] and partial.identity is None
    mixed = mapping_readings(b'{"a": 1, "b": {"x": 1}}', spec)
    assert mixed.values == [("a", 1)]
    assert len(mixed.errors) == 1 and mixed.errors[0].startswith("b ($.b): value is an object")
    with pytest.raises(DecodeError, match="none of the mapped values"):
        mapping_readings(b'{"z": 1}', spec)
    with pytest.raises(DecodeError, match="identity missing"):
        mapping_readings(b'{"a": 1}', MappingSpec(spec.values, identity_path=compile_path("$.id")))
    with pytest.raises(DecodeError, match=r"identity .* is an object"):
        mapping_readings(
            b'{"a": 1, "id": {}}', MappingSpec(spec.values, identity_path=compile_path("$.id"))
        )


# -- commands ----------------------------------------------------------------------------------
def test_command_payloads() -> None:
    doc = json.loads(command_payload(10.0, "json", "int16", "press-1", "sp", 5))
    assert doc == {"value": 10, "identity": "press-1", "signal": "sp", "ts_us": 5}
    assert isinstance(doc["value"], int)
    assert command_payload(21.5, "plain", "auto", "i", "s", 0) == b"21.5"
    assert command_payload(True, "plain", "bool", "i", "s", 0) == b"true"
    assert command_payload("auto mode", "plain", "string", "i", "s", 0) == b"auto mode"
    with pytest.raises(DecodeError, match="out of range"):
        command_payload(1e6, "json", "int16", "i", "s", 0)
    with pytest.raises(DecodeError, match="not a finite number"):
        command_payload(math.inf, "json", "auto", "i", "s", 0)
