"""Review fixes of issue 14 (review14.md, findings 1-3), against chDB:

* a restore over records the live fold has not folded yet, while that fold runs on
  (the same runtime, its ids loaded before the restore), doubles nothing;
* one archive file named several ways in one URL restore (a path on the store, the
  store's URL + path, a copy under an allowed prefix) is restored once;
* the URL allow-list compares parsed URLs and the HTTP fetch follows no redirect."""

from __future__ import annotations

import asyncio
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from millrace.pipeline.archive.errors import ArchiveStoreError
from millrace.pipeline.archive.format import HOUR_US, Manifest, window_start
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import TopicPartition, partition_for
from millrace.pipeline.processors.base import Event, Outputs
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.restore import RestoreForbiddenError, RestoreParams, check_url
from millrace.pipeline.restore.admit import RestoredTelemetry
from millrace.pipeline.restore.sources import RestoreFile, canonical_name, open_file
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.sink import Range, SinkBatch
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.pipeline.restore.helpers import T0, Runner, Sample, archive, check, telemetry_log

CODEC = default_codec()


def test_a_restore_while_the_live_fold_lags_doubles_nothing(
    store: ChdbStore, tmp_path: Path
) -> None:
    log, samples = telemetry_log(n=60, resend_every=6)
    archive_store, _ = archive(log, tmp_path / "archive")

    async def go() -> None:
        live = EmbeddedRuntime(log, ProjectionWriter(store), processors(), max_records=7)
        for _ in range(3):  # the fold has loaded its ids and folded a little
            await live.step()
        runner = Runner(store, archive_store, chunk=9)
        tid = await runner.create(RestoreParams(start_us=T0, end_us=T0 + 3 * HOUR_US).to_json())
        state = await runner.run(tid)
        assert state["status"] == "completed", state
        await live.run_until_idle()  # the same fold goes on over what the restore applied

    asyncio.run(go())
    check(store, samples)  # every sample once (resends dropped too), computed here


def _readings(store: ChdbStore) -> Counter[tuple[str, str, int]]:
    rows = store.execute(
        "SELECT identity, signal, toUnixTimestamp64Micro(ts) FROM millrace.readings"
    ).rows
    return Counter((str(i), str(s), int(t)) for i, s, t in rows)


