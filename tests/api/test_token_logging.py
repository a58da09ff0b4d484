"""No token or key in any log line — uvicorn's access log (turned on here) included:
the real app behind ``api.server.build_server`` on 127.0.0.1, signed in with a JWT
sent as ``?access_token=`` and as a header, and an API key."""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import pytest

from millrace.api.server import ServerLimits, build_server
from millrace.api.users.redact import redact
from tests.api.conftest import V1, Api
from tests.api.test_login import create_user, no_delay, tokens


def test_redact_hides_every_credential_shape() -> None:
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    line = (
        f"GET /api/v1/stream?x=1&access_token={jwt_like} Authorization: Bearer {jwt_like} "
        "mr_0123456789ab_SeCrEt-part refresh_token=rt_abc"
    )
    out = redact(line)
    for secret in (jwt_like, "SeCrEt-part", "rt_abc"):
        assert secret not in out, out
    assert "mr_0123456789ab_***" in out and "x=1" in out


async def test_no_credential_reaches_a_log_line(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    no_delay(api)
    await create_user(api, "logan", ["viewer"])
    pair = await tokens(api, "logan")
    access_token, refresh = pair["access_token"], pair["refresh_token"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = build_server(
        api.app, "127.0.0.1", port, ServerLimits(), access_log=True, log_level="info"
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    caplog.set_level(logging.DEBUG)
    # uvicorn's own loggers do not propagate: listen on them directly
    own = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error")]
    for logger in own:
        logger.addHandler(caplog.handler)
    try:
        while not server.started:
            assert not task.done()
            await asyncio.sleep(0.01)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.get(f"{V1}/status", params={"access_token": access_token})
            assert r.status_code == 401  # the query parameter is for the stream only
            r = await client.get(f"{V1}/me", headers={"Authorization": f"Bearer {access_token}"})
            assert r.status_code == 200
            r = await client.get(f"{V1}/me", headers={"Authorization": f"Bearer {api.viewer}"})
            assert r.status_code == 200
            r = await client.get(f"{V1}/deadletters", params={"access_token": api.viewer})
            assert r.status_code == 401
            r = await client.post(f"{V1}/refresh", json={"refresh_token": refresh})
            assert r.status_code == 200
    finally:
        server.should_exit = True
        await task
        for logger in own:
            logger.removeHandler(caplog.handler)
    # the server's lines (httpx and httpcore are the test's own client)
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    lines = [rec.getMessage() for rec in server_side]
    access_lines = [rec for rec in caplog.records if rec.name == "uvicorn.access"]
    assert len(access_lines) >= 5, lines  # the access log was on, and is checked
    assert any("access_token=***" in line for line in lines)
    secret = api.viewer.split("_", 2)[2]
    for line in lines:
        for credential in (access_token, secret, refresh, "SeCrEt"):
            assert credential not in line, line
