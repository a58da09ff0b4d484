"""POST /identities/{identity}/data: what is accepted, what is refused (400 naming the
field), and that the log sees exactly one record per accepted request and none for a
refused one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from millrace.api.context import ApiSettings
from millrace.pipeline.telemetry_columns import samples_of
from tests.api.conftest import NOW_US, Api, MakeApi, assert_bad_field, error_of, uid

SETTINGS = ApiSettings(max_batch_samples=5)
DAY_US = 86_400_000_000
MAX_FUTURE = NOW_US + SETTINGS.max_future_us
MAX_PAST = NOW_US - SETTINGS.max_past_us
INT64_MAX = 2**63 - 1


def sample(ts: int = NOW_US - 1_000_000, **values: Any) -> dict[str, Any]:
    return {"timestamp": ts, "values": values or {"temp": 21.5}}


@pytest.fixture
async def small(make_api: MakeApi) -> Api:
    return await make_api(settings=SETTINGS)


def one(**fields: Any) -> str:
    """One sample as JSON text, with ``fields`` replacing or adding keys."""
    return json.dumps([{"timestamp": NOW_US, "values": {"a": 1}, **fields}])


def literal(text: str) -> str:
    """One sample whose value ``x`` is the JSON literal ``text`` (NaN, Infinity, ...)."""
    return f'[{{"timestamp": {NOW_US}, "values": {{"x": {text}}}}}]'


def batch(*samples: dict[str, Any]) -> str:
    return json.dumps(list(samples))


TS0, TS1, X = "body[0].timestamp", "body[1].timestamp", "body[0].values.x"

# (case id, body as JSON text, the field the error must name)
BAD_BODIES: list[tuple[str, str, str]] = [
    ("malformed json", "[{", "body"),
    ("truncated json", '[{"timestamp": 1, "values": {"a": 1}}', "body"),
    ("body is an object", json.dumps(sample()), "body"),
    ("body is a string", '"hello"', "body"),
    ("body is null", "null", "body"),
    ("empty list", "[]", "body"),
    ("too many samples", batch(*(sample(NOW_US - i) for i in range(6))), "body"),
    ("timestamp string", one(timestamp=str(NOW_US)), TS0),
    ("timestamp iso", one(timestamp="2025-06-01T00:00:00Z"), TS0),
    ("timestamp float", one(timestamp=NOW_US + 0.5), TS0),
    ("timestamp integral float", one(timestamp=float(NOW_US)), TS0),
    ("timestamp bool", one(timestamp=True), TS0),
    ("timestamp null", one(timestamp=None), TS0),
    ("timestamp missing", batch(sample(), {"values": {"a": 1}}), TS1),
    ("timestamp in seconds is 'too old'", batch(sample(NOW_US // 1_000_000)), TS0),
    ("timestamp in ns is 'future'", batch(sample(NOW_US * 1000)), TS0),
    ("timestamp > now + 1 day", batch(sample(), sample(MAX_FUTURE + 1)), TS1),
    ("timestamp < now - 10 years", batch(sample(MAX_PAST - 1)), TS0),
    ("timestamp beyond int64", batch(sample(2**64)), TS0),
    ("values missing", json.dumps([{"timestamp": NOW_US}]), "body[0].values"),
    ("values empty", one(values={}), "body[0].values"),
    ("values a list", one(values=[1, 2]), "body[0].values"),
    ("value list", batch(sample(x=[1, 2])), X),
    ("value object", batch(sample(x={"v": 1})), X),
    ("value null", batch(sample(x=None)), X),
    ("value NaN", literal("NaN"), X),
    ("value Infinity", literal("Infinity"), X),
    ("value -Infinity", literal("-Infinity"), X),
    ("value 1e400 overflows", literal("1e400"), X),
    ("int 2**63", batch(sample(x=2**63)), X),
    ("int -2**63-1", batch(sample(x=-(2**63) - 1)), X),
    ("int 2**100", batch(sample(x=2**100)), X),
    ("string too long", batch(sample(x="é" * 40_000)), X),
    ("unknown key in sample", one(unit="C"), "body[0].unit"),
    ("quality string", one(quality="good"), "body[0].quality"),
    ("quality float", one(quality=0.0), "body[0].quality"),
    ("quality beyond int32", one(quality=2**31), "body[0].quality"),
    ("signal name empty", batch(sample(**{"": 1})), "body[0].values."),
    ("signal name with space", batch(sample(**{"a b": 1})), "body[0].values.a b"),
    ("signal name starts with dot", batch(sample(**{".a": 1})), "body[0].values..a"),
    ("signal name starts with dash", batch(sample(**{"-a": 1})), "body[0].values.-a"),
    ("signal name non-ascii", batch(sample(**{"tempé": 1})), "body[0].values.tempé"),
    ("signal name 129 chars", batch(sample(**{"s" * 129: 1})), "body[0].values." + "s" * 129),
    ("signal name quote", batch(sample(**{"a'b": 1})), "body[0].values.a'b"),
    ("second sample bad", batch(sample(), sample(NOW_US - 5, ok=1, bad=[])), "body[1].values.bad"),
]


@pytest.mark.parametrize(
    "body,field_name", [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
async def test_bad_body_is_400_naming_the_field_and_appends_nothing(
    small: Api, body: str, field_name: str
) -> None:
    r = await small.post_raw(f"/identities/{uid()}/data", body.encode())
    assert_bad_field(r, field_name)
    assert await small.telemetry_count() == 0
    assert small.log.appended == {}
    assert small.ingested == []


@pytest.mark.parametrize(
    "identity",
    ["-dev", ".dev", "_dev", "dev 1", "dév", "d" * 129, "dev'1", "dev;1"],
)
async def test_bad_identity_is_400_naming_identity(small: Api, identity: str) -> None:
    r = await small.ingest(identity, [sample()])
    assert_bad_field(r, "identity")
    assert await small.telemetry_count() == 0


async def test_identity_with_a_slash_is_no_route(small: Api) -> None:
    r = await small.ingest("plant/dev1", [sample()])
    assert r.status_code == 404
    assert await small.telemetry_count() == 0


async def test_strict_mode_refuses_unknown_signals(make_api: MakeApi) -> None:
    api = await make_api(settings=ApiSettings(strict_signals=True, known_signals=frozenset({"a"})))
    r = await api.ingest(uid(), [sample(a=1), sample(NOW_US - 7, a=2, b=3)])
    assert_bad_field(r, "body[1].values.b")
    assert "strict" in error_of(r)["message"]
    assert await api.telemetry_count() == 0
    r = await api.ingest(uid(), [sample(a=1)])
    assert r.status_code == 202, r.text
    assert await api.telemetry_count() == 1


async def test_default_limit_is_10000_samples(api: Api) -> None:
    identity = uid()
    body = [{"timestamp": NOW_US - i, "values": {"v": i}} for i in range(10_001)]
    r = await api.ingest(identity, body)
    assert_bad_field(r, "body")
    assert "10000" in error_of(r)["message"]
    assert await api.telemetry_count() == 0
    r = await api.ingest(identity, body[:10_000])
    assert r.status_code == 202, r.text
    assert r.json()["samples"] == 10_000
    assert await api.telemetry_count() == 1


async def test_accepted_batch_is_exactly_one_record_before_the_response(small: Api) -> None:
    identity = uid()
    body = [
        {"timestamp": NOW_US - 3, "values": {"temp": 21.5, "on": True, "mode": "auto"}},
        {"timestamp": NOW_US - 9, "values": {"temp": -4, "count": INT64_MAX}, "quality": 192},
    ]
    r = await small.ingest(identity, body)
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "accepted", "identity": identity, "samples": 2, "readings": 5}
    # on_ingest runs after the append and before the response is sent
    assert small.ingested == [1]
    assert small.log.appended == {"telemetry": 1}
    assert await small.telemetry_count() == 1

    [record] = await small.telemetry_records()
    assert record["key"] == identity.encode()
    assert record["identity"] == identity
    assert record["received_us"] == NOW_US
    operator_id = small.operator.split("_")[1]
    assert record["source"] == f"http:{operator_id}"
    assert samples_of(record) == [
        {"ts_us": NOW_US - 3, "values": {"temp": 21.5, "on": True, "mode": "auto"}, "quality": 0},
        {"ts_us": NOW_US - 9, "values": {"temp": -4, "count": INT64_MAX}, "quality": 192},
    ]
    # types survive: bool stays bool, int stays int
    values = samples_of(record)[0]["values"]
    assert type(values["on"]) is bool
    assert type(samples_of(record)[1]["values"]["temp"]) is int


async def test_each_request_is_one_record(small: Api) -> None:
    identity = uid()
    for i in range(3):
        r = await small.ingest(identity, [sample(NOW_US - i)])
        assert r.status_code == 202
    assert small.ingested == [1, 2, 3]
    assert await small.telemetry_count() == 3


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([sample(MAX_FUTURE)], id="exactly now + 1 day"),
        pytest.param([sample(MAX_PAST)], id="exactly the oldest allowed"),
        pytest.param([sample(x=INT64_MAX), sample(NOW_US - 2, x=-(2**63))], id="int64 bounds"),
        pytest.param([sample(**{"s" * 128: 1})], id="128-char signal"),
        pytest.param([sample(**{"_a": 1, "A.b:c-d_e9": 2, "0": 3})], id="signal charset"),
        pytest.param([sample(x="")], id="empty string value"),
        pytest.param([sample(x="é" * 32_768)], id="64 KiB string"),
        pytest.param([sample(x=False)], id="false"),
        pytest.param([sample(x=0)], id="zero"),
        pytest.param([sample(x=1e308)], id="huge finite float"),
        pytest.param([{**sample(), "quality": -(2**31)}], id="quality int32 min"),
        pytest.param([sample(NOW_US - i) for i in range(5)], id="exactly max_batch_samples"),
        pytest.param([sample(NOW_US), sample(NOW_US)], id="same timestamp twice"),
    ],
)
async def test_edge_values_are_accepted(small: Api, body: list[dict[str, Any]]) -> None:
    r = await small.ingest(uid(), body)
    assert r.status_code == 202, r.text
    assert await small.telemetry_count() == 1


@pytest.mark.parametrize("identity", ["d", "D" * 128, "plant-1.line_2:dev@site", "0"])
async def test_identity_charset(small: Api, identity: str) -> None:
    r = await small.ingest(identity, [sample()])
    assert r.status_code == 202, r.text
    assert r.json()["identity"] == identity


async def test_the_clock_is_the_injected_one(make_api: MakeApi) -> None:
    # a fixed clock in 2001: a reading of 2025 is 'in the future' there
    past_now = 1_000_000_000_000_000
    api = await make_api(settings=SETTINGS, clock=lambda: past_now)
    assert_bad_field(await api.ingest(uid(), [sample(NOW_US)]), "body[0].timestamp")
    r = await api.ingest(uid(), [sample(past_now - DAY_US)])
    assert r.status_code == 202, r.text


async def test_huge_integer_literal_is_400_naming_body(small: Api) -> None:
    body = b'[{"timestamp": %d, "values": {"x": %s}}]' % (NOW_US, b"9" * 5000)
    r = await small.post_raw(f"/identities/{uid()}/data", body)
    assert_bad_field(r, "body")


@pytest.mark.parametrize("name", ["query", "path"])
async def test_a_signal_named_query_or_path_is_named_in_errors(small: Api, name: str) -> None:
    r = await small.ingest(uid(), [{"timestamp": NOW_US, "values": {name: [1]}}])
    assert_bad_field(r, f"body[0].values.{name}")


async def test_wrong_method_is_a_json_405(small: Api) -> None:
    r = await small.client.put(
        f"/api/v1/identities/{uid()}/data", json=[sample()], headers=small.auth(small.operator)
    )
    assert r.status_code == 405
    assert error_of(r)["code"] == "method_not_allowed"
