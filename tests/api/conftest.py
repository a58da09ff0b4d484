"""Fixtures for the API tests: one chDB data directory for the whole session, a fresh
app (log, publisher, keys, runtime) per test, driven in-process through httpx.

chDB accepts one data directory per process; several sessions on that directory are
fine, so these tests use the directory of ``chdb_store`` in ``tests/conftest.py``. The
projection writer keeps one session for the whole test session; every test gets its
own read session for the API, so that a query that breaks a session (see
``test_sql.py``) cannot leak into the next test. Tests use identities of their own, so
they never see each other's rows, and never drop or truncate anything.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from millrace.api.app import create_app
from millrace.api.auth import KeyStore
from millrace.api.context import ApiSettings, AppContext
from millrace.api.device_auth import CredentialHasher
from millrace.pipeline.codec import default_codec
from millrace.pipeline.errors import StoreError
from millrace.pipeline.identities.config import RegistryConfig
from millrace.pipeline.log.base import AppendResult, Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.migrations import migrate
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

#: the injected "now" of the tests: 2025-06-01T12:00:00Z
NOW_US = 1_748_779_200_000_000
HOUR_US = 3_600_000_000
#: the admin key held in memory (``MILLRACE_API_KEY`` style)
ENV_KEY = "env-admin-key-for-tests"
V1 = "/api/v1"

#: argon2id at its cheapest: the tests check behaviour, not the cost profile
CHEAP_HASHER = CredentialHasher(time_cost=1, memory_cost=8, parallelism=1)

_IN_USE = re.compile(r"already initialized with path '([^']*)'")


class CountingLog(MemoryEventLog):
    """The in-memory log, counting appended records per topic as they land."""

    def __init__(self) -> None:
        super().__init__()
        self.appended: dict[str, int] = {}

    async def append(self, topic: str, messages: Sequence[Message]) -> list[AppendResult]:
        results = await super().append(topic, messages)
        self.appended[topic] = self.appended.get(topic, 0) + len(results)
        return results


def uid(prefix: str = "t") -> str:
    """An identity no other test (or earlier run on the same directory) uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def _open_store(path: Path) -> ChdbStore:
    """A session on ``path``, or — when another test module of this process already
    started chDB on another directory — on that directory (chDB allows only one)."""
    store = ChdbStore(path)
    try:
        store.execute("SELECT 1")
    except StoreError as exc:
        found = _IN_USE.search(str(exc))
        if found is None:
            raise
        other = found.group(1)
        store = ChdbStore(None if other == ":memory:" else other)
        store.execute("SELECT 1")
    return store


@pytest.fixture(scope="session")
def writer_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChdbStore]:
    """The projection writer's session, on the session-wide chDB directory of
    ``tests/conftest.py`` (``chdb_store``) when there is one, else on a directory of
    our own."""
    try:
        shared: ChdbStore | None = request.getfixturevalue("chdb_store")
    except pytest.FixtureLookupError:
        shared = None
    if shared is not None and shared.path is not None:
        store = _open_store(Path(shared.path))
    else:
        store = _open_store(tmp_path_factory.mktemp("api-chdb") / "data")
    migrate(store)
    yield store
    store.close()


@pytest.fixture(scope="session")
def chdb_path(writer_store: ChdbStore) -> str | None:
    """The data directory actually in use (see :func:`_open_store`)."""
    return writer_store.path


@pytest.fixture
def read_store(chdb_path: str | None) -> Iterator[ChdbStore]:
    store = ChdbStore(chdb_path)
    yield store
    store.close()


