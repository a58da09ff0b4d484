"""Restore by URL with credentials that never reach the log: an HTTP server on 127.0.0.1
asking for Basic auth serves an archive; the allow-list prefix declares the
credentials as ``${ENV}`` references, the task runner resolves them from its
environment. A wrong or missing variable fails the file naming the variable (never
the value) and a retry after fixing it completes; no record of the ``tasks`` topic
holds the secret; a literal password, credentials on an S3 URL and references the
prefix does not declare are refused; S3 URLs take their credentials from the
environment (moto's server mode)."""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.restore import (
    RestoreError,
    RestoreForbiddenError,
    RestoreParams,
    admit_url,
    masked_url,
)
from millrace.pipeline.restore.config import RestoreConfig
from millrace.pipeline.restore.urls import BasicAuth
from millrace.pipeline.tasks import retry_task
from millrace.projections.store.chdb import ChdbStore
from tests.pipeline.restore.helpers import Runner, archive, check, telemetry_log
from tests.s3_mock import MotoS3

USER = "reader"
REFS = "${ARCHIVE_USER}:${ARCHIVE_PASSWORD}"


class BasicAuthServer:
    """An HTTP server on 127.0.0.1 serving ``root`` below ``/exports/`` only to a
    client sending ``Authorization: Basic user:password``; 401 to any other. Keeps
    the Authorization headers it was sent."""

    def __init__(self, root: Path, user: str, password: str) -> None:
        self.root = root
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                given = self.headers.get("Authorization")
                outer.seen.append(given)
                if given != outer.expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="archive"')
                    self.end_headers()
                    return
                path = outer.root / self.path.removeprefix("/exports/")
                if not self.path.startswith("/exports/") or not path.is_file():
                    self.send_response(404)
                    self.end_headers()
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> BasicAuthServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()

    def prefix(self, userinfo: str = REFS) -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}{self.base}/exports/"


async def tasks_bytes(log: EventLog) -> bytes:
    """Every byte of every record on the ``tasks`` topic: keys, values, headers."""
    out = b""
    for p in range(log.partitions("tasks")):
        for rec in await log.read("tasks", p, 0, 1_000_000):
            out += (rec.key or b"") + rec.value
            out += b"".join(k.encode() + v for k, v in rec.headers)
    return out


@pytest.fixture
def password() -> str:
    return "pw-" + secrets.token_hex(8)


@dataclass
class Served:
    server: BasicAuthServer
    paths: list[str]  # the archive files, relative to the server's /exports/
    samples: list[Any]  # what they hold (``helpers.check``)
    runner: Runner  # a task runner whose allow-list declares the credentials