def _restore_urls(
    store: ChdbStore, archive_store: ArchiveStore, urls: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    async def go() -> dict[str, object]:
        runner = Runner(store, archive_store, allowed=allowed, held=False)
        return await runner.run(await runner.create(RestoreParams(urls=urls).to_json()))

    state = asyncio.run(go())
    assert state["status"] == "completed", state


def _file_readings(samples: list[Sample], m: Manifest) -> Counter[tuple[str, str, int]]:
    """The readings of archive file ``m``, computed from the samples."""
    return Counter(
        (identity, sig, T0 + at)
        for identity, at, values in samples
        if partition_for(identity.encode(), 2) == m.partition
        and window_start(T0 + at, HOUR_US) == m.window_start_us
        for sig in values
    )


def test_one_file_named_as_a_path_and_as_the_store_url_is_restored_once(
    store: ChdbStore,
) -> None:
    log, samples = telemetry_log(n=40, resend_every=4)
    archive_store, manifests = archive(log, f"memory://r2-review-{uuid.uuid4().hex}")
    m = manifests[0]
    url = str(archive_store.url).rstrip("/") + "/" + m.path
    _restore_urls(store, archive_store, (m.path, url), ())
    want = _file_readings(samples, m)
    assert want and _readings(store) == want  # once, not twice
    others = ("./" + m.path, "telemetry//" + m.path.split("/", 1)[1], url)
    assert {canonical_name(u, archive_store) for u in others} == {m.path}


def test_a_copy_of_a_file_in_the_same_restore_is_not_taken_for_its_redo(
    store: ChdbStore, tmp_path: Path
) -> None:
    log, samples = telemetry_log(n=40, resend_every=4)
    root = tmp_path / "archive"
    archive_store, manifests = archive(log, root)
    m = manifests[0]
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(root / m.path, copies / "copy.avro")  # another name: no dedupe by name
    urls = (m.path, f"file://{copies}/copy.avro")
    _restore_urls(store, archive_store, urls, (f"file://{copies}/",))
    assert _readings(store) == _file_readings(samples, m)  # once, not twice
    for url in (f"file://{root}/{m.path}", f"{root}/{m.path}"):  # the local store's forms
        assert canonical_name(url, archive_store) == m.path


@pytest.mark.parametrize(
    "url",
    [
        "https://files.example.com.evil.net/x.avro",  # prefix without a slash, other host
        "https://files.example.com@evil.net/archives/x.avro",  # user info, other host
        "https://files.example.com:8443/archives/x.avro",  # other port
        "http://files.example.com/archives/x.avro",  # other scheme
        "https://files.example.com/archives/%2e%2e/secret.avro",  # encoded traversal
        "https://files.example.com/archives/%2E%2E%2Fsecret.avro",
        "https://files.example.com/archives/..%2fsecret.avro",
        "https://files.example.com/archives/./../secret.avro",
        "https://files.example.com/archivesX/x.avro",  # not on a segment boundary
        "https://files.example.com/archives/x.avro?redirect=http://169.254.169.254/",
        "https://files.example.com/archives",  # the prefix itself, no file
        "s3://bucket-other/archive/x.avro",
        "s3://bucket/archive/..%2f../x.avro",
        "file:///srv/archive/../../etc/passwd",
        "telemetry/%2e%2e/%2e%2e/x.avro",
        "ftp://files.example.com/archives/x.avro",
    ],
)
def test_the_allow_list_compares_parsed_urls(url: str) -> None:
    allowed = ("https://files.example.com/archives", "s3://bucket/archive/")
    with pytest.raises(RestoreForbiddenError):
        check_url(url, allowed, "file:///srv/archive")


def test_a_host_prefix_without_a_slash_admits_only_that_host() -> None:
    check_url("https://files.example.com/x.avro", ("https://files.example.com",), None)
    for url in ("https://files.example.com.evil.net/x.avro", "https://files.example.comx/a"):
        with pytest.raises(RestoreForbiddenError):
            check_url(url, ("https://files.example.com",), None)


def test_urls_below_the_prefixes_pass() -> None:
    allowed = ("https://files.example.com/archives", "s3://bucket/archive/")
    for url in (
        "https://files.example.com/archives/2026/x.avro",
        "HTTPS://Files.Example.com:443/archives/x.avro",
        "s3://bucket/archive/telemetry/x.avro",
        "file:///srv/archive/telemetry/x.avro",
        "telemetry/2026/01/01/00/0-00000000000000000000.avro",
    ):
        check_url(url, allowed, "file:///srv/archive")
    check_url("file:///srv/archive/t/x.avro", (), "/srv/archive")  # a local store path


class _Redirect(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/inside"):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"internal secret")
            return
        self.send_response(302)
        self.send_header("Location", "/inside/metadata")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_an_http_redirect_is_not_followed(redirecting: str) -> None:
    url = f"{redirecting}/exports/x.avro"
    check_url(url, (f"{redirecting}/exports/",), None)
    with pytest.raises(ArchiveStoreError, match="redirect"):
        open_file(RestoreFile(url, url=url, ident=url), None)


def _telemetry(offset: int, bid: str) -> Event:
    value = {
        "identity": "dev-x",
        "source": "t",
        "received_us": T0 + offset,
        "samples": [{"ts_us": T0 + offset, "values": {"v": float(offset)}, "quality": 0}],
        "ip": None,
        "batch_id": bid,
    }
    raw = CODEC.encode("telemetry", value)
    return Event("telemetry", 0, offset, T0 + offset, b"k", CODEC.decode("telemetry", raw), 0, raw)


def test_the_live_ledger_sees_ids_a_restore_wrote_while_it_was_folding(store: ChdbStore) -> None:
    """Each fold step reads the restore mark: while it moves, ids not in memory are
    asked of the store; once it stands still, the partition is loaded again."""
    writer = ProjectionWriter(store)
    live = TelemetryProcessor()
    seqs = Counter[str]()

    def write(consumer: str, evs: list[Event], out: Outputs) -> None:
        seqs[consumer] += 1
        tp = TopicPartition("telemetry", 0)
        rng = Range(evs[0].offset, evs[-1].offset + 1)
        writer.write(consumer, SinkBatch(seqs[consumer], {tp: rng}, out.tables))

    def fold(*evs: Event) -> list[str]:
        out = live.process_reading(list(evs), writer)
        write("live", list(evs), out)
        kept = out.tables.get("applied_batches")
        return [] if kept is None else kept.column("batch_key").to_pylist()

    def restore(scope: str, *evs: Event) -> None:
        write(
            f"restore/{scope}",
            list(evs),
            RestoredTelemetry(scope, now_us()).process_reading(evs, writer),
        )

    assert fold(_telemetry(0, "a"), _telemetry(1, "b")) == ["a", "b"]
    restore("t1/f", _telemetry(0, "c"))  # an archived batch the fold has not reached
    assert fold(_telemetry(2, "c"), _telemetry(3, "d")) == ["d"]  # the mark moved
    restore("t2/f", _telemetry(9, "e"))
    assert fold(_telemetry(4, "e")) == []  # moved again: asked of the store
    loads = live.ledger.loads
    assert fold(_telemetry(5, "f"), _telemetry(6, "e")) == ["f"]  # still: loaded again
    assert live.ledger.loads == loads + 1
    assert fold(_telemetry(7, "g")) == ["g"] and live.ledger.loads == loads + 1
    rows = store.execute("SELECT count() FROM millrace.readings WHERE identity = 'dev-x'").rows[0][
        0
    ]
    assert int(rows) == 7  # a, b, c (restored), d, e (restored), f, g: once each
