"""Who may keep a live stream: revoking a key ends its streams (in this process at once,
through another process's key store within about two seconds), and one key cannot take
every stream slot of the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from millrace.api.auth import KeyStore
from millrace.api.stream import OwnerStreamLimitError, StreamHub, StreamLimitError
from tests.api.conftest import ENV_KEY, V1, Api, MakeApi, error_of
from tests.api.test_stream_routes import AsgiStream, open_stream, parse_events


def key_id(plaintext: str) -> str:
    return plaintext.split("_", 2)[1]


async def rest_of(stream: AsgiStream, timeout_s: float) -> list[dict[str, object]]:
    """The events until the response ends; fails if it does not end in ``timeout_s``."""

    async def read() -> list[dict[str, object]]:
        text = ""
        while True:
            message = await stream.messages.get()
            text += message.get("body", b"").decode()
            if not message.get("more_body"):
                return parse_events(text)

    events = await asyncio.wait_for(read(), timeout_s)
    await asyncio.wait_for(stream.task, timeout_s)
    return events


@pytest.fixture
async def streaming(make_api: MakeApi) -> AsyncIterator[Api]:
    api = await make_api()
    api.ctx.stream = StreamHub(heartbeat_s=30)
    yield api


# -- revocation -----------------------------------------------------------------------


async def test_revoking_a_key_ends_its_streams_within_a_second(streaming: Api) -> None:
    api = streaming
    stream, hello = await open_stream(api)
    sid = hello["data"]["stream_id"]
    other, _ = await open_stream(api, headers={"authorization": f"Bearer {api.operator}"})
    r = await api.client.delete(f"{V1}/keys/{key_id(api.viewer)}", headers=api.auth(api.admin))
    assert r.status_code == 204, r.text

    events = await rest_of(stream, 1.0)
    assert [e["event"] for e in events] == ["notice"], events
    assert events[0]["data"] == {"code": "revoked", "message": "the API key was revoked"}
    # the stream is gone: not resumable, its subscriptions not reachable
    assert api.ctx.stream is not None
    assert sid not in {s for s in api.ctx.stream._streams}
    # the operator's stream is untouched
    assert not other.task.done()
    await other.disconnect()


async def test_a_key_revoked_through_another_process_ends_its_streams(
    make_api: MakeApi, tmp_path: object
) -> None:
    """Two ``millrace api`` processes share ``api_keys.json``: each has its own store.
    The stream re-checks its key every second; the store re-reads a changed file at
    most every second."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "api_keys.json"
    api = await make_api(keys=KeyStore(path, env_key=ENV_KEY))
    api.ctx.stream = StreamHub(heartbeat_s=30)
    stream, _ = await open_stream(api)
    other_process = KeyStore(path)
    assert other_process.delete(key_id(api.viewer))

    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await rest_of(stream, 5.0)
    took = loop.time() - started
    assert [e["event"] for e in events] == ["notice"], events
    assert events[0]["data"]["code"] == "revoked"  # type: ignore[index]
    print(f"stream ended {took:.2f} s after the other process revoked its key")
    assert took < 5.0  # about two seconds: one reload interval and one check interval
    # and the key no longer opens anything here
    r = await api.client.get(f"{V1}/me", headers=api.auth(api.viewer))
    assert r.status_code == 401


async def test_a_stream_outlives_nothing_but_its_key(make_api: MakeApi) -> None:
    """The periodic check keeps streams of valid keys open (and heartbeats flowing)."""
    api = await make_api()
    api.ctx.stream = StreamHub(heartbeat_s=0.05, recheck_s=0.01)
    stream, hello = await open_stream(api)
    for _ in range(3):
        beat = await stream.next()
        assert beat["event"] == "heartbeat" and beat["id"] == hello["id"]
    assert not stream.task.done()
    await stream.disconnect()


def test_close_owner_ends_only_that_owners_streams() -> None:
    hub = StreamHub()
    a1, a2, b = hub.open(owner="a"), hub.open(owner="a"), hub.open(owner="b")
    hub.subscribe(a1.stream_id, "alarm", {}, owner="a")
    assert hub.close_owner("a") == 2
    assert a1.stream.revoked and a2.stream.revoked and b.stream.revoked is None
    assert not hub.wants("alarm")  # nothing is published to revoked streams
    assert hub.stats()["streams"] == 1
    resumed = hub.open(f"{a1.stream_id}:0", owner="a")
    assert not resumed.resumed and resumed.notices[0]["code"] == "unknown_stream"


async def test_authorized_is_asked_while_the_connection_is_open() -> None:
    hub = StreamHub(heartbeat_s=30, recheck_s=0.01)
    allowed = [True]
    conn = hub.open(owner="k", authorized=lambda: allowed[0])
    events = conn.events()
    assert b"event: hello" in await anext(events)
    allowed[0] = False
    last = await asyncio.wait_for(anext(events), 1.0)
    assert b"event: notice" in last and b'"revoked"' in last
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    assert conn.stream_id not in {s for s in hub._streams}


# -- streams per principal ------------------------------------------------------------


async def test_one_key_cannot_take_every_stream(streaming: Api) -> None:
    api = streaming
    assert api.ctx.stream is not None
    api.ctx.stream.max_streams_per_owner = 2
    first, _ = await open_stream(api)
    second, _ = await open_stream(api)
    third = AsgiStream(api, "", {"authorization": f"Bearer {api.viewer}"})
    status, _ = await third.start()
    assert status == 429
    err = error_of_body(await third.body())
    assert err["code"] == "too_many_streams"
    assert "at most 2 per key" in err["message"]
    assert err["details"][0]["limit"] == 2
    # another key is not affected
    op, _ = await open_stream(api, headers={"authorization": f"Bearer {api.operator}"})
    # a stream the key hung up on makes room (it is forgotten, oldest first)
    await first.disconnect()
    again, _ = await open_stream(api)
    for s in (second, op, again):
        await s.disconnect()


def error_of_body(body: bytes) -> dict[str, Any]:
    return error_of(httpx.Response(429, content=body))


def test_per_owner_limit_in_the_hub() -> None:
    hub = StreamHub(max_streams=10, max_streams_per_owner=3)
    conns = [hub.open(owner="v") for _ in range(3)]
    with pytest.raises(OwnerStreamLimitError, match="at most 3 per key"):
        hub.open(owner="v")
    # resuming one of its own streams is not a new stream
    resumed = hub.open(f"{conns[0].stream_id}:0", owner="v")
    assert resumed.resumed
    for i in range(7):  # other keys fill the server
        hub.open(owner=f"other-{i}")
    with pytest.raises(StreamLimitError) as exc_info:
        hub.open(owner="third")
    assert not isinstance(exc_info.value, OwnerStreamLimitError)  # the total: 503