@pytest.fixture
def served(
    store: ChdbStore, tmp_path: Path, password: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    """The server over an archive of a telemetry log; ARCHIVE_USER set, ARCHIVE_PASSWORD
    not (each test sets it as it needs)."""
    log, samples = telemetry_log(n=40)
    _, manifests = archive(log, tmp_path)
    monkeypatch.setenv("ARCHIVE_USER", USER)
    monkeypatch.delenv("ARCHIVE_PASSWORD", raising=False)
    with BasicAuthServer(tmp_path, USER, password) as server:
        runner = Runner(store, None, allowed=(server.prefix(),))
        yield Served(server, [m.path for m in manifests], samples, runner)


def _run(runner: Runner, urls: list[str]) -> tuple[str, dict[str, Any]]:
    async def go() -> tuple[str, dict[str, Any]]:
        tid = await runner.create(RestoreParams(urls=tuple(urls)).to_json())
        return tid, await runner.run(tid)

    return asyncio.run(go())


def test_a_restore_through_basic_auth_keeps_the_secret_off_the_log(
    store: ChdbStore, served: Served, password: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    server, paths, runner = served.server, served.paths, served.runner
    monkeypatch.setenv("ARCHIVE_PASSWORD", password)
    # one URL repeats the prefix's references, the others leave them out
    urls = [server.prefix() + paths[0]] + [server.prefix("") + p for p in paths[1:]]
    _, state = _run(runner, urls)
    assert state["status"] == "completed", state
    check(store, served.samples)  # the projections equal one clean pass, computed here
    assert server.seen and set(server.seen) == {server.expected}  # sent at once, every time
    token = server.expected.removeprefix("Basic ").encode()
    on_log = asyncio.run(tasks_bytes(runner.log))
    assert b"${ARCHIVE_PASSWORD}" in on_log  # the reference is what the task carries
    assert password.encode() not in on_log and token not in on_log
    assert password not in str(state) and password not in caplog.text


def test_a_missing_or_wrong_variable_fails_the_file_naming_it_and_a_retry_completes(
    store: ChdbStore, served: Served, password: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    server, paths, runner = served.server, served.paths, served.runner
    urls = [server.prefix("") + p for p in paths]
    wrong = "wrong-" + secrets.token_hex(8)

    async def go() -> None:
        tid = await runner.create(RestoreParams(urls=tuple(urls)).to_json())
        state = await runner.run(tid)
        assert state["status"] == "failed" and set(state["files_failed"]) == set(urls)
        for reason in state["files_failed"].values():
            assert "${ARCHIVE_PASSWORD}" in reason and "not set" in reason
            assert "${ARCHIVE_USER}" not in reason  # only the unset one is named
        assert server.seen == []  # nothing was sent without the credentials

        monkeypatch.setenv("ARCHIVE_PASSWORD", wrong)
        await retry_task(runner.publisher, tid, "restore")
        state = await runner.run(tid)
        assert state["status"] == "failed", state
        for reason in state["files_failed"].values():
            assert "HTTP 401" in reason and "${ARCHIVE_PASSWORD}" in reason
            assert wrong not in reason and USER not in reason

        monkeypatch.setenv("ARCHIVE_PASSWORD", password)
        await retry_task(runner.publisher, tid, "restore")
        state = await runner.run(tid)
        assert state["status"] == "completed", state
        assert state["attempts"] == 3 and not state["files_failed"]

    asyncio.run(go())
    check(store, served.samples)
    on_log = asyncio.run(tasks_bytes(runner.log))
    for secret in (password, wrong):
        assert secret.encode() not in on_log and secret not in caplog.text


def test_without_credentials_the_server_refuses_and_the_reason_says_so(
    store: ChdbStore, served: Served
) -> None:
    server, paths = served.server, served.paths
    url = server.prefix("") + paths[0]
    _, state = _run(Runner(store, None, allowed=(server.prefix(""),)), [url])
    assert state["status"] == "failed"
    assert "HTTP 401" in state["files_failed"][url] and "declare them" in state["files_failed"][url]


@pytest.mark.parametrize(
    "url",
    [
        "https://reader:s3cr3t@files.example.com/exports/x.avro",
        "https://${U}:s3cr3t${P}@files.example.com/exports/x.avro",
        "https://reader:%73%33cr3t@files.example.com/exports/x.avro",
    ],
)
def test_a_literal_password_is_refused_naming_the_url(url: str) -> None:
    params = RestoreParams(urls=("telemetry/a.avro", url))
    with pytest.raises(RestoreError, match=r"^urls\[1\]: .*\$\{ENV\}") as err:
        params.check()
    assert "s3cr3t" not in str(err.value) and "%73" not in str(err.value)
    with pytest.raises(RestoreError, match=r"^urls\[1\]"):
        admit_url(url, ("https://files.example.com/exports/",), None, "urls[1]")


def test_credentials_on_s3_and_file_urls_and_literal_prefixes_are_refused() -> None:
    for url in ("s3://${K}:${S}@bucket/x.avro", "file://${U}:${P}@/srv/x.avro"):
        with pytest.raises(RestoreError, match="take no credentials"):
            RestoreParams(urls=(url,)).check()
    with pytest.raises(ValidationError, match=r"allowed_url_prefixes\[1\].*literal password"):
        RestoreConfig(allowed_url_prefixes=["s3://b/", "https://u:pw@files.example.com/"])
    ok = RestoreConfig(allowed_url_prefixes=[f"https://{REFS}@files.example.com/exports/"])
    assert ok.allowed_url_prefixes[0].startswith("https://${ARCHIVE_USER}")


def test_credentials_over_plain_http_go_only_to_this_machine() -> None:
    """Basic auth over http:// crosses the network in clear text: refused in a prefix
    and in a URL unless the host is the machine's own (the tests' server)."""
    for host in ("files.example.com", "10.0.0.7:8000", "127.0.0.2"):
        with pytest.raises(ValidationError, match=r"allowed_url_prefixes\[0\].*clear text"):
            RestoreConfig(allowed_url_prefixes=[f"http://{REFS}@{host}/exports/"])
        with pytest.raises(RestoreError, match=r"^urls\[0\]: .*clear text.*https://"):
            RestoreParams(urls=(f"http://{REFS}@{host}/exports/x.avro",)).check()
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
        RestoreConfig(allowed_url_prefixes=[f"http://{REFS}@{host}/exports/"])
    # without credentials http:// stays allowed, and https:// with them
    RestoreConfig(allowed_url_prefixes=["http://files.example.com/public/"])
    RestoreConfig(allowed_url_prefixes=[f"HTTPS://{REFS}@files.example.com/exports/"])


def test_the_prefix_declares_the_credentials_a_url_may_use() -> None:
    host = "files.example.com"
    allowed = (f"https://{REFS}@{host}/exports/", f"https://{host}/public/")
    declared = BasicAuth("${ARCHIVE_USER}", "${ARCHIVE_PASSWORD}")
    # compared without credentials; fetched without user info, with the prefix's
    for url in (f"https://{host}/exports/x.avro", f"https://{REFS}@{host}/exports/x.avro"):
        got = admit_url(url, allowed, None)
        assert (got.url, got.auth) == (f"https://{host}/exports/x.avro", declared)
    assert admit_url(f"https://{host}/public/x.avro", allowed, None).auth is None
    # another variable (say the signing key) is not sent anywhere
    for url in (
        f"https://${{ARCHIVE_USER}}:${{MILLRACE_JWT_SECRET}}@{host}/exports/x.avro",
        f"https://{REFS}@{host}/public/x.avro",
        f"https://{REFS}@{host}.evil.net/exports/x.avro",
    ):
        with pytest.raises(RestoreForbiddenError):
            admit_url(url, allowed, None)
    # on the archive store: its storage options are its credentials
    with pytest.raises(RestoreForbiddenError, match="archive store"):
        admit_url(f"https://{REFS}@{host}/archive/t/x.avro", (), f"https://{host}/archive")


def test_masked_url_hides_literal_passwords_and_shows_references() -> None:
    assert (
        masked_url("see https://u:pw@h/x and s3://k:s@b/y")
        == "see https://u:***@h/x and s3://k:***@b/y"
    )
    assert masked_url(f"https://{REFS}@h/x") == f"https://{REFS}@h/x"
    assert masked_url("https://u:${P}x@h/x") == "https://u:***@h/x"


def test_s3_urls_take_their_credentials_from_the_environment(
    store: ChdbStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3-" + secrets.token_hex(8)
    with MotoS3() as s3:
        bucket = s3.bucket("restore-url-auth")
        log, samples = telemetry_log(n=20)
        staging, manifests = archive(log, tmp_path)
        target = ArchiveStore(f"{bucket}/exports", {**s3.storage_options, "secret": secret})
        for m in manifests:
            target.put_window(staging.read_file(m), m)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        runner = Runner(store, None, allowed=(f"{bucket}/exports/",))
        urls = [f"{bucket}/exports/{m.path}" for m in manifests]
        _, state = _run(runner, urls)
    assert state["status"] == "completed", state
    check(store, samples)
    assert secret.encode() not in asyncio.run(tasks_bytes(runner.log))


def test_the_cli_refuses_a_literal_password_before_it_leaves_the_process(tmp_path: Path) -> None:
    from millrace.pipeline.cli.restore import restore_command

    url = "https://reader:s3cr3t@files.example.com/exports/x.avro"
    # an API address nothing listens on: the refusal comes before any call
    with pytest.raises(RestoreError, match=r"^urls\[0\]: ") as err:
        restore_command(None, tmp_path, None, None, [url], url="http://127.0.0.1:9/api/v1")
    assert "s3cr3t" not in str(err.value)
