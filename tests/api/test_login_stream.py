"""The live stream with a signed-in user: a JWT in ``access_token`` works as a key
does, and signing out (or being disabled) ends the user's open streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from millrace.api.stream import StreamHub
from tests.api.conftest import V1, Api, MakeApi
from tests.api.test_login import create_user, no_delay, tokens
from tests.api.test_stream_access import rest_of
from tests.api.test_stream_routes import AsgiStream


@pytest.fixture
async def streaming(make_api: MakeApi) -> AsyncIterator[Api]:
    api = await make_api()
    api.ctx.stream = StreamHub(heartbeat_s=30)
    no_delay(api)
    yield api


async def open_with_token(api: Api, token: str) -> AsgiStream:
    stream = AsgiStream(api, f"access_token={token}", {})
    status, headers = await stream.start()
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    hello = await stream.next()
    assert hello["event"] == "hello"
    return stream


async def test_a_jwt_in_access_token_opens_the_stream_and_logout_ends_it(
    streaming: Api,
) -> None:
    api = streaming
    await create_user(api, "sse-user", ["viewer"])
    pair = await tokens(api, "sse-user")
    stream = await open_with_token(api, pair["access_token"])
    other = await open_with_token(api, (await tokens(api, "sse-user"))["access_token"])
    r = await api.client.post(f"{V1}/logout", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 204
    events = await rest_of(stream, 3.0)  # the hub asks every second
    assert [e["event"] for e in events] == ["notice"], events
    assert not other.task.done()  # another session of the same user goes on
    r = await api.client.patch(
        f"{V1}/users/sse-user", json={"enabled": False}, headers=api.auth(api.admin)
    )
    assert r.status_code == 200
    events = await rest_of(other, 3.0)
    assert [e["event"] for e in events] == ["notice"], events