@dataclass
class Api:
    """One app under test and everything around it."""

    app: FastAPI
    ctx: AppContext
    client: httpx.AsyncClient
    log: CountingLog
    keys: KeyStore
    runtime: EmbeddedRuntime
    admin: str
    operator: str
    viewer: str
    #: telemetry records in the log each time the app called ``on_ingest``
    ingested: list[int] = field(default_factory=list)

    @staticmethod
    def auth(key: str | None) -> dict[str, str]:
        return {} if key is None else {"Authorization": f"Bearer {key}"}

    async def ingest(
        self,
        identity: str,
        body: Any,
        key: str | None = "operator",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.client.post(
            f"{V1}/identities/{identity}/data",
            json=body,
            headers={**self.auth(self._key(key)), **(headers or {})},
        )

    async def post_raw(
        self, path: str, content: bytes, key: str | None = "operator"
    ) -> httpx.Response:
        headers = {"content-type": "application/json", **self.auth(self._key(key))}
        return await self.client.post(f"{V1}{path}", content=content, headers=headers)

    async def get(self, path: str, key: str | None = "viewer", **params: Any) -> httpx.Response:
        return await self.client.get(
            f"{V1}{path}", params=params, headers=self.auth(self._key(key))
        )

    async def sql(self, query: str, key: str | None = "viewer", **extra: Any) -> httpx.Response:
        return await self.client.post(
            f"{V1}/sql", json={"query": query, **extra}, headers=self.auth(self._key(key))
        )

    def _key(self, key: str | None) -> str | None:
        return {"admin": self.admin, "operator": self.operator, "viewer": self.viewer}.get(
            key or "", key
        )

    async def sync(self) -> int:
        """Run the projections until the log is consumed."""
        return await self.runtime.run_until_idle()

    async def telemetry_count(self) -> int:
        total = 0
        for p in range(self.log.partitions(TELEMETRY)):
            total += (await self.log.offsets(TELEMETRY, p))[1]
        return total

    async def telemetry_records(self) -> list[dict[str, Any]]:
        codec = default_codec()
        out = []
        for p in range(self.log.partitions(TELEMETRY)):
            for rec in await self.log.read(TELEMETRY, p, 0, 100_000):
                out.append({"key": rec.key, **codec.decode(TELEMETRY, rec.value)})
        return out


MakeApi = Callable[..., Awaitable[Api]]


def build_api(
    writer_store: ChdbStore,
    read_store: ChdbStore,
    settings: ApiSettings | None = None,
    clock: Callable[[], int] | None = None,
    keys: KeyStore | None = None,
    max_records: int = 5000,
    registry: RegistryConfig | None = None,
) -> Api:
    """A fresh app on a fresh in-memory log, with one key per role. The caller closes
    ``api.client``."""
    log = CountingLog()
    keys = keys if keys is not None else KeyStore(None, env_key=ENV_KEY)
    _, admin = keys.create("test admin", "admin")
    _, op = keys.create("test operator", "operator")
    _, viewer = keys.create("test viewer", "viewer")
    ingested: list[int] = []
    ctx = AppContext(
        store=read_store,
        publisher=LogPublisher(log),
        keys=keys,
        settings=settings or ApiSettings(),
        clock=clock or (lambda: NOW_US),
        on_ingest=lambda: ingested.append(log.appended.get(TELEMETRY, 0)),
        registry=registry or RegistryConfig(),
        hasher=CHEAP_HASHER,
    )
    app = create_app(ctx)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://t",
    )
    runtime = EmbeddedRuntime(
        log,
        ProjectionWriter(writer_store),
        processors(),
        consumer=uid("consumer-"),
        max_records=max_records,
    )

    async def wait_applied(topic: str) -> bool:
        await runtime.run_until_idle()
        return True

    ctx.wait_applied = wait_applied
    return Api(app, ctx, client, log, keys, runtime, admin, op, viewer, ingested)


@pytest.fixture
async def make_api(writer_store: ChdbStore, read_store: ChdbStore) -> AsyncIterator[MakeApi]:
    """Factory of apps: ``await make_api(settings=..., clock=..., keys=...)``."""
    clients: list[httpx.AsyncClient] = []

    async def make(store: ChdbStore | None = None, **kwargs: Any) -> Api:
        api = build_api(writer_store, store or read_store, **kwargs)
        clients.append(api.client)
        return api

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an error response, checking its shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"code", "message", "details"} <= set(err), err
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], list)
    return err


def assert_bad_field(response: httpx.Response, field_name: str, status: int = 400) -> None:
    """A 400 whose message and first detail name ``field_name``."""
    assert response.status_code == status, response.text
    err = error_of(response)
    assert err["details"], err
    assert err["details"][0]["field"] == field_name, err
    assert field_name in err["message"], err
