"""The live stream over HTTP: ``GET /api/v1/stream`` (with ``access_token`` and
``Last-Event-ID``) and the subscription routes.

httpx's ASGITransport reads a whole response before returning it, which an endless
event stream never finishes, so the stream itself is read through :class:`AsgiStream`
(the app called directly, with a client that can disconnect), and once over a real
uvicorn server on an ephemeral port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Message

from millrace.api.stream import StreamHub
from tests.api.conftest import V1, Api, MakeApi, assert_bad_field, error_of


def parse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            event[name] = value
        event["data"] = json.loads(event["data"])
        events.append(event)
    return events


class AsgiStream:
    """One GET on the app, read event by event; ``disconnect()`` hangs up."""

    def __init__(self, api: Api, query: str = "", headers: dict[str, str] | None = None) -> None:
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"{V1}/stream",
            "raw_path": f"{V1}/stream".encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self._hangup = asyncio.Event()
        self._requested = False
        self._buffer = ""
        self._events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(api.app(self.scope, self._receive, self._send))

    async def _receive(self) -> Message:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._hangup.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        await self.messages.put(message)

    async def start(self) -> tuple[int, dict[str, str]]:
        message = await asyncio.wait_for(self.messages.get(), 5)
        assert message["type"] == "http.response.start"
        headers = {k.decode(): v.decode() for k, v in message["headers"]}
        return message["status"], headers

    async def body(self) -> bytes:
        """The whole body of a response that ends (an error)."""
        out = b""
        while True:
            message = await asyncio.wait_for(self.messages.get(), 5)
            out += message.get("body", b"")
            if not message.get("more_body"):
                return out

    async def next(self) -> dict[str, Any]:
        while not self._events:
            message = await asyncio.wait_for(self.messages.get(), 5)
            assert message.get("more_body"), "the stream ended"
            self._buffer += message["body"].decode()
            complete, _, self._buffer = self._buffer.rpartition("\n\n")
            self._events += parse_events(complete)
        return self._events.pop(0)

    async def disconnect(self) -> None:
        self._hangup.set()
        await asyncio.wait_for(self.task, 5)


@pytest.fixture
async def streaming(make_api: MakeApi) -> AsyncIterator[tuple[Api, StreamHub]]:
    api = await make_api()
    hub = StreamHub(heartbeat_s=30)
    api.ctx.stream = hub
    yield api, hub


async def open_stream(
    api: Api, query: str = "", headers: dict[str, str] | None = None
) -> tuple[AsgiStream, dict[str, Any]]:
    stream = AsgiStream(api, query, {"authorization": f"Bearer {api.viewer}", **(headers or {})})
    status, response_headers = await stream.start()
    assert status == 200
    assert response_headers["content-type"].startswith("text/event-stream")
    assert response_headers["cache-control"] == "no-cache"
    hello = await stream.next()
    assert hello["event"] == "hello"
    return stream, hello


async def subscribe(api: Api, stream_id: str, body: Any, key: str = "viewer") -> httpx.Response:
    return await api.client.post(
        f"{V1}/stream/{stream_id}/subscriptions", json=body, headers=api.auth(api._key(key))
    )


async def test_subscriptions_are_created_listed_and_deleted(
    streaming: tuple[Api, StreamHub],
) -> None:
    api, hub = streaming
    stream, hello = await open_stream(api)
    sid = hello["data"]["stream_id"]
    r = await subscribe(
        api, sid, {"kind": "alarm", "filters": {"identity": "press-1", "priority_range": "10,20"}}
    )
    assert r.status_code == 201, r.text
    sub = r.json()["data"]
    assert sub == {
        "id": sub["id"],
        "kind": "alarm",
        "filters": {"identity": ["press-1"], "priority_range": [10, 20]},
    }
    r = await subscribe(api, sid, {"kind": "deviation"})
    assert r.status_code == 201
    other = r.json()["data"]
    assert other["filters"] == {}

    listed = await api.get(f"/stream/{sid}/subscriptions")
    assert listed.status_code == 200
    assert listed.json() == {"data": [sub, other]}

    hub.publish("alarm", {"identity": "press-1", "priority": 15, "n": 1})
    hub.publish("alarm", {"identity": "press-1", "priority": 30, "n": 2})
    hub.publish("deviation", {"resource_id": "r", "deviated": True})
    first, second = await stream.next(), await stream.next()
    assert (first["event"], first["data"]) == (
        "alarm",
        {"subscriptions": [sub["id"]], "data": {"identity": "press-1", "priority": 15, "n": 1}},
    )
    assert first["id"] == f"{sid}:1"
    assert second["event"] == "deviation" and second["id"] == f"{sid}:2"

    path = f"{V1}/stream/{sid}/subscriptions/{sub['id']}"
    r = await api.client.delete(path, headers=api.auth(api.viewer))
    assert r.status_code == 204 and r.content == b""
    r = await api.client.delete(path, headers=api.auth(api.viewer))
    assert r.status_code == 404
    assert error_of(r)["details"][0]["field"] == "subscription_id"
    listed = await api.get(f"/stream/{sid}/subscriptions")
    assert listed.json() == {"data": [other]}
    await stream.disconnect()


@pytest.mark.parametrize(
    "body,field_name",
    [
        ({"kind": "alarms"}, "body.kind"),
        ({"filters": {}}, "body.kind"),
        ({"kind": "alarm", "filters": {"resource_ids": "x"}}, "body.filters.resource_ids"),
        ({"kind": "alarm", "filters": {"priority_range": "9,1"}}, "body.filters.priority_range"),
        ({"kind": "deviation", "filters": {"deviated": "yes"}}, "body.filters.deviated"),
        ({"kind": "latest", "extra": 1}, "body.extra"),
    ],
)
async def test_bad_subscriptions_are_400_naming_the_field(
    streaming: tuple[Api, StreamHub], body: dict[str, Any], field_name: str
) -> None:
    api, hub = streaming
    viewer_key_id = api.viewer.split("_")[1]  # mr_<id>_<secret>
    sid = hub.open(None, viewer_key_id).stream_id
    assert_bad_field(await subscribe(api, sid, body), field_name)


async def test_unknown_or_foreign_streams_are_404(streaming: tuple[Api, StreamHub]) -> None:
    api, _ = streaming
    stream, hello = await open_stream(api)
    sid = hello["data"]["stream_id"]
    for stream_id, key in (("no-such-stream", "viewer"), (sid, "admin")):
        r = await subscribe(api, stream_id, {"kind": "alarm"}, key=key)
        assert r.status_code == 404, r.text
        assert error_of(r)["details"][0]["field"] == "stream_id"
        r = await api.get(f"/stream/{stream_id}/subscriptions", key=key)
        assert r.status_code == 404
        r = await api.client.delete(
            f"{V1}/stream/{stream_id}/subscriptions/x", headers=api.auth(api._key(key))
        )
        assert r.status_code == 404
    await stream.disconnect()


async def test_without_a_hub_the_routes_answer_503(make_api: MakeApi) -> None:
    api = await make_api()
    for r in (
        await api.get("/stream"),
        await subscribe(api, "s", {"kind": "alarm"}),
        await api.get("/stream/s/subscriptions"),
        await api.client.delete(f"{V1}/stream/s/subscriptions/x", headers=api.auth(api.viewer)),
    ):
        assert r.status_code == 503, r.text
        assert "not enabled" in error_of(r)["message"]


async def test_access_token_query_parameter(streaming: tuple[Api, StreamHub]) -> None:
    api, hub = streaming
    stream = AsgiStream(api, f"access_token={api.viewer}")
    assert (await stream.start())[0] == 200
    hello = await stream.next()
    assert hello["event"] == "hello"
    await stream.disconnect()

    for query, headers in (
        ("access_token=nope", {}),
        (f"access_token={api.viewer}x", {}),
        ("access_token=", {}),
        # an Authorization header is used when there is one, even a bad one
        (f"access_token={api.viewer}", {"authorization": "Bearer nope"}),
        (f"access_token={api.viewer}", {"authorization": "Basic dXNlcjpwYXNz"}),
    ):
        bad = AsgiStream(api, query, headers)
        assert (await bad.start())[0] == 401, query
        body = json.loads(await bad.body())
        assert body["error"]["code"] == "unauthorized"
        assert api.viewer not in json.dumps(body)
        await bad.task
    # only the stream itself takes the key from the query
    r = await api.client.get(
        f"{V1}/stream/{hello['data']['stream_id']}/subscriptions",
        params={"access_token": api.viewer},
    )
    assert r.status_code == 401
    r = await api.client.get(f"{V1}/me", params={"access_token": api.viewer})
    assert r.status_code == 401
    assert hub.stats()["connected"] == 0


async def test_reconnect_with_last_event_id_resumes(streaming: tuple[Api, StreamHub]) -> None:
    api, hub = streaming
    stream, hello = await open_stream(api)
    sid = hello["data"]["stream_id"]
    assert hello["id"] == f"{sid}:0"
    r = await subscribe(api, sid, {"kind": "latest", "filters": {"identities": "press-1"}})
    assert r.status_code == 201
    hub.publish("latest", {"identity": "press-1", "value": 1})
    seen = await stream.next()
    await stream.disconnect()  # the server notices the client is gone
    assert hub.stats()["connected"] == 0
    hub.publish("latest", {"identity": "press-1", "value": 2})
    hub.publish("latest", {"identity": "press-2", "value": 0})
    hub.publish("latest", {"identity": "press-1", "value": 3})

    resumed, hello2 = await open_stream(api, headers={"Last-Event-ID": seen["id"]})
    assert hello2["data"] == {"stream_id": sid, "resumed": True}
    assert [(await resumed.next())["data"]["data"]["value"] for _ in range(2)] == [2, 3]
    await resumed.disconnect()

    # the query parameter works too; the header wins over it
    again, hello3 = await open_stream(api, f"last_event_id={sid}:0")
    assert hello3["data"]["resumed"] is True
    assert [(await again.next())["data"]["data"]["value"] for _ in range(3)] == [1, 2, 3]
    await again.disconnect()
    both, _ = await open_stream(api, "last_event_id=garbage", {"Last-Event-ID": f"{sid}:2"})
    assert (await both.next())["data"]["data"]["value"] == 3
    await both.disconnect()


async def test_a_garbage_last_event_id_gets_a_fresh_stream_and_a_notice(
    streaming: tuple[Api, StreamHub],
) -> None:
    api, _ = streaming
    stream, hello = await open_stream(api, headers={"Last-Event-ID": "not-an-id"})
    assert hello["data"]["resumed"] is False
    notice = await stream.next()
    assert notice["event"] == "notice"
    assert notice["data"]["code"] == "invalid_last_event_id"
    await stream.disconnect()


async def test_heartbeats(make_api: MakeApi) -> None:
    api = await make_api()
    api.ctx.stream = StreamHub(heartbeat_s=0.02)
    stream, hello = await open_stream(api)
    for _ in range(2):
        beat = await stream.next()
        assert beat["event"] == "heartbeat"
        assert beat["id"] == hello["id"]
    await stream.disconnect()


async def test_over_a_real_server(streaming: tuple[Api, StreamHub]) -> None:
    """Through uvicorn and a TCP socket: EventSource's way (key in the query), a
    disconnect the server notices, and a resume with the Last-Event-ID header."""
    api, hub = streaming
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        api.app, log_level="warning", lifespan="off", access_log=False, ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            url, auth = f"{V1}/stream", {"Authorization": f"Bearer {api.viewer}"}
            async with http.stream("GET", url, params={"access_token": api.viewer}) as r:
                assert r.status_code == 200
                events = sse_lines(r.aiter_lines())
                hello = await anext(events)
                sid = hello["data"]["stream_id"]
                s = await http.post(
                    f"{url}/{sid}/subscriptions", json={"kind": "alarm"}, headers=auth
                )
                assert s.status_code == 201
                hub.publish("alarm", {"n": 1})
                first = await anext(events)
                assert first["data"]["data"] == {"n": 1}
            for _ in range(500):
                if hub.stats()["connected"] == 0:
                    break
                await asyncio.sleep(0.01)
            assert hub.stats()["connected"] == 0
            hub.publish("alarm", {"n": 2})
            headers = {**auth, "Last-Event-ID": first["id"]}
            async with http.stream("GET", url, headers=headers) as r:
                events = sse_lines(r.aiter_lines())
                assert (await anext(events))["data"] == {"stream_id": sid, "resumed": True}
                assert (await anext(events))["data"]["data"] == {"n": 2}
                # shutting down: the hub ends the stream, so the server can stop
                hub.close()
                assert (await anext(events))["data"]["code"] == "shutdown"
                with pytest.raises(StopAsyncIteration):
                    await anext(events)
            r = await http.get(url, headers=auth)
            assert r.status_code == 503
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def sse_lines(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    block: list[str] = []
    async for line in lines:
        if line:
            block.append(line)
        elif block:
            yield parse_events("\n".join(block))[0]
            block = []


async def test_activities_carry_the_audit_trail_so_viewers_cannot_subscribe(
    streaming: tuple[Api, StreamHub],
) -> None:
    api, hub = streaming
    for key, expected in (("viewer", 403), ("operator", 201)):
        key_id = api._key(key).split("_")[1]  # type: ignore[union-attr]
        sid = hub.open(None, key_id).stream_id
        r = await subscribe(api, sid, {"kind": "activity"}, key=key)
        assert r.status_code == expected, r.text
