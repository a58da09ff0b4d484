"""The live-stream hub: subscriptions and filters, the ring buffer, resume with
``Last-Event-ID``, fresh streams on bad ids, and slow clients dropped without ever
holding up the publisher. Driven through :meth:`Connection.events` directly (the HTTP
side is in ``test_stream_routes.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.api.stream import Connection, StreamHub, StreamLimitError, StreamNotFoundError
from millrace.api.stream_filters import FilterError, compile_filters


def parse(raw: bytes) -> dict[str, Any]:
    """One text/event-stream event as {"id", "event", "data", "retry"}."""
    text = raw.decode()
    assert text.endswith("\n\n"), text
    event: dict[str, Any] = {}
    for line in text[:-2].split("\n"):
        name, _, value = line.partition(": ")
        event[name] = value
    event["data"] = json.loads(event["data"])
    return event


class Client:
    """A client reading one connection's events; a read that has to wait stays
    pending, so checking that nothing is there does not end the connection."""

    open: ClassVar[list[Client]] = []

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.events = conn.events()
        self._pending: asyncio.Future[bytes] | None = None
        Client.open.append(self)

    def _read(self) -> asyncio.Future[bytes]:
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(self.events))
        return self._pending

    async def next(self, timeout_s: float = 5.0) -> dict[str, Any]:
        pending = self._read()
        try:
            raw = await asyncio.wait_for(asyncio.shield(pending), timeout_s)
        except TimeoutError:
            raise AssertionError(f"no event within {timeout_s} s") from None
        finally:
            if pending.done():
                self._pending = None
        return parse(raw)

    async def take(self, n: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(n)]

    async def idle(self) -> bool:
        """Nothing more to read (the next read waits for an item or the heartbeat)."""
        done, _ = await asyncio.wait({self._read()}, timeout=0.005)
        return not done

    async def ended(self) -> bool:
        try:
            await self.next()
        except StopAsyncIteration:
            return True
        return False

    async def close(self) -> None:
        """The client goes away (the server's generator is closed, as on a disconnect)."""
        if self in Client.open:
            Client.open.remove(self)
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await self._pending
            self._pending = None
        await self.events.aclose()


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    for client in list(Client.open):
        await client.close()


async def connect(
    hub: StreamHub, last_event_id: str | None = None, owner: str = "k1"
) -> tuple[Client, dict[str, Any]]:
    client = Client(hub.open(last_event_id, owner))
    hello = await client.next()
    assert hello["event"] == "hello"
    return client, hello


def seq_of(event: dict[str, Any]) -> int:
    return int(event["id"].rpartition(":")[2])


# -- filters ----------------------------------------------------------------------------

ALARM = {
    "activity_type": "alarm",
    "identity": "press-1",
    "signal": "temp",
    "type": "high_limit",
    "priority": 200,
    "state": "active",
    "acknowledged": False,
    "discarded": False,
}
AUDIT = {"activity_type": "audit", "actor": "alice", "target_type": "identity", "action": "update"}
DEVIATION = {"resource_id": "opcua:plc1", "service_id": "opcua", "deviated": True}
LATEST = {"identity": "press-1", "signal": "temp", "value": 1.5, "quality": 0}

MATCH_CASES = [
    ("alarm", {}, ALARM, True),
    ("alarm", {"identity": "press-1"}, ALARM, True),
    ("alarm", {"identity": ["press-2", "press-1"]}, ALARM, True),
    ("alarm", {"identity": "press-2"}, ALARM, False),
    ("alarm", {"signal": "rpm, temp"}, ALARM, True),
    ("alarm", {"type": "low_limit"}, ALARM, False),
    ("alarm", {"priority_range": "200,255"}, ALARM, True),
    ("alarm", {"priority_range": [0, 199]}, ALARM, False),
    ("alarm", {"state": "active"}, ALARM, True),
    ("alarm", {"state": "cleared"}, ALARM, False),
    ("alarm", {"state": "cleared"}, {**ALARM, "state": "cleared"}, True),
    ("alarm", {"include_acknowledged": True}, ALARM, False),
    ("alarm", {"include_acknowledged": "false"}, ALARM, True),
    ("alarm", {"include_acknowledged": "true"}, {**ALARM, "acknowledged": True}, True),
    ("alarm", {"include_discarded": False}, {**ALARM, "discarded": True}, False),
    ("activity", {"activity_type": "audit"}, ALARM, False),
    ("activity", {"activity_type": "audit", "actor": "alice"}, AUDIT, True),
    ("activity", {"actor": "bob"}, AUDIT, False),
    ("activity", {"identity": "press-1"}, AUDIT, False),
    ("activity", {"priority_range": "0,255"}, AUDIT, False),
    ("activity", {"include_discarded": False}, AUDIT, True),
    ("activity", {"include_discarded": True}, AUDIT, False),
    ("activity", {"action": "update"}, ALARM, False),
    ("activity", {"identity": "press-1", "state": "active"}, ALARM, True),
    ("deviation", {"service_ids": "opcua"}, DEVIATION, True),
    ("deviation", {"service_ids": "opcua", "resource_ids": "other"}, DEVIATION, False),
    ("deviation", {"service_ids": "mqtt", "resource_ids": ["opcua:plc1"]}, DEVIATION, True),
    ("deviation", {"deviated": False}, DEVIATION, False),
    ("deviation", {"deviated": "true"}, DEVIATION, True),
    ("latest", {"identities": "press-1", "signals": ["temp"]}, LATEST, True),
    ("latest", {"identity": "press-1", "signal": "rpm"}, LATEST, False),
]


@pytest.mark.parametrize("kind,filters,data,expected", MATCH_CASES)
def test_filters_match_like_the_list_endpoints(
    kind: str, filters: dict[str, Any], data: dict[str, Any], expected: bool
) -> None:
    assert compile_filters(kind, filters).match(data) is expected


BAD_FILTERS = [
    ("alarms", {}, "kind"),
    (None, {}, "kind"),
    ("alarm", {"resource_ids": "x"}, "filters.resource_ids"),
    ("alarm", {"limit": 10}, "filters.limit"),
    ("alarm", {"priority_range": "5,1"}, "filters.priority_range"),
    ("alarm", {"priority_range": "1,256"}, "filters.priority_range"),
    ("alarm", {"priority_range": "a,b"}, "filters.priority_range"),
    ("alarm", {"priority_range": [1, 2, 3]}, "filters.priority_range"),
    ("alarm", {"priority_range": [True, 2]}, "filters.priority_range"),
    ("alarm", {"state": "open"}, "filters.state"),
    ("alarm", {"include_acknowledged": "maybe"}, "filters.include_acknowledged"),
    ("activity", {"activity_type": "rule"}, "filters.activity_type"),
    ("deviation", {"deviated": 1}, "filters.deviated"),
    ("latest", {"identity": "a", "identities": "b"}, "filters.identities"),
    ("latest", {"identity": 5}, "filters.identity"),
    ("latest", {"signal": " , "}, "filters.signal"),
    ("latest", {"signal": ["a", 1]}, "filters.signal"),
]


@pytest.mark.parametrize("kind,filters,field_name", BAD_FILTERS)
def test_bad_kinds_and_filters_name_the_field(
    kind: Any, filters: dict[str, Any], field_name: str
) -> None:
    with pytest.raises(FilterError) as info:
        compile_filters(kind, filters)
    assert info.value.field == field_name
    assert field_name in str(info.value)


def test_filters_are_shown_back_normalized() -> None:
    hub = StreamHub()
    stream_id = hub.open(None, "k1").stream_id
    sub = hub.subscribe(
        stream_id,
        "latest",
        {"identities": "a, b,a", "signal": ["t"], "identity": None},
        "k1",
    )
    assert sub.describe() == {
        "id": sub.id,
        "kind": "latest",
        "filters": {"identity": ["a", "b"], "signal": ["t"]},
    }
    other = hub.subscribe(stream_id, "alarm", {"priority_range": " 3 , 9"}, "k1")
    assert other.filters == {"priority_range": [3, 9]}
    assert [s.id for s in hub.subscriptions(stream_id, "k1")] == [sub.id, other.id]
    assert hub.unsubscribe(stream_id, sub.id, "k1")
    assert not hub.unsubscribe(stream_id, sub.id, "k1")
    assert [s.id for s in hub.subscriptions(stream_id, "k1")] == [other.id]


def test_streams_belong_to_the_key_that_opened_them() -> None:
    hub = StreamHub()
    stream_id = hub.open(None, "k1").stream_id
    for call in (
        lambda: hub.subscribe(stream_id, "alarm", {}, "k2"),
        lambda: hub.subscriptions(stream_id, "k2"),
        lambda: hub.unsubscribe(stream_id, "x", "k2"),
        lambda: hub.subscriptions("no-such-stream", "k1"),
    ):
        with pytest.raises(StreamNotFoundError):
            call()


def test_limits_on_subscriptions_and_streams() -> None:
    hub = StreamHub(max_subscriptions=2, max_streams=2)
    first = hub.open(None, "k1")
    hub.subscribe(first.stream_id, "alarm", {}, "k1")
    hub.subscribe(first.stream_id, "alarm", {}, "k1")
    with pytest.raises(StreamLimitError):
        hub.subscribe(first.stream_id, "alarm", {}, "k1")
    second = hub.open(None, "k1")
    with pytest.raises(StreamLimitError):  # both connected
        hub.open(None, "k1")
    second.close()
    third = hub.open(None, "k1")  # the disconnected one makes room
    assert {third.stream_id, first.stream_id} == set(hub._streams)


# -- delivery ---------------------------------------------------------------------------


async def test_items_reach_only_matching_subscriptions_once() -> None:
    hub = StreamHub()
    client, hello = await connect(hub)
    sid = hello["data"]["stream_id"]
    assert hello["id"] == f"{sid}:0" and hello["data"] == {"stream_id": sid, "resumed": False}
    assert hello["retry"] == "3000"
    a = hub.subscribe(sid, "alarm", {"identity": "press-1"}, "k1")
    b = hub.subscribe(sid, "alarm", {"priority_range": "100,255"}, "k1")
    assert hub.publish("alarm", {**ALARM, "priority": 50}) == 1  # a only
    assert hub.publish("alarm", {**ALARM, "identity": "x", "priority": 50}) is None  # nobody
    assert hub.publish("latest", LATEST) is None  # no latest subscription
    assert hub.publish("alarm", ALARM) == 2  # both, one event
    assert hub.publish("alarm", {**ALARM, "identity": "x"}) == 3  # b only
    events = await client.take(3)
    assert [(e["event"], seq_of(e), e["data"]["subscriptions"]) for e in events] == [
        ("alarm", 1, [a.id]),
        ("alarm", 2, [a.id, b.id]),
        ("alarm", 3, [b.id]),
    ]
    assert events[1]["data"]["data"] == ALARM
    assert all(e["id"].startswith(f"{sid}:") for e in events)
    assert await client.idle()
    assert hub.stats()["buffered"] == 3  # the unwanted items were not kept


async def test_a_subscription_sees_only_items_published_after_it() -> None:
    hub = StreamHub()
    first, hello = await connect(hub)
    sid = hello["data"]["stream_id"]
    hub.subscribe(sid, "latest", {}, "k1")
    hub.publish("latest", LATEST)
    late = hub.subscribe(sid, "latest", {}, "k1")
    hub.publish("latest", LATEST)
    events = await first.take(2)
    assert len(events[0]["data"]["subscriptions"]) == 1
    assert late.id in events[1]["data"]["subscriptions"]
    await first.close()
    again, _ = await connect(hub, f"{sid}:0")  # replays both: the late one only matches #2
    replay = await again.take(2)
    assert [e["data"]["subscriptions"] for e in replay] == [
        e["data"]["subscriptions"] for e in events
    ]


async def test_heartbeat_moves_the_resume_point() -> None:
    hub = StreamHub(heartbeat_s=0.01)
    client, hello = await connect(hub)
    sid = hello["data"]["stream_id"]
    hub.subscribe(sid, "latest", {"identity": "press-1"}, "k1")
    hub.publish("latest", LATEST)
    other, other_hello = await connect(hub, owner="k2")
    hub.subscribe(other_hello["data"]["stream_id"], "latest", {}, "k2")
    hub.publish("latest", {**LATEST, "identity": "press-2"})  # kept, for the other stream
    assert seq_of(await client.next()) == 1
    beat = await client.next()
    assert beat["event"] == "heartbeat" and beat["id"] == f"{sid}:2"
    assert beat["data"]["time"].endswith("Z")
    await other.close()


# -- resume -----------------------------------------------------------------------------


async def test_resume_delivers_what_was_missed_then_continues_live() -> None:
    hub = StreamHub()
    client, hello = await connect(hub)
    sid = hello["data"]["stream_id"]
    sub = hub.subscribe(sid, "alarm", {"identity": "press-1"}, "k1")
    for i in range(3):
        hub.publish("alarm", {**ALARM, "n": i})
    got = await client.take(1)
    await client.take(2)  # sent, but the connection broke before they arrived
    await client.close()
    assert hub.stats()["connected"] == 0
    hub.publish("alarm", {**ALARM, "n": 3})
    hub.publish("alarm", {**ALARM, "identity": "x"})
    resumed, hello2 = await connect(hub, got[-1]["id"])
    assert hello2["data"] == {"stream_id": sid, "resumed": True}
    assert hello2["id"] == got[-1]["id"]
    missed = await resumed.take(3)
    assert [e["data"]["data"]["n"] for e in missed] == [1, 2, 3]
    assert all(e["data"]["subscriptions"] == [sub.id] for e in missed)
    hub.publish("alarm", {**ALARM, "n": 4})
    assert (await resumed.next())["data"]["data"]["n"] == 4
    assert await resumed.idle()


async def test_a_resume_takes_the_stream_over_from_a_stale_connection() -> None:
    hub = StreamHub()
    old, hello = await connect(hub)
    sid = hello["data"]["stream_id"]
    hub.subscribe(sid, "latest", {}, "k1")
    new, _ = await connect(hub, hello["id"])
    assert await old.ended()
    hub.publish("latest", LATEST)
    assert seq_of(await new.next()) == 1
    assert hub.stats()["connected"] == 1  # the old connection's end did not detach it


GARBAGE_IDS = ["garbage", "abc:xyz", "x" * 5000, ":", "stream:", "a b c:1", "\u00e9t\u00e9:1"]


@pytest.mark.parametrize("last_event_id", GARBAGE_IDS)
async def test_a_garbage_last_event_id_starts_a_fresh_stream_with_a_notice(
    last_event_id: str,
) -> None:
    hub = StreamHub()
    client, hello = await connect(hub, last_event_id)
    assert hello["data"]["resumed"] is False
    notice = await client.next()
    assert notice["event"] == "notice" and "id" not in notice
    assert notice["data"]["code"] == "invalid_last_event_id"
    assert len(notice["data"]["message"]) < 300
    assert hub.subscriptions(hello["data"]["stream_id"], "k1") == []
    assert await client.idle()


async def test_unknown_expired_or_foreign_streams_start_fresh_with_a_notice() -> None:
    now = [0.0]
    hub = StreamHub(grace_s=60, retain_s=600, clock=lambda: now[0])
    client, hello = await connect(hub)
    sid = hello["data"]["stream_id"]
    hub.subscribe(sid, "latest", {}, "k1")
    hub.publish("latest", LATEST)
    await client.close()
    cases = [
        ("AAAAAAAAAAAAAAAAAAAAAA:0", "k1", "unknown_stream"),  # never existed
        (f"{sid}:0", "k2", "unknown_stream"),  # another key's stream
        (f"{sid}:99", "k1", "invalid_last_event_id"),  # ahead of the server
    ]
    for last_event_id, owner, code in cases:
        fresh, fresh_hello = await connect(hub, last_event_id, owner)
        assert fresh_hello["data"]["stream_id"] != sid
        assert (await fresh.next())["data"]["code"] == code
        await fresh.close()
    now[0] = 61.0  # past the grace period
    hub.publish("latest", LATEST)
    late, late_hello = await connect(hub, f"{sid}:1")
    assert late_hello["data"]["stream_id"] != sid
    assert (await late.next())["data"]["code"] == "unknown_stream"


async def test_an_empty_last_event_id_is_just_a_new_stream() -> None:
    hub = StreamHub()
    client, hello = await connect(hub, "  ")
    assert hello["data"]["resumed"] is False
    assert await client.idle()


async def test_the_ring_buffer_keeps_retain_s_and_says_when_events_were_evicted() -> None:
    now = [0.0]
    hub = StreamHub(retain_s=60, grace_s=300, clock=lambda: now[0])
    client, hello = await connect(hub)
    sid = hello["data"]["stream_id"]
    hub.subscribe(sid, "latest", {}, "k1")
    await client.close()
    for t in range(0, 100, 10):
        now[0] = float(t)
        hub.publish("latest", {**LATEST, "value": t})
    # at t=90 the items of t=0, 10, 20 are older than 60 s; t=30 is exactly 60 s old
    assert hub.stats()["buffered"] == 7
    resumed, _ = await connect(hub, hello["id"])
    notice = await resumed.next()
    assert notice["event"] == "notice" and notice["data"]["code"] == "events_evicted"
    assert notice["data"]["kinds"] == ["latest"]
    events = await resumed.take(7)
    assert [e["data"]["data"]["value"] for e in events] == [30, 40, 50, 60, 70, 80, 90]
    await resumed.close()
    # resuming after the evicted ones: nothing is missing, no notice
    again, _ = await connect(hub, events[2]["id"])
    assert [e["data"]["data"]["value"] for e in await again.take(4)] == [60, 70, 80, 90]
    assert await again.idle()


async def test_the_ring_buffer_is_bounded_by_count() -> None:
    hub = StreamHub(max_items=5)
    client, hello = await connect(hub)
    hub.subscribe(hello["data"]["stream_id"], "latest", {}, "k1")
    await client.close()
    for i in range(20):
        hub.publish("latest", {**LATEST, "value": i})
    assert hub.stats()["buffered"] == 5
    resumed, _ = await connect(hub, hello["id"])
    assert (await resumed.next())["data"]["code"] == "events_evicted"
    assert [e["data"]["data"]["value"] for e in await resumed.take(5)] == list(range(15, 20))


# the property: whatever the client got before the connection broke (a prefix of what
# the server sent), a resume with the id of the last event it got delivers each matching
# item it did not get exactly once, in order, and the stream then continues live
IDENTITIES = ("a", "b", "c")
KINDS = st.sampled_from(["alarm", "latest"])
subs = st.tuples(st.just("sub"), KINDS, st.sets(st.sampled_from(IDENTITIES)))
pubs = st.tuples(st.just("pub"), KINDS, st.sampled_from(IDENTITIES))
reads = st.tuples(st.just("read"), st.integers(0, 5), st.just(""))


class Model:
    """What the client should receive, computed without the hub."""

    def __init__(self) -> None:
        self.subs: list[tuple[str, str, frozenset[str], int]] = []  # id, kind, ids, since
        self.items: list[tuple[int, str, str, list[str]]] = []  # seq, kind, identity, subs

    def matching(self, kind: str, identity: str, seq: int) -> list[str]:
        return [
            sid
            for sid, k, ids, since in self.subs
            if k == kind and seq > since and (not ids or identity in ids)
        ]


async def apply(hub: StreamHub, model: Model, sid: str, op: tuple[Any, ...]) -> None:
    if op[0] == "sub":
        filters = {"identity": sorted(op[2])} if op[2] else {}
        sub = hub.subscribe(sid, op[1], filters, "k1")
        model.subs.append(
            (sub.id, op[1], frozenset(op[2]), model.items[-1][0] if model.items else 0)
        )
    elif op[0] == "pub":
        seq = (model.items[-1][0] if model.items else 0) + 1
        subs = model.matching(op[1], op[2], seq)
        kept = hub.publish(op[1], {"identity": op[2], "n": seq})
        assert kept == (seq if subs else None)
        if subs:
            model.items.append((seq, op[1], op[2], subs))


def delivered(events: list[dict[str, Any]]) -> list[tuple[int, str, str, list[str]]]:
    return [
        (seq_of(e), e["event"], e["data"]["data"]["identity"], e["data"]["subscriptions"])
        for e in events
    ]


@settings(max_examples=60, deadline=None)
@given(
    before=st.lists(st.one_of(subs, pubs, reads), max_size=25),
    lost=st.integers(0, 4),
    during=st.lists(st.one_of(subs, pubs), max_size=15),
    after=st.lists(pubs, max_size=5),
)
def test_resume_delivers_exactly_the_missed_matching_items(
    before: list[tuple[Any, ...]],
    lost: int,
    during: list[tuple[Any, ...]],
    after: list[tuple[Any, ...]],
) -> None:
    async def scenario() -> None:
        hub, model = StreamHub(queue_size=10_000), Model()
        client, hello = await connect(hub)
        sid = hello["data"]["stream_id"]
        got: list[dict[str, Any]] = []
        for op in before:
            if op[0] == "read":
                got += await client.take(min(op[1], len(client.conn.stream.queue)))
            else:
                await apply(hub, model, sid, op)
        sent = await client.take(len(client.conn.stream.queue))
        got += sent[: max(0, len(sent) - lost)]  # the tail of what was sent never arrived
        await client.close()
        for op in during:
            await apply(hub, model, sid, op)
        resumed, hello2 = await connect(hub, got[-1]["id"] if got else hello["id"])
        assert hello2["data"] == {"stream_id": sid, "resumed": True}
        last = seq_of(got[-1]) if got else 0
        missed = [item for item in model.items if item[0] > last]
        got += await resumed.take(len(missed))
        assert await resumed.idle()
        for op in after:
            await apply(hub, model, sid, op)
        got += await resumed.take(len(model.items) - len(got))
        assert delivered(got) == model.items
        assert await resumed.idle()
        await resumed.close()

    asyncio.run(scenario())


# -- slow clients -----------------------------------------------------------------------


def test_publishing_never_waits_for_a_client() -> None:
    assert not inspect.iscoroutinefunction(StreamHub.publish)
    hub = StreamHub(queue_size=100, max_items=1000)
    conn = hub.open(None, "k1")  # a client that never reads
    hub.subscribe(conn.stream_id, "latest", {}, "k1")
    for i in range(20_000):
        hub.publish("latest", {**LATEST, "value": i})
    assert len(conn.stream.queue) <= 100
    assert hub.stats() == {
        "streams": 1,
        "connected": 1,
        "buffered": 1000,
        "seq": 20_000,
        "dropped": 1,
    }


async def test_a_slow_client_is_dropped_with_a_final_event_and_can_resume() -> None:
    hub = StreamHub(queue_size=5)
    slow, slow_hello = await connect(hub, owner="slow")
    fast, fast_hello = await connect(hub, owner="fast")
    hub.subscribe(slow_hello["data"]["stream_id"], "latest", {}, "slow")
    hub.subscribe(fast_hello["data"]["stream_id"], "latest", {}, "fast")
    for i in range(20):
        hub.publish("latest", {**LATEST, "value": i})
        assert (await fast.next())["data"]["data"]["value"] == i  # unaffected
    dropped = await slow.next()
    assert dropped["event"] == "dropped" and "id" not in dropped
    assert dropped["data"]["stream_id"] == slow_hello["data"]["stream_id"]
    assert "5" in dropped["data"]["reason"]
    assert await slow.ended()
    assert hub.stats()["dropped"] == 1
    # the dropped stream can resume from the last event it received (here: none)
    resumed, hello = await connect(hub, slow_hello["id"], owner="slow")
    assert hello["data"]["resumed"] is True
    assert [e["data"]["data"]["value"] for e in await resumed.take(20)] == list(range(20))


async def test_close_ends_every_connection() -> None:
    hub = StreamHub()
    a, _ = await connect(hub)
    b, _ = await connect(hub, owner="k2")
    assert await a.idle()
    hub.close()
    for client in (a, b):
        notice = await client.next()
        assert notice["event"] == "notice" and notice["data"]["code"] == "shutdown"
        assert await client.ended()
    assert hub.stats()["connected"] == 0
    with pytest.raises(StreamLimitError):
        hub.open(None, "k1")
