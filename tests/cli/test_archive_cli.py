"""``millrace archive list|verify|export`` over an archive on a local directory: list
from the manifests, verify naming a bad file (exit 1), export readings to Parquet equal
to readings computed from the batches in the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from typer.testing import CliRunner

from millrace.pipeline.archive.format import HOUR_US
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.cli.main import app
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Record
from millrace.pipeline.telemetry_columns import samples_of

T0 = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z
runner = CliRunner()


def event(identity: str, ts: int, values: dict[str, Any], batch_id: str | None) -> dict[str, Any]:
    return {
        "identity": identity,
        "source": "test",
        "received_us": ts,
        "samples": [{"ts_us": ts, "values": values, "quality": 0}],
        "batch_id": batch_id,
    }


def build(tmp_path: Path) -> tuple[str, list[dict[str, Any]]]:
    """Two windows of batches (one batch sent twice); returns the url and the events."""
    codec = default_codec()
    events = [
        event("a", T0 + 10, {"t": 1.5, "on": True}, "b1"),
        event("b", T0 + 20, {"t": 7, "mode": "auto"}, "b2"),
        event("a", T0 + 10, {"t": 1.5, "on": True}, "b1"),  # a resend: counted once
        event("a", T0 + HOUR_US + 5, {"t": -2.0}, None),
        event("c", T0 + 3 * HOUR_US, {"t": 9.0}, "b4"),  # outside the exported range
    ]
    store = ArchiveStore(str(tmp_path / "archive"))
    records = [
        Record("telemetry", 0, i, samples_of(e)[0]["ts_us"], e["identity"].encode(),
               codec.encode("telemetry", e))
        for i, e in enumerate(events)
    ]  # fmt: skip
    store.write_window(records[:3], T0, T0 + HOUR_US)
    store.write_window(records[3:4], T0 + HOUR_US, T0 + 2 * HOUR_US)
    store.write_window(records[4:], T0 + 3 * HOUR_US, T0 + 4 * HOUR_US)
    return str(tmp_path / "archive"), events


def test_list_and_verify(tmp_path: Path) -> None:
    url, _ = build(tmp_path)
    r = runner.invoke(app, ["archive", "list", "--url", url, "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [(m["first_offset"], m["records"]) for m in rows] == [(0, 3), (3, 1), (4, 1)]
    r = runner.invoke(app, ["archive", "list", "--url", url, "--start", str(T0 // 10**6 + 7200)])
    assert r.exit_code == 0 and "1 window(s), 1 record(s)" in r.output
    r = runner.invoke(app, ["archive", "verify", "--url", url])
    assert r.exit_code == 0 and "3 file(s) verified" in r.output
    bad = tmp_path / "archive" / rows[1]["path"]
    bad.write_bytes(bad.read_bytes()[:-3] + b"xyz")
    r = runner.invoke(app, ["archive", "verify", "--url", url])
    assert r.exit_code == 1
    assert f"BAD {rows[1]['path']}" in r.output and "checksum" in r.output


def test_export_parquet_equals_the_readings(tmp_path: Path) -> None:
    url, events = build(tmp_path)
    out = tmp_path / "readings.parquet"
    start, end = "2025-11-24T16:00:00Z", "2025-11-24T18:00:00Z"
    r = runner.invoke(
        app, ["archive", "export", "--url", url, "--start", start, "--end", end, str(out)]
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["duplicates"] == 1
    got = sorted(
        (row["identity"], row["signal"], int(row["ts"].timestamp() * 1e6), row["kind"],
         row["value"], row["text"])
        for row in pq.read_table(out).to_pylist()
    )  # fmt: skip
    want = []
    seen = set()
    for e in events:
        ts = samples_of(e)[0]["ts_us"]
        if e["batch_id"] in seen or not T0 <= ts < T0 + 2 * HOUR_US:
            continue
        if e["batch_id"]:
            seen.add(e["batch_id"])
        for sig, v in samples_of(e)[0]["values"].items():
            if isinstance(v, bool):
                want.append((e["identity"], sig, ts, 1, float(v), ""))
            elif isinstance(v, str):
                want.append((e["identity"], sig, ts, 2, 0.0, v))
            elif isinstance(v, int):  # an integer: its own kind (3) since TelemetryBatch v5
                want.append((e["identity"], sig, ts, 3, float(v), ""))
            else:
                want.append((e["identity"], sig, ts, 0, float(v), ""))
    assert got == sorted(want) and summary["readings"] == len(want) == 5


def test_export_bad_input(tmp_path: Path) -> None:
    url, _ = build(tmp_path)
    out = str(tmp_path / "x.parquet")
    r = runner.invoke(app, ["archive", "export", "--url", url, "--start", "10", "--end", "5", out])
    assert r.exit_code == 1 and "--end" in r.output
    r = runner.invoke(app, ["archive", "export", "--url", url, "--start", "x", "--end", "5", out])
    assert r.exit_code == 1 and "start" in r.output
    r = runner.invoke(
        app, ["archive", "export", "--url", url, "--start", "1", "--end", "5", "--format", "csv",
              out],
    )  # fmt: skip
    assert r.exit_code == 1 and "parquet" in r.output
