"""Bounded connections: the real app behind ``api.server.build_server`` on 127.0.0.1,
driven through raw sockets the way the hostile clients of issue 12 drove it (a 200 MB
body with a garbage credential, idle connections, connection floods, huge headers,
slow bodies). Timeouts are configured small so the suite stays fast."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from millrace.api.server import (
    FLOOD_MESSAGES,
    ConnectionCounter,
    RateLimitFilter,
    accept_backlog,
    build_server,
    connection_cap,
    install_log_filters,
)
from millrace.api.server_limits import ServerLimits
from millrace.pipeline.identities.config import ProvisioningConfig, RegistryConfig
from tests.api.conftest import V1, Api, MakeApi, uid
from tests.api.test_limits import provisioned

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@contextlib.asynccontextmanager
async def serving(app: Any, **limits: Any) -> AsyncIterator[int]:
    """``app`` served by :func:`build_server` on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = build_server(app, "127.0.0.1", port, ServerLimits(**limits))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_server(reader: asyncio.StreamReader, within_s: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (fails the test if
    it does not close within ``within_s``)."""
    data = b""
    async with asyncio.timeout(within_s):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def get(port: int, path: str, key: str) -> bytes:
    reader, writer = await connect(port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n"
        "connection: close\r\n\r\n".encode()
    )
    try:
        return await closed_by_server(reader)
    finally:
        writer.close()


async def send_huge(
    port: int, head: bytes, total: int, chunk: int = 64 * 1024
) -> tuple[bytes, int]:
    """Send ``head`` and then a chunked body of up to ``total`` bytes, stopping when the
    server answers or closes; (the answer's first bytes, bytes of body sent)."""
    reader, writer = await connect(port)
    writer.write(head)
    piece = b"%x\r\n%s\r\n" % (chunk, b"x" * chunk)
    answer = asyncio.ensure_future(reader.read(65536))
    sent = 0
    try:
        while sent < total and not answer.done():
            writer.write(piece)
            drain = asyncio.ensure_future(writer.drain())
            await asyncio.wait({drain, answer}, return_when=asyncio.FIRST_COMPLETED)
            if not drain.done():
                drain.cancel()
                break
            if drain.exception() is not None:
                break
            sent += chunk
        async with asyncio.timeout(10):
            first = await answer
        # after the answer the server discards a bounded amount, then closes: the
        # client's writes fail long before the 200 MB are through
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(10):
                while sent < total:
                    writer.write(piece)
                    await writer.drain()
                    sent += chunk
        return first, sent
    finally:
        writer.close()


def ingest_head(identity: str, credential: str) -> bytes:
    return (
        f"POST {V1}/identities/{identity}/data HTTP/1.1\r\nhost: t\r\n"
        f"authorization: {credential}\r\ncontent-type: application/json\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    ).encode()


async def test_200mb_with_a_garbage_credential_is_401_and_the_connection_closed(
    api: Api,
) -> None:
    async with serving(api.app, linger_bytes=MIB) as port:
        first, sent = await send_huge(port, ingest_head(uid(), "Bearer garbage"), 200 * MIB)
        assert first.startswith(b"HTTP/1.1 401 "), first[:200]
        assert sent < 50 * MIB
        # the API still answers
        assert (await get(port, f"{V1}/me", api.viewer)).startswith(b"HTTP/1.1 200 ")
    assert api.log.appended == {}


async def test_200mb_with_a_valid_device_credential_is_413(make_api: MakeApi) -> None:
    api = await make_api(registry=RegistryConfig(provisioning=ProvisioningConfig()))
    name, token = await provisioned(api)
    async with serving(api.app, linger_bytes=MIB) as port:
        first, sent = await send_huge(port, ingest_head(name, f"Bearer {token}"), 200 * MIB)
        assert first.startswith(b"HTTP/1.1 413 "), first[:200]
        assert b'"body_too_large"' in first
        assert sent < 60 * MIB
    assert api.log.appended.get("telemetry", 0) == 0


async def test_idle_connections_are_closed_after_the_header_timeout(api: Api) -> None:
    async with serving(api.app, header_timeout_s=0.3) as port:
        idle = [await connect(port) for _ in range(50)]
        # a slow client: one byte of headers at a time never completes in time
        slow_reader, slow_writer = await connect(port)
        for byte in b"GET /api/v1/me HTTP/1.1\r\nhost: t\r\n":
            if slow_reader.at_eof():
                break
            with contextlib.suppress(ConnectionError):
                slow_writer.write(bytes([byte]))
                await slow_writer.drain()
            await asyncio.sleep(0.05)
        for reader, _ in idle:
            assert await closed_by_server(reader, within_s=5) == b""
        assert await closed_by_server(slow_reader, within_s=5) == b""
        for _, writer in [*idle, (slow_reader, slow_writer)]:
            writer.close()
        # a client that sends its request in time is served
        assert (await get(port, f"{V1}/me", api.viewer)).startswith(b"HTTP/1.1 200 ")


async def test_a_stalled_body_is_closed_after_the_body_timeout(api: Api) -> None:
    async with serving(api.app, body_timeout_s=0.3) as port:
        reader, writer = await connect(port)
        writer.write(
            f"POST {V1}/identities HTTP/1.1\r\nhost: t\r\nauthorization: Bearer "
            f"{api.operator}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n"
            '\r\n{"identity": '.encode()
        )
        assert await closed_by_server(reader, within_s=5) == b""
        writer.close()


async def test_connections_over_the_cap_are_answered_503_and_the_api_recovers(
    api: Api,
) -> None:
    async with serving(api.app, max_connections=8, header_timeout_s=30) as port:
        held = [await connect(port) for _ in range(8)]
        extra = [await connect(port) for _ in range(20)]
        for reader, _ in extra:
            answer = await closed_by_server(reader)
            assert answer.startswith(b"HTTP/1.1 503 "), answer
            assert b'"overloaded"' in answer
        for _, writer in [*held, *extra]:
            writer.close()
            await writer.wait_closed()
        for _ in range(100):  # the server notices the closes
            answer = await get(port, f"{V1}/me", api.viewer)
            if answer.startswith(b"HTTP/1.1 200 "):
                break
            await asyncio.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200 "), answer


async def test_one_client_address_cannot_take_every_connection(api: Api) -> None:
    async with serving(api.app, max_connections_per_client=4, header_timeout_s=30) as port:
        held = [await connect(port) for _ in range(4)]
        reader, writer = await connect(port)
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 503 ")
        for _, w in [*held, (reader, writer)]:
            w.close()


async def test_requests_beyond_the_concurrency_limit_are_answered_503(api: Api) -> None:
    async with serving(api.app, limit_concurrency=3, header_timeout_s=30) as port:
        held = [await connect(port) for _ in range(3)]
        answer = await get(port, f"{V1}/me", api.viewer)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b'"overloaded"' in answer and b"retry-after: 1" in answer.lower()
        for _, writer in held:
            writer.close()
            await writer.wait_closed()
        for _ in range(100):
            answer = await get(port, f"{V1}/me", api.viewer)
            if answer.startswith(b"HTTP/1.1 200 "):
                break
            await asyncio.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200 "), answer


async def test_headers_over_the_limit_are_431(api: Api) -> None:
    async with serving(api.app, max_header_bytes=4096) as port:
        reader, writer = await connect(port)
        writer.write(b"GET /api/v1/me HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 8192 + b"\r\n\r\n")
        answer = await closed_by_server(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer
        assert b'"headers_too_large"' in answer
        # within the limit: served
        assert (await get(port, f"{V1}/me", api.viewer)).startswith(b"HTTP/1.1 200 ")


# -- units ---------------------------------------------------------------------------


def test_the_connection_cap_leaves_file_descriptors_to_the_process() -> None:
    # 19,600 idle connections exhausted 20,000 descriptors: now at most 8,192 are kept
    assert connection_cap(8192, 1_048_576) == 8192
    assert connection_cap(8192, 20_000) == 8192
    assert connection_cap(30_000, 20_000) == 20_000 - 1024 - 2 * 2048
    assert connection_cap(8192, 1024) == 1024 - 256 - 2 * 128
    assert connection_cap(8192, 256) == 256 - 64 - 2 * 32 == 128
    assert accept_backlog(256) == 32 and accept_backlog(1 << 20) == 2048


def test_the_counter_caps_in_total_and_per_client() -> None:
    counter = ConnectionCounter(max_total=3, max_per_client=2)
    assert counter.acquire("a") and counter.acquire("a")
    assert not counter.acquire("a")
    assert counter.acquire("b")
    assert not counter.acquire("c")
    counter.release("a")
    assert counter.acquire("c")
    assert counter.refused == 2 and counter.total == 3


def test_a_flooding_message_is_logged_once_per_interval_with_the_count() -> None:
    now = [0.0]
    flt = RateLimitFilter("socket.accept() out of system resource", 10.0, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, None)

    accept = "socket.accept() out of system resource\nexception: OSError(24)"
    passed = [flt.filter(record(accept)) for _ in range(1000)]
    assert passed.count(True) == 1
    assert flt.filter(record("something else"))  # other messages pass
    now[0] = 10.5
    again = record(accept)
    assert flt.filter(again)
    assert again.getMessage().endswith("(999 more suppressed)")


async def test_accept_errors_of_the_event_loop_are_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_filters(60.0)
    install_log_filters(60.0)  # idempotent
    names = {name for name, _ in FLOOD_MESSAGES}
    for name in names:
        assert len([f for f in logging.getLogger(name).filters]) >= 1
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for _ in range(500):
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                }
            )
    logged = [r for r in caplog.records if "out of system resource" in r.getMessage()]
    assert len(logged) <= 1


SERVER = textwrap.dedent(
    """
    import asyncio, resource, socket, sys
    from millrace.api.server import build_server
    from millrace.api.server_limits import ServerLimits

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = build_server(app, "127.0.0.1", 0, ServerLimits(header_timeout_s=60))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        print(sock.getsockname()[1], flush=True)
        await task

    asyncio.run(main())
    """
)


def test_a_connection_flood_never_exhausts_file_descriptors() -> None:
    """A server with 256 file descriptors and 400 idle connections opened at it: the
    ones over the cap are refused, accept() never runs out, a request is served."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=os.getcwd(),
        text=True,
    )
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        for i in range(400):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
            if i % 16 == 15:
                time.sleep(0.02)  # within the small backlog: no SYN retransmits
        answered: set[socket.socket] = set()
        # poll, not select: this process may hold over 1024 descriptors already (what
        # other tests of the same xdist worker left open), and select() refuses those
        waiting = selectors.DefaultSelector()
        for s in socks:
            waiting.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + 10
        while len(answered) < 400 - 128 and time.monotonic() < deadline:
            for key, _ in waiting.select(1):
                s = key.fileobj  # type: ignore[assignment]
                with contextlib.suppress(ConnectionError):
                    assert s.recv(64).startswith(b"HTTP/1.1 503 ")
                answered.add(s)
                waiting.unregister(s)
        waiting.close()
        assert len(answered) == 400 - 128  # the cap is 256 - 128; the others are held
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            extra.sendall(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
            assert extra.recv(64).startswith(b"HTTP/1.1 503 ")  # still over the cap
        for s in socks:
            s.close()
        socks.clear()
        answer = b""
        for _ in range(100):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as ok:
                ok.sendall(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                answer = ok.recv(64)
            if answer.startswith(b"HTTP/1.1 200 "):
                break
        assert answer.startswith(b"HTTP/1.1 200 "), answer
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "out of system resource" not in err, err[-2000:]
