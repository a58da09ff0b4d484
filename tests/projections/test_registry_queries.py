"""The registry read model against projections filled by the real pipeline: identity and
telemetry events appended to an in-memory log, folded by the processors, written to
chDB. Every expected value below was worked out by hand from the events in
``_events`` (times are offsets from ``T``, an hour boundary)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.events import identity_event
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.projections.identity_filter import _tag_criterion_sql
from millrace.projections.registry import (
    IdentityFilter,
    Order,
    QueryError,
    RegistryQueries,
    TagCriterion,
)
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.projection_reset import empty_projections

S = 1_000_000
MIN = 60 * S
T = 1_759_996_800 * S  # 2025-10-09T08:00:00Z, on an hour boundary
NOW = T + 200 * S
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$ZmFrZWhhc2g"

ALL = ["dev-01", "dev-02", "dev-03", "dev-10", "dev-exp", "dev-re", "gw-1"]


def ident(
    identity: str,
    t: int,
    kind: str,
    *,
    actor: str | None = None,
    ip: str | None = None,
    tags: dict[str, list[str]] | None = None,
    state: dict[str, str] | None = None,
    attributes: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    return identity, identity_event(
        identity, kind, t, actor=actor, ip=ip, tags=tags, state=state, attributes=attributes
    )


def batch(
    identity: str, received: int, values: dict[str, Any], ip: str | None = None
) -> tuple[str, dict[str, Any]]:
    return identity, {
        "identity": identity,
        "source": "test",
        "received_us": received,
        "samples": [{"ts_us": received - S, "values": values, "quality": 0}],
        "ip": ip,
    }


def _events() -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    provision = {"credential_hash": HASH, "auth_type": "token"}
    identity = [
        ident(
            "dev-01",
            T,
            "CREATED",
            attributes={"model": "x1"},
            tags={"floor": ["1"], "zone": ["north"]},
        ),
        ident(
            "dev-01",
            T + 10 * S,
            "PROVISIONED",
            ip="10.0.0.1",
            attributes={**provision, "credential_expires_us": str(T + 86_400 * S)},
        ),
        ident(
            "dev-01",
            T + 110 * S,
            "STATE_SET",
            actor="alice",
            state={"setpoint": "22", "mode": '"eco"'},
        ),
        ident("dev-01", T + 130 * S, "STATE_ACKNOWLEDGED", state={"setpoint": "22"}),
        ident("dev-01", T + 50 * S, "RESOURCE_STALE", state={"on": "null"}),
        ident("dev-01", T + 140 * S, "RESOURCE_STALE", state={"temp": "null"}),
        ident("dev-02", T + 1 * S, "CREATED", tags={"floor": ["10"], "zone": ["south", "north"]}),
        ident("dev-02", T + 50 * S, "CONNECTED", ip="10.0.0.2"),
        ident("dev-02", T + 60 * S, "DISCONNECTED"),
        ident("dev-02", T + 70 * S, "STATE_SET", state={"setpoint": "18"}),
        ident("dev-02", T + 80 * S, "STATE_TIMED_OUT", state={"setpoint": "18"}),
        ident(
            "dev-03",
            T + 2 * S,
            "CREATED",
            attributes={"inactivity_timeout_s": "30"},
            tags={"floor": ["2"], "zone": ["east"]},
        ),
        ident("dev-03", T + 100 * S, "CONNECTED", ip="10.0.0.3"),
        ident("gw-1", T + 3 * S, "CREATED"),
        ident("gw-1", T + 4 * S, "LOCKED", actor="bob"),
        ident("dev-10", T + 5 * S, "CREATED", tags={"floor": ["abc"]}),
        ident("dev-exp", T + 6 * S, "CREATED"),
        ident("dev-exp", T + 7 * S, "EXPIRED"),
        ident("dev-re", T + 1 * S, "CREATED"),
        ident(
            "dev-re",
            T + 5 * S,
            "PROVISIONED",
            ip="10.0.0.5",
            attributes={"credential_hash": HASH, "auth_type": "password"},
        ),
        ident("dev-re", T + 6 * S, "EXPIRED", attributes={"what": "credentials"}),
        ident("dev-del", T + 1 * S, "CREATED", tags={"gone": ["x"]}),
        ident("dev-del", T + 2 * S, "DELETED"),
        ident(
            "*",
            T + 8 * S,
            "RESOURCE_DEFINED",
            actor="admin",
            attributes={
                "name": "temp",
                "definition": ResourceDefinition(format="number", unit="degC").to_json(),
            },
        ),
        ident(
            "*",
            T + 9 * S,
            "RESOURCE_DEFINED",
            actor="admin",
            attributes={
                "name": "mode",
                "definition": ResourceDefinition(format="string", settable=True).to_json(),
            },
        ),
        ident(
            "*",
            T + 9 * S,
            "RESOURCE_DEFINED",
            actor="admin",
            attributes={"name": "old", "definition": ResourceDefinition().to_json()},
        ),
        ident("*", T + 12 * S, "RESOURCE_REMOVED", actor="carol", attributes={"name": "old"}),
    ]
    telemetry = [
        batch("dev-del", T + 1 * S, {"temp": 1.0, "x": 2}, ip="10.9.9.9"),
        batch("dev-re", T + 5 * S, {"temp": "cold"}),
        batch("dev-02", T + 20 * S, {"temp": 3}, ip="10.0.0.8"),
        batch("dev-03", T + 30 * S, {"temp": "hot"}),
        batch(
            "dev-01",
            T + 100 * S,
            {"temp": 21.5, "on": True, "mode": "auto", "setpoint": 22},
            ip="10.0.0.9",
        ),
        batch("dev-10", T + 150 * S, {"temp": 100}),
        # an identity outside the registry: only its publish metrics matter here
        batch("m-1", T + 7 * MIN, {"a": 1, "b": 2, "c": 3}),
        batch("m-1", T + 8 * MIN, {f"s{i}": i for i in range(6)}),
        batch("m-1", T + 62 * MIN, {f"s{i}": i for i in range(5)}),
    ]
    return identity, telemetry


@pytest.fixture(scope="module")
def q(chdb_store: ChdbStore) -> Iterator[RegistryQueries]:
    empty_projections(chdb_store)

    async def fill() -> None:
        log = MemoryEventLog(partitions=1)
        pub = LogPublisher(log)
        identity, telemetry = _events()
        await pub.publish("identity", identity)
        await pub.publish("telemetry", telemetry)
        await EmbeddedRuntime(log, ProjectionWriter(chdb_store), processors()).run_until_idle()

    asyncio.run(fill())
    dead = chdb_store.execute("SELECT reason FROM millrace.deadletter").rows
    assert dead == []  # every event above applies
    yield RegistryQueries(chdb_store, default_inactivity_timeout_s=300)


def names(q: RegistryQueries, now: int = NOW, **kw: Any) -> list[str]:
    f = IdentityFilter(**kw)
    rows, more = q.list(f, Order(), 100, 0, now)
    listed = [r["identity"] for r in rows]
    assert not more
    assert q.count(f, now) == len(listed)
    assert q.names(f, now) == listed
    return listed


# -- get --------------------------------------------------------------------------------


def test_get_returns_the_whole_identity_with_state(q: RegistryQueries) -> None:
    assert q.get("dev-01", NOW) == {
        "identity": "dev-01",
        "status": "provisioned",
        "online": True,
        "lastseen_us": T + 100 * S,  # telemetry, later than the provisioning
        "lastip": "10.0.0.9",  # ... so its address wins over the provisioning one
        "connected_us": None,
        "disconnected_us": None,
        "created_us": T,
        "updated_us": T + 140 * S,
        "provisioned_us": T + 10 * S,
        "provision_until_us": None,
        "credential_expires_us": T + 86_400 * S,
        "auth_type": "token",
        "inactivity_timeout_s": 300,
        "attributes": {"model": "x1"},
        "tags": {"floor": ["1"], "zone": ["north"]},
        "state": {
            "mode": {
                "set": "eco",
                "set_ts_us": T + 110 * S,
                "set_by": "alice",
                "reported": "auto",
                "reported_ts_us": T + 99 * S,
                "pending": True,
                "acknowledged_us": None,
                "timed_out_us": None,
                "stale": False,
            },
            "on": {
                "set": None,
                "set_ts_us": None,
                "set_by": None,
                "reported": True,
                "reported_ts_us": T + 99 * S,
                "pending": False,
                "acknowledged_us": None,
                "timed_out_us": None,
                "stale": False,  # flagged at +50 s, reported again at +99 s
            },
            "setpoint": {
                "set": 22,
                "set_ts_us": T + 110 * S,
                "set_by": "alice",
                "reported": 22.0,
                "reported_ts_us": T + 99 * S,
                "pending": False,
                "acknowledged_us": T + 130 * S,
                "timed_out_us": None,
                "stale": False,
            },
            "temp": {
                "set": None,
                "set_ts_us": None,
                "set_by": None,
                "reported": 21.5,
                "reported_ts_us": T + 99 * S,
                "pending": False,
                "acknowledged_us": None,
                "timed_out_us": None,
                "stale": True,  # flagged at +140 s, after its last report
            },
        },
    }


def test_get_connection_derived_fields(q: RegistryQueries) -> None:
    dev02 = q.get("dev-02", NOW)
    assert dev02 is not None
    # telemetry at +20 s is older than the connect at +50 s: the connect's address wins
    assert (dev02["lastseen_us"], dev02["lastip"]) == (T + 50 * S, "10.0.0.2")
    assert (dev02["connected_us"], dev02["disconnected_us"]) == (T + 50 * S, T + 60 * S)
    assert dev02["online"] is False  # disconnected after it was last seen
    assert dev02["state"]["setpoint"]["pending"] is False
    assert dev02["state"]["setpoint"]["timed_out_us"] == T + 80 * S
    assert dev02["state"]["setpoint"]["set_by"] is None  # no actor
    assert dev02["state"]["temp"]["reported"] == 3.0
    dev03 = q.get("dev-03", NOW)
    assert dev03 is not None
    assert dev03["inactivity_timeout_s"] == 30
    assert dev03["online"] is False  # seen 100 s ago, its own timeout is 30 s
    assert q.get("dev-03", T + 120 * S)["online"] is True  # type: ignore[index]
    gw = q.get("gw-1", NOW)
    assert gw is not None
    assert (gw["status"], gw["lastseen_us"], gw["lastip"], gw["auth_type"]) == (
        "locked",
        None,
        None,
        None,
    )
    assert gw["state"] == {} and gw["tags"] == {} and gw["attributes"] == {}
    dev10 = q.get("dev-10", NOW)
    assert dev10 is not None
    assert (dev10["lastseen_us"], dev10["lastip"], dev10["online"]) == (T + 150 * S, None, True)


def test_unknown_and_deleted_identities_are_absent(q: RegistryQueries) -> None:
    assert q.get("nope", NOW) is None
    assert q.get("dev-del", NOW) is None
    assert q.credential("dev-del") is None
    assert q.credential("nope") is None
    assert "dev-del" not in names(q)
    assert names(q, identities=["dev-del", "dev-01", "nope", "gw-1"]) == ["dev-01", "gw-1"]
    assert names(q, identities=[]) == []
    assert names(q, ipaddress="10.9.9.9") == []


def test_status_is_the_full_rows_status(q: RegistryQueries) -> None:
    for name in [*ALL, "dev-del", "nope"]:
        row = q.get(name, NOW)
        assert q.status(name) == (None if row is None else row["status"]), name
    assert q.status("gw-1") == "locked"


def test_gate_sets_are_the_locked_and_the_present_identities(q: RegistryQueries) -> None:
    present = frozenset(n for n in [*ALL, "dev-del", "nope"] if q.get(n, NOW) is not None)
    locked = frozenset(n for n in present if q.status(n) == "locked")
    assert locked == {"gw-1"}
    assert q.gate_sets(False, 10) == (locked, None)
    assert q.gate_sets(True, len(present)) == (locked, present)
    assert q.gate_sets(True, len(present) - 1) == (locked, None)  # too many to hold


def test_credential_hash_only_through_credential(q: RegistryQueries) -> None:
    assert q.credential("dev-01") == ("token", HASH, T + 86_400 * S)
    assert q.credential("dev-re") == ("password", HASH, 0)
    assert q.credential("dev-02") == ("", "", 0)
    rows, _ = q.list(IdentityFilter(), Order(), 100, 0, NOW)
    dicts = [*rows, *(q.get(name, NOW) for name in ALL)]
    for d in dicts:
        assert d is not None
        assert "credential_hash" not in d
        assert HASH not in repr(d)


# -- filters ----------------------------------------------------------------------------


def test_all_present_identities_sorted_by_name(q: RegistryQueries) -> None:
    assert names(q) == ALL


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (["provisioned"], ["dev-01"]),
        (["whitelisted"], ["dev-02", "dev-03", "dev-10"]),
        (["reprovision"], ["dev-re"]),
        (["expired"], ["dev-exp"]),
        (["locked"], ["gw-1"]),
        (["online"], ["dev-01", "dev-10", "dev-re"]),
        (["offline"], ["dev-02", "dev-03", "dev-exp", "gw-1"]),
        (["locked", "online"], ["dev-01", "dev-10", "dev-re", "gw-1"]),
        (["online", "offline"], ALL),
    ],
)
def test_status_filter(q: RegistryQueries, status: list[str], expected: list[str]) -> None:
    assert names(q, status=status) == expected


def test_online_depends_on_now_and_the_timeout(q: RegistryQueries) -> None:
    # last activity: dev-01 +100 s, dev-10 +150 s, dev-re +5 s; default timeout 300 s
    assert names(q, T + 304 * S, status=["online"]) == ["dev-01", "dev-10", "dev-re"]
    assert names(q, T + 305 * S, status=["online"]) == ["dev-01", "dev-10"]
    assert names(q, T + 400 * S, status=["online"]) == ["dev-10"]  # 300 s is not < 300 s
    assert names(q, T + 449 * S, status=["online"]) == ["dev-10"]
    assert names(q, T + 450 * S, status=["online"]) == []
    # dev-03 has its own 30 s timeout; dev-10's activity at +150 s is after these nows
    # (a clock running behind): recent, so online
    assert names(q, T + 129 * S, status=["online"]) == ["dev-01", "dev-03", "dev-10", "dev-re"]
    assert names(q, T + 130 * S, status=["online"]) == ["dev-01", "dev-10", "dev-re"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"^dev-0\d$", ["dev-01", "dev-02", "dev-03"]),
        ("1", ["dev-01", "dev-10", "gw-1"]),
        ("^gw", ["gw-1"]),
        ("(?i)^DEV-(EXP|RE)$", ["dev-exp", "dev-re"]),
        ("x{2}", []),
    ],
)
def test_identity_regex(q: RegistryQueries, pattern: str, expected: list[str]) -> None:
    assert names(q, identity=pattern) == expected


def test_ipaddress_is_the_derived_lastip(q: RegistryQueries) -> None:
    assert names(q, ipaddress="10.0.0.9") == ["dev-01"]
    assert names(q, ipaddress="10.0.0.1") == []  # superseded by telemetry
    assert names(q, ipaddress="10.0.0.8") == []  # older than the connect
    assert names(q, ipaddress="10.0.0.2") == ["dev-02"]
    assert names(q, ipaddress="10.0.0.5") == ["dev-re"]


def test_tag_and_tag_value(q: RegistryQueries) -> None:
    assert names(q, tag="zone") == ["dev-01", "dev-02", "dev-03"]
    assert names(q, tag="zone", tag_value="north") == ["dev-01", "dev-02"]
    assert names(q, tag="zone", tag_value="1") == []
    assert names(q, tag_value="north") == ["dev-01", "dev-02"]
    assert names(q, tag_value="east") == ["dev-03"]
    assert names(q, tag_value="1") == ["dev-01"]  # floor of dev-01
    assert names(q, tag="gone") == []  # only a deleted identity had it
    assert names(q, tag="nope") == []


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        # floors: dev-01 "1", dev-02 "10", dev-03 "2", dev-10 "abc"
        ([("floor", "gt", "2")], ["dev-02", "dev-10"]),  # 10 > 2; "abc" > "2" as text
        ([("floor", "lt", "10")], ["dev-01", "dev-03"]),  # numerically, not "2" < "10"
        ([("floor", "lte", "1")], ["dev-01"]),
        ([("floor", "gte", "2")], ["dev-02", "dev-03", "dev-10"]),
        ([("floor", "eq", "2.0")], ["dev-03"]),  # 2 == 2.0 as numbers
        ([("floor", "ne", "1")], ["dev-02", "dev-03", "dev-10"]),
        ([("floor", "eq", "abc")], ["dev-10"]),
        ([("floor", "lt", "b")], ["dev-01", "dev-02", "dev-03", "dev-10"]),  # text compare
        # zones: dev-01 [north], dev-02 [south, north], dev-03 [east]
        ([("zone", "eq", "south")], ["dev-02"]),
        ([("zone", "ne", "north")], ["dev-02", "dev-03"]),  # any value differs
        ([("zone", "gt", "m")], ["dev-01", "dev-02"]),
        ([("floor", "gte", "2"), ("zone", "ne", "north")], ["dev-02", "dev-03"]),
        ([("floor", "gte", "2"), ("zone", "eq", "west")], []),
        ([("missing", "ne", "x")], []),
    ],
)
def test_tag_criteria(
    q: RegistryQueries, criteria: list[tuple[str, str, str]], expected: list[str]
) -> None:
    assert names(q, tags=[TagCriterion(n, op, v) for n, op, v in criteria]) == expected


def test_before_and_after_on_lastseen(q: RegistryQueries) -> None:
    # last activity: dev-re +5, dev-02 +50, dev-01 +100, dev-03 +100, dev-10 +150; never: rest
    assert names(q, after_us=T + 60 * S) == ["dev-01", "dev-03", "dev-10"]
    assert names(q, after_us=T + 100 * S) == ["dev-10"]
    assert names(q, before_us=T + 100 * S) == ["dev-02", "dev-re"]
    assert names(q, before_us=T + 101 * S) == ["dev-01", "dev-02", "dev-03", "dev-re"]
    assert names(q, after_us=T + 5 * S, before_us=T + 150 * S) == ["dev-01", "dev-02", "dev-03"]
    assert names(q, after_us=0) == ["dev-01", "dev-02", "dev-03", "dev-10", "dev-re"]


def test_filters_combine(q: RegistryQueries) -> None:
    assert names(q, status=["whitelisted"], tag="zone", identity="0[23]$") == [
        "dev-02",
        "dev-03",
    ]
    assert names(q, status=["offline"], tag_value="north") == ["dev-02"]
    assert names(q, status=["online"], identities=["dev-02", "dev-10"]) == ["dev-10"]


# -- order and paging -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("identity", ALL),
        # last activity (never = 0 first), ties by name
        ("lastseen", ["dev-exp", "gw-1", "dev-re", "dev-02", "dev-01", "dev-03", "dev-10"]),
        # lastip: "" (none) first
        ("lastip", ["dev-10", "dev-exp", "gw-1", "dev-02", "dev-03", "dev-re", "dev-01"]),
    ],
)
def test_order_keys(q: RegistryQueries, key: str, expected: list[str]) -> None:
    asc, more = q.list(IdentityFilter(), Order(key), 10, 0, NOW)
    desc, _ = q.list(IdentityFilter(), Order(key, descending=True), 10, 0, NOW)
    assert [r["identity"] for r in asc] == expected
    assert [r["identity"] for r in desc] == expected[::-1]
    assert more is False


def test_order_by_reported_state(q: RegistryQueries) -> None:
    # temp: dev-02 3, dev-01 21.5, dev-10 100 (numbers, not "100" < "21.5" < "3"), then
    # strings dev-re "cold", dev-03 "hot"; dev-exp and gw-1 never reported it: last
    asc, _ = q.list(IdentityFilter(), Order("state.temp"), 10, 0, NOW)
    desc, _ = q.list(IdentityFilter(), Order("state.temp", descending=True), 10, 0, NOW)
    assert [r["identity"] for r in asc] == [
        "dev-02", "dev-01", "dev-10", "dev-re", "dev-03", "dev-exp", "gw-1",
    ]  # fmt: skip
    assert [r["identity"] for r in desc] == [
        "dev-03", "dev-re", "dev-10", "dev-01", "dev-02", "gw-1", "dev-exp",
    ]  # fmt: skip
    # a page of the ordered list still carries each row's state
    assert asc[1]["state"]["temp"]["reported"] == 21.5
    assert asc[3]["state"]["temp"]["reported"] == "cold"
    # nobody reported it: the name order
    none, _ = q.list(IdentityFilter(), Order("state.nope"), 10, 0, NOW)
    assert [r["identity"] for r in none] == ALL
    # the resource name is bound, not spliced
    odd, _ = q.list(IdentityFilter(), Order("state.x' OR 1=1 --"), 10, 0, NOW)
    assert [r["identity"] for r in odd] == ALL


def test_list_rows_equal_get(q: RegistryQueries) -> None:
    rows, _ = q.list(IdentityFilter(), Order(), 10, 0, NOW)
    assert rows == [q.get(name, NOW) for name in ALL]


@pytest.mark.parametrize(
    ("limit", "offset", "expected", "more"),
    [
        (3, 0, ["dev-01", "dev-02", "dev-03"], True),
        (3, 3, ["dev-10", "dev-exp", "dev-re"], True),
        (3, 4, ["dev-exp", "dev-re", "gw-1"], False),
        (3, 6, ["gw-1"], False),
        (3, 7, [], False),
        (7, 0, ALL, False),
        (6, 0, ALL[:6], True),
        (0, 0, [], True),
    ],
)
def test_limit_offset_and_may_load_more(
    q: RegistryQueries, limit: int, offset: int, expected: list[str], more: bool
) -> None:
    rows, may_load_more = q.list(IdentityFilter(), Order(), limit, offset, NOW)
    assert [r["identity"] for r in rows] == expected
    assert may_load_more is more


def test_names_max_rows(q: RegistryQueries) -> None:
    assert q.names(IdentityFilter(), NOW, max_rows=2) == ["dev-01", "dev-02"]


# -- tags, reported values, definitions -------------------------------------------------


def test_tag_names_and_values(q: RegistryQueries) -> None:
    assert q.tag_names() == ["floor", "zone"]  # "gone" belonged to a deleted identity
    assert q.tag_values("zone") == ["east", "north", "south"]
    assert q.tag_values("floor") == ["1", "10", "2", "abc"]
    assert q.tag_values("gone") == []
    assert q.tag_values("nope") == []


def test_reported_values_by_kind(q: RegistryQueries) -> None:
    reported = q.reported("dev-01")
    at = T + 99 * S
    assert reported == {
        "mode": {"value": "auto", "ts_us": at, "quality": 0},
        "on": {"value": True, "ts_us": at, "quality": 0},
        "setpoint": {"value": 22, "ts_us": at, "quality": 0},
        "temp": {"value": 21.5, "ts_us": at, "quality": 0},
    }
    assert type(reported["on"]["value"]) is bool
    assert type(reported["setpoint"]["value"]) is int  # sent as 22: an int comes back an int
    assert q.reported("dev-03") == {"temp": {"value": "hot", "ts_us": T + 29 * S, "quality": 0}}
    assert q.reported("gw-1") == {}


def test_definitions(q: RegistryQueries) -> None:
    assert q.definitions() == {
        "mode": {
            "definition": ResourceDefinition(format="string", settable=True),
            "updated_us": T + 9 * S,
            "updated_by": "admin",
        },
        "temp": {
            "definition": ResourceDefinition(format="number", unit="degC"),
            "updated_us": T + 8 * S,
            "updated_by": "admin",
        },
    }


# -- device metrics ---------------------------------------------------------------------

# publish_resource_count per batch, by minute after T:
#   0: 2 (dev-del), 1 (dev-re), 1 (dev-02), 1 (dev-03)   1: 4 (dev-01)   2: 1 (dev-10)
#   7: 3 (m-1)   8: 6 (m-1)   62: 5 (m-1)
PRC = "publish_resource_count"


@pytest.mark.parametrize(
    ("window", "fn", "expected"),
    [
        ("1m", "count", [(0, 4), (1, 1), (2, 1), (7, 1), (8, 1), (62, 1)]),
        ("1m", "sum", [(0, 5.0), (1, 4.0), (2, 1.0), (7, 3.0), (8, 6.0), (62, 5.0)]),
        ("1m", "avg", [(0, 1.25), (1, 4.0), (2, 1.0), (7, 3.0), (8, 6.0), (62, 5.0)]),
        ("1m", "min", [(0, 1.0), (1, 4.0), (2, 1.0), (7, 3.0), (8, 6.0), (62, 5.0)]),
        ("1m", "max", [(0, 2.0), (1, 4.0), (2, 1.0), (7, 3.0), (8, 6.0), (62, 5.0)]),
        ("5m", "count", [(0, 6), (5, 2), (60, 1)]),
        ("5m", "sum", [(0, 10.0), (5, 9.0), (60, 5.0)]),
        ("5m", "avg", [(0, 10 / 6), (5, 4.5), (60, 5.0)]),
        ("5m", "min", [(0, 1.0), (5, 3.0), (60, 5.0)]),
        ("5m", "max", [(0, 4.0), (5, 6.0), (60, 5.0)]),
        ("1h", "count", [(0, 8), (60, 1)]),
        ("1h", "sum", [(0, 19.0), (60, 5.0)]),
        ("1h", "avg", [(0, 2.375), (60, 5.0)]),
        ("1h", "min", [(0, 1.0), (60, 5.0)]),
        ("1h", "max", [(0, 6.0), (60, 5.0)]),
    ],
)
def test_metrics_windows_and_functions(
    q: RegistryQueries, window: str, fn: str, expected: list[tuple[int, float]]
) -> None:
    got = q.metrics(PRC, window, fn, T, T + 2 * 60 * MIN)
    assert got == [{"time_us": T + m * MIN, "value": pytest.approx(v)} for m, v in expected]
    for row in got:
        assert type(row["value"]) is (int if fn == "count" else float)


def test_metrics_range_selects_bucket_starts(q: RegistryQueries) -> None:
    def times(window: str, start: int, end: int) -> list[int]:
        return [(r["time_us"] - T) // MIN for r in q.metrics(PRC, window, "sum", start, end)]

    assert times("1m", T + MIN, T + 8 * MIN) == [1, 2, 7]
    assert times("5m", T + 1, T + 2 * 60 * MIN) == [5, 60]  # the bucket at 0 starts before
    assert times("5m", T, T + 5 * MIN) == [0]  # end is exclusive
    assert times("1h", T - 60 * MIN, T + 60 * MIN) == [0]
    assert times("1h", T + 2 * 60 * MIN, T + 3 * 60 * MIN) == []
    # identity events count too: connects at +50 s and +100 s, provisionings at +5, +10 s
    assert q.metrics("connection", "1m", "count", T, T + MIN * 60) == [
        {"time_us": T, "value": 1},
        {"time_us": T + MIN, "value": 1},
    ]
    assert q.metrics("provisioning", "1h", "sum", T, T + MIN * 60) == [{"time_us": T, "value": 2.0}]
    assert q.metrics("publish_count", "1h", "count", T, T + 2 * 60 * MIN) == [
        {"time_us": T, "value": 8},
        {"time_us": T + 60 * MIN, "value": 1},
    ]
    assert q.metrics("nope", "1h", "count", T, T + MIN) == []
    # any 64-bit bounds are valid: before 1970 and after 2106 are simply empty
    assert times("1h", -(2**63), 2**63 - 1) == [0, 60]
    assert times("1h", -(2**63), 0) == []


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda q: q.count(IdentityFilter(status=["busy"]), NOW), "status"),
        (lambda q: q.count(IdentityFilter(identity="("), NOW), "identity"),
        (lambda q: q.names(IdentityFilter(identity="a{2,1}"), NOW), "identity"),
        (lambda q: q.list(IdentityFilter(identity="[z-a]"), Order(), 1, 0, NOW), "identity"),
        (lambda q: q.count(IdentityFilter(tags=[TagCriterion("a", "like", "b")]), NOW), "tags"),
        (lambda q: q.list(IdentityFilter(), Order("status"), 1, 0, NOW), "order"),
        (lambda q: q.list(IdentityFilter(), Order("state."), 1, 0, NOW), "order"),
        (lambda q: q.list(IdentityFilter(), Order("identity; DROP"), 1, 0, NOW), "order"),
        (lambda q: q.list(IdentityFilter(), Order(), -1, 0, NOW), "limit"),
        (lambda q: q.list(IdentityFilter(), Order(), 1, -1, NOW), "offset"),
        (lambda q: q.list(IdentityFilter(), Order(), 10**9, 0, NOW), "limit"),
        (lambda q: q.names(IdentityFilter(), NOW, max_rows=-1), "max_rows"),
        (lambda q: q.count(IdentityFilter(before_us=2**63), NOW), "before"),
        (lambda q: q.count(IdentityFilter(after_us=-(2**64)), NOW), "after"),
        (lambda q: q.count(IdentityFilter(), 2**70), "now"),
        (lambda q: q.metrics(PRC, "1m", "sum", 2**63, T), "start_time"),
        (lambda q: q.metrics(PRC, "2m", "sum", T, T + MIN), "aggregate_window"),
        (lambda q: q.metrics(PRC, "1m", "median", T, T + MIN), "aggregate_fn"),
    ],
)
def test_query_errors(q: RegistryQueries, call: Any, field: str) -> None:
    with pytest.raises(QueryError) as info:
        call(q)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{field}: ")


def test_the_store_still_answers_after_a_bad_regex(q: RegistryQueries) -> None:
    with pytest.raises(QueryError):
        q.count(IdentityFilter(identity="("), NOW)
    assert q.count(IdentityFilter(), NOW) == len(ALL)


# -- the tag comparison alone, against a model of it ------------------------------------

_word = st.text(alphabet="abcxyz", min_size=1, max_size=3)
_num = st.one_of(
    st.integers(-20, 20).map(str),
    st.integers(-200, 200).map(lambda n: f"{n / 8}"),
)
_PY_OPS = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
}


def _holds(values: list[str], op: str, criterion: str) -> bool:
    """The documented rule, written independently: numbers when both parse."""

    def num(s: str) -> float | None:
        try:
            return float(s)
        except ValueError:
            return None

    c = num(criterion)
    for v in values:
        n = num(v)
        if (n is not None and c is not None and _PY_OPS[op](n, c)) or (
            (n is None or c is None) and _PY_OPS[op](v, criterion)
        ):
            return True
    return False


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.one_of(_word, _num), max_size=3),
    op=st.sampled_from(sorted(_PY_OPS)),
    criterion=st.one_of(_word, _num),
)
def test_tag_criterion_sql_matches_the_rule(
    chdb_store: ChdbStore, values: list[str], op: str, criterion: str
) -> None:
    sql = (
        f"SELECT {_tag_criterion_sql(0, op)} FROM (SELECT map('t', {{vals:Array(String)}}) AS tags)"
    )
    got = chdb_store.execute(sql, {"vals": values, "tn0": "t", "tv0": criterion}).rows
    assert bool(got[0][0]) is _holds(values, op, criterion)
