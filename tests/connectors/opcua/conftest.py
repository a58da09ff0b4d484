"""A real asyncua Server on 127.0.0.1 for the OPC UA connector tests, and helpers to
change its variables and to read what the connector published."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.crypto import cert_gen
from asyncua.server.user_managers import UserManager
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import DNSName, UniformResourceIdentifier
from cryptography.x509.oid import ExtendedKeyUsageOID

from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.telemetry_columns import samples_of

NS_URI = "urn:millrace:test"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SERVER_URI = "urn:millrace:test:server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dt(ts_us: int) -> Any:
    """An OPC UA DateTime (asyncua types it as its own datetime subclass)."""
    return EPOCH + timedelta(microseconds=ts_us)


def nid(name: str, ns: int = 2) -> ua.NodeId:
    """``ns=<ns>;s=<name>``."""
    return ua.NodeId(ua.String(name), ua.Int16(ns))


class OpcServer:
    """An asyncua Server with namespace 2 (``urn:millrace:test``) holding an object
    ``2:Plant`` with one variable ``ns=2;s=<name>`` (browse name ``2:<name>``) per
    entry of ``variables``: name -> (initial value, variant type, writable)."""

    def __init__(
        self,
        port: int,
        variables: dict[str, tuple[Any, ua.VariantType, bool]],
        *,
        user_manager: UserManager | None = None,
        identity_tokens: list[type] | None = None,
        certificate: Path | None = None,
        private_key: Path | None = None,
        policies: list[ua.SecurityPolicyType] | None = None,
    ) -> None:
        self.port = port
        self.url = f"opc.tcp://127.0.0.1:{port}/millrace/test"
        self.variables = variables
        self.user_manager = user_manager
        self.identity_tokens = identity_tokens
        self.certificate = certificate
        self.private_key = private_key
        self.policies = policies or [ua.SecurityPolicyType.NoSecurity]
        self.server: Server | None = None
        self.idx = 2

    async def start(self) -> OpcServer:
        server = Server(user_manager=self.user_manager)
        await server.init()
        server.set_endpoint(self.url)
        server.set_security_policy(self.policies)
        if self.identity_tokens is not None:
            server.set_identity_tokens(self.identity_tokens)
        if self.certificate is not None and self.private_key is not None:
            await server.set_application_uri(SERVER_URI)
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(self.private_key))
        self.idx = await server.register_namespace(NS_URI)
        plant = await server.nodes.objects.add_object(
            nid("Plant", self.idx), ua.QualifiedName("Plant", self.idx)
        )
        for name, (value, vtype, writable) in self.variables.items():
            var = await plant.add_variable(
                nid(name, self.idx), ua.QualifiedName(name, self.idx), value, vtype
            )
            if writable:
                await var.set_writable()
        await server.start()
        self.server = server
        return self

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    def node_id(self, name: str) -> ua.NodeId:
        return nid(name, self.idx)

    async def put(
        self,
        name: str,
        value: Any,
        ts_us: int | None = None,
        status: int = 0,
        vtype: ua.VariantType | None = None,
    ) -> None:
        """Set a variable as a device would: value, source time and status."""
        assert self.server is not None
        vtype = vtype or self.variables[name][1]
        variant = ua.Variant(value, vtype) if value is not None else ua.Variant()
        dv = ua.DataValue(
            variant,
            StatusCode=ua.StatusCode(ua.UInt32(status)),
            SourceTimestamp=dt(ts_us) if ts_us is not None else None,
            ServerTimestamp=dt(time.time_ns() // 1000),
        )
        await self.server.write_attribute_value(self.node_id(name), dv)

    async def get(self, name: str) -> ua.Variant:
        """The variable's current value as the server holds it."""
        assert self.server is not None
        variant = self.server.read_attribute_value(self.node_id(name)).Value
        assert variant is not None
        return variant


class Users(UserManager):
    """Accepts only ``operator`` / ``s3cret``."""

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username == "operator" and password == "s3cret":
            return User(role=UserRole.User, name=username)
        return None


class BlackHoleProxy:
    """A TCP proxy to ``127.0.0.1:target`` that, while ``frozen``, swallows every byte
    in both directions and keeps the sockets open: a peer gone silent."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.frozen = False
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> BlackHoleProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers.append(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if not self.frozen:
                    dst.write(data)
                    await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    async def stop(self) -> None:
        self._server.close()
        for w in self._writers:
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


def readings(pub: MemoryEventPublisher) -> list[tuple[str, str, int, Any, int]]:
    """(identity, signal, ts_us, value, quality) of everything published, in order."""
    return [
        (e["identity"], signal, s["ts_us"], value, s["quality"])
        for _, e in pub.published.get("telemetry", [])
        for s in samples_of(e)
        for signal, value in s["values"].items()
    ]


def of(pub: MemoryEventPublisher, signal: str) -> list[tuple[int, Any, int]]:
    return [(ts, v, q) for _, s, ts, v, q in readings(pub) if s == signal]


def states(pub: MemoryEventPublisher, resource: str | None = None) -> list[tuple[str, str]]:
    return [
        (e["current_state"], e["info"])
        for _, e in pub.published.get("status", [])
        if (
            e["resource_type"] == "connection" if resource is None else e["resource_id"] == resource
        )
    ]


async def until(cond: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        await asyncio.sleep(0.02)


def _write_pair(directory: Path, stem: str, uri: str, usage: Iterable[Any]) -> tuple[Path, Path]:
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        stem,
        {},
        [UniformResourceIdentifier(uri), DNSName(socket.gethostname()), DNSName("127.0.0.1")],
        list(usage),
    )
    cert_path = directory / f"{stem}-cert.der"
    key_path = directory / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Self-signed application certificates of a test server and of the client."""
    d = tmp_path_factory.mktemp("opcua-pki")
    server_cert, server_key = _write_pair(
        d, "server", SERVER_URI, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    client_cert, client_key = _write_pair(
        d, "client", "urn:millrace:test:client", [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    return {
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }
