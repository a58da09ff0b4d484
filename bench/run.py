"""The benchmark suite: ``python -m bench.run [--seconds N] [--quick]`` (``make bench``).

Every figure group runs in a fresh worker process on a fresh data directory (chDB
allows one data directory per process), one after the other. Prints ``name: value
unit`` lines and writes ``bench/RESULTS.md`` with the machine, the targets, how each
figure was measured, and how busy the rest of the machine was meanwhile.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import Load, LoadMeter, describe

Figures = dict[str, tuple[float, str]]
RESULTS = Path(__file__).with_name("RESULTS.md")

#: figure -> (comparison, target)
TARGETS: dict[str, tuple[str, float]] = {
    # issue 18: millrace run's arrangement (connectors on the engine's loop), 60 s
    "e2e_loop_readings_per_s": (">=", 1_000_000),
    "e2e_loop_cpu_us_per_reading": ("<=", 2.0),
    "e2e_loop_readings_unaccounted": ("<=", 0),
    "e2e_loop_ratio_to_store_limit": (">=", 0.5),
    # the connector in a process of its own (the pipeline's share of the CPU)
    "e2e_readings_per_s": (">=", 250_000),
    "e2e_readings_unaccounted": ("<=", 0),
    "latency_p99_s": ("<", 1.0),
    "log_bytes_per_reading": ("<=", 6.0),
    "chdb_bytes_per_reading": ("<=", 0.35),
    # RSS flat at full rate over 10 minutes: the anonymous memory's slope after warm-up
    "memory_rss_anon_slope_mib_per_min": ("<=", 1.0),
    "api_latest_1000_p99_ms": ("<", 50.0),
    "api_agg_1h_year_p99_ms": ("<", 50.0),
    "api_agg_1h_page_p99_ms": ("<", 50.0),
    "api_raw_1000_p99_ms": ("<", 50.0),
    # while ingesting at half the e2e rate
    "api_load_latest_1000_p99_ms": ("<", 50.0),
    "api_load_agg_1h_year_p99_ms": ("<", 50.0),
    "api_load_raw_1000_p99_ms": ("<", 50.0),
    "replay_readings_per_s": (">=", 2_000_000),
    "http_ingest_landed_readings_per_s": (">=", 300_000),
    "archive_bytes_per_reading": ("<=", 5.0),
    "restore_readings_per_s": (">=", 500_000),
    "restore_worker_readings_per_s": (">=", 500_000),
    "console_load_overview_ms": ("<", 1000.0),
    "console_load_live_ms": ("<", 1000.0),
    "console_load_explorer_ms": ("<", 1000.0),
    "console_load_alarms_ms": ("<", 1000.0),
    "console_load_identities_ms": ("<", 1000.0),
    "console_load_services_ms": ("<", 1000.0),
    "console_chart_10k_draw_ms": ("<", 1000.0),
}

NOTES: dict[str, str] = {
    "console": (
        "bench/console.py: `millrace run` with the simulator (3 devices x 4 signals) and "
        "Debian's headless Chromium driven by Selenium, signed in as the admin. "
        "console_load_<page>_ms: median time from the browser starting the navigation "
        "(assets cached) until the page's content is drawn with its data (overview: readiness, "
        "lag, alarms and disk; live data: a grid row; explorer: a signal's points; alarms: the "
        "total; identities and services: a row), checked in the page every 5 ms, `loads` "
        "times each. "
        "console_chart_10k_draw_ms: 10,000 points (5 series x 2,000; the explorer asks for at most "
        "2,500 per signal) set on the explorer's ECharts instance, timed from setOption to "
        "ECharts' `finished` event, median of 5."
    ),
    "restore": (
        "bench/restore_bench.py: the simulator (1000 devices x 25 signals, one TelemetryBatch "
        "per device per tick, every other one with a batch id) archived as one-hour Avro "
        "container files (4 partitions, zstandard), then one restore task's handler folds "
        "every file into empty chDB projections, timed: read + sha256 + decode + batch-id "
        "admission + telemetry fold + inserts (chunks of 20,000 records). "
        "restore_again_readings_per_s: the same range restored again (every batch already "
        "applied: checked and dropped, nothing written). restore_worker_*: the same, the "
        "files folded by two worker processes (restore.worker; started before the timing), "
        "CPU counted across the processes."
    ),
    "archive": (
        "bench/archive_bench.py: the simulator (1000 devices x 25 signals, one "
        "TelemetryBatch per device per tick, 1 s apart) appended to a LocalEventLog (4 "
        "partitions, fsync=never), then one Archiver pass with a flush copies the telemetry "
        "topic to a local-directory archive store (Avro container files, zstandard level 6 "
        "and deflate, 4 MiB blocks), timed: read + encode + compress + sha256 + write. "
        "bytes_per_reading = sum of the files' sizes / readings; readings_per_s and "
        "log_mb_per_s (the Avro payload read from the log) over the pass's wall time."
    ),
    "e2e": (
        "Simulator (1000 devices x 25 signals, one TelemetryBatch per device per tick, "
        "realtime=False) -> Avro -> LocalEventLog (4 partitions, fsync=batch) -> "
        "EmbeddedRuntime (max_records=5000, the engine default) -> chDB. The simulator and "
        "the Avro encoding run in a child process (a connector process); the parent appends "
        "to the log and runs the runtime on one asyncio loop. The producer is held back "
        "while the runtime is more than 40,000 records behind, so it runs as fast as the "
        "pipeline absorbs readings. `e2e_readings_per_s` = `SELECT count() FROM "
        "millrace.readings` at the end / wall time from the first append until the runtime "
        "stopped (readings still in the log are not counted: `runtime_lag_records`). "
        "`e2e_cpu_cores` / `e2e_cpu_us_per_reading`: CPU of the parent and the producer child "
        "(its start-up included) over the wall time / per reading made queryable. "
        "`e2e_readings_unaccounted` = readings in chDB - committed records x 25: 0 means "
        "no reading lost or counted twice. Storage: after "
        "OPTIMIZE TABLE ... FINAL of every millrace table, sum(bytes_on_disk) of active parts "
        "of `millrace.readings` (and of all millrace tables) / rows of readings; log bytes = "
        "telemetry segment + index files / readings appended."
    ),
    "memory": (
        "bench/e2e.py in `millrace run`'s arrangement (the loop producer, as e2e_loop) for "
        "a long run (600 s by default, `--seconds` sets it): the summed RSS of the bench "
        "process (log, runtime, chDB) sampled every 5 s from a thread of its own. "
        "first/last/max, and the least-squares slope over the samples after the first "
        "fifth of the run (start-up, chDB's caches and the log's page cache filling). "
        "Every e2e group reports the same figures for its own run (`e2e_rss_*`, with the "
        "producer child's RSS included for the process producer). The GC policy of "
        "`millrace run` (pipeline/runtime/gc_policy.py) is applied in every e2e group "
        "unless `--no-gc-policy` (`*_gc_policy` = 0)."
    ),
    "e2e_loop": (
        "Same, but the SimulatorConnector publishes through LogPublisher on the runtime's "
        "own asyncio loop, exactly as `millrace run` does (generation and Avro encoding "
        "share the GIL with the runtime). "
        "loop_store_limit_readings_per_s: chDB's own insert rate for the same rows into the same "
        "tables, in the same run: every insert the runtime sent to chDB (projection rows and "
        "progress rows, with their SQL and settings) recorded, then sent again one after the "
        "other into freshly migrated empty projections, timed (no log, decode or fold); "
        "e2e_loop_ratio_to_store_limit = e2e_loop_readings_per_s / that limit. The run's RSS "
        "holds the recorded inserts (see the memory group for RSS)."
    ),
    "latency": (
        "The process producer paced at half of `e2e_readings_per_s` (one tick of 1000 "
        "batches every 200 ms or so), runtime as above. A poller on a second chDB session "
        "(as the API reads) queries every 20 ms the newest `ts` of one probe device per log "
        "partition; a tick's latency is from just before its append until the end of the "
        "first poll that returns it for every probe (an upper bound: includes up to one "
        "poll interval and the query). The first 3 s are warm-up and not counted. "
        "`latency_append_p99_s` is the log append itself (fsync included)."
    ),
    "api": (
        "Data through the pipeline: a year of 1-minute readings of 4 signals of `plant-0` "
        "(the simulator with interval_ms=60000 and start_us a year ago, one TelemetryBatch "
        "of 1440 samples per day), then 5 ticks of 1000 x 25 simulator devices. uvicorn "
        "serves `create_app` on 127.0.0.1 in the engine's asyncio loop with the runtime "
        "running (idle); a separate client process sends sequential httpx GETs: 20 warm-up "
        "then N timed per endpoint. latest = `GET /api/v1/signals/latest?limit=1000`; "
        "agg_1h_year = every 1h bucket of the year of one signal (`limit=10000`: 8760 "
        "buckets); agg_1h_page = the same range, first page of 1000; raw = "
        "`GET /api/v1/identities/plant-0/signals/temperature_0?limit=1000`. `api_load_*`: "
        "the same requests again while the process producer appends at half of "
        "`e2e_readings_per_s` and the runtime folds it into chDB (as `millrace run` serves "
        "the API while ingesting); `api_load_readings_per_s` is what the runtime processed "
        "meanwhile. `api_backfill_readings_per_s` is set-up speed, dominated by generating "
        "the 525,600 one-minute simulator ticks one at a time (not a pipeline figure). "
        "`api_loop_stall_*`: how late a 10 ms `asyncio.sleep` on the server's "
        "loop wakes up while the client runs (the handlers' own loop time included); "
        "under load it adds the log appends and reads the engine runs on that loop."
    ),
    "kafka": (
        "bench/kafka_bench.py: the distributed deployment on librdkafka's mock cluster "
        "(tests/kafka_mock.py: one in-process broker in a child process, 4 partitions, no "
        "replication, loopback only, on the same 2 cores as everything else). The bench "
        "produces `ticks` simulator ticks (`devices` x 25 signals, Avro, aiokafka) to fresh "
        "topics, then starts 1 (then, on a fresh mock cluster, 2) real `millrace process` "
        "workers (faust; chDB each in its own data directory, as no ClickHouse server runs "
        "here) and polls the group's committed offsets every 0.25 s. `kafka_Nw_readings_per_s` "
        "= readings / time from the last poll that saw no commit to the one that saw all "
        "committed (start-up mostly not counted; a rebalance while the second worker joins is)."
        " `*_readings_unaccounted` = `count()` of readings in the workers' chDB directories "
        "after they stopped - readings produced (24 ticks: the mock keeps only a few MB per "
        "partition and drops the oldest records past that; with 40 ticks the workers found "
        "offset 0 gone, warned and went on: -2225). `*_cores`: CPU per process (/proc) over "
        "that window; `kafka_produce_*`: the producing side (this process and the broker) while"
        " it produced. The workers import tests/runtime/worker_main.py first for its two work-"
        "arounds of the mock's group coordinator (test scaffolding)."
    ),
    "log": "bench/log_bench.py: 2 KB records, 100 per append, one partition.",
    "http_ingest": (
        "bench/http_ingest.py: a real `millrace run` (no simulator) and 4 client processes "
        "each sending `POST /api/v1/identities/{id}/data` back to back (1,000 samples of one "
        "signal per request, bodies built beforehand, 100 identities per client). "
        "`accepted`: readings in 202 answers / sending time; `landed`: the same readings / "
        "the time until `millrace.readings` holds them all; server CPU per reading over "
        "that time; the clients share the 2 cores."
    ),
    "connectors": (
        "bench/connector_modbus.py: pymodbus's server in a child process holds 2000 "
        "registers; the ModbusConnector polls 1000 uint16 + 500 float32 endpoints of 10 "
        "identities back to back (17 coalesced requests of at most 125 registers) into a "
        "LocalEventLog with fsync=batch; the log is decoded afterwards and must hold every "
        "reading (`modbus_readings_missing_from_log` = 0). bench/connector_opcua.py: "
        "asyncua's server in a child process writes 200 Double variables as fast as it "
        "can; the OpcuaConnector (one subscription, 100 ms publishing interval, queued "
        "monitored items) publishes into a LocalEventLog with fsync=batch. On two cores "
        "the Python server is the limit (`opcua_server_writes_per_s`); "
        "`opcua_changes_per_connector_cpu_s` is the connector's own cost."
    ),
    "alarms": (
        "bench/alarm_bench.py: the AlarmRunner over 1000 devices x 25 signals per "
        "TelemetryBatch already on an in-memory log; readings/s of wall time for decode + "
        "evaluate + the alarms it appends: no rule on telemetry (batches skipped "
        "undecoded), one limit rule on 1 signal in 25, one limit rule per signal."
    ),
    "replay": (
        "bench/replay_bench.py: `ticks` simulator ticks of 1000 devices x 25 signals folded "
        "first; then, with uvicorn serving the API on the engine's loop, the runtime "
        "running and the process producer appending 20,000 readings/s, a replay of every "
        "projection (shadow tables, the live fold held for the swap; its own chDB "
        "session). `replay_readings_per_s`: readings the replay rebuilt / its wall time; "
        "`replay_live_hold_ms`: how long the live fold was held (the last records and the "
        "EXCHANGE TABLES); `replay_live_readings_per_s`: what the live runtime folded "
        "meanwhile; `replay_api_*`: sequential GETs (latest 1000, 1000 raw readings) from "
        "a client process for the whole replay, p50/p99 and non-200 answers."
    ),
    "isolation": (
        "bench/isolation.py: a real `millrace run` (simulator devices x 25 signals every "
        "200 ms, at half of `e2e_loop_readings_per_s`; API on 127.0.0.1), measured for N s "
        "idle, then for N s while seven viewer keys each send at once `POST /api/v1/sql` "
        "with a query that runs into its 10 s limit (a cross join of `millrace.readings` "
        "with 1000 of its values, hashing each pair). One client probes sequentially: an "
        "ingest `POST /identities/probe-0/data` of one reading, then `GET /signals/latest"
        "?limit=1000` (timed: `latest_1000_*`) and `GET /signals/latest?identities=probe-0` "
        "until the reading shows (`queryable_*`: from before the POST until then; includes "
        "the polls), 20 ms apart. `skipped_ticks`: ticks the simulator dropped because it "
        "fell a whole interval behind. `sql_*`: how the analysts' queries ended (timeout: "
        "ran its 10 s; 429: over the concurrency limit). `*_other_cores`: CPU of every "
        "other process on the machine during the phase."
    ),
}

ORDER = (
    "e2e",
    "e2e_loop",
    "memory",
    "latency",
    "api",
    "log",
    "connectors",
    "alarms",
    "isolation",
    "http_ingest",
    "archive",
    "replay",
    "restore",
    "kafka",
    "console",
)


def plan(seconds: float, quick: bool) -> dict[str, dict[str, Any]]:
    """Worker parameters per group; latency's rate is filled in after e2e."""
    s = seconds if seconds > 0 else (4.0 if quick else 60.0)
    return {
        "e2e": {"seconds": s, "producer": "process", "storage": True},
        "e2e_loop": {"seconds": s, "producer": "loop", "storage": False, "limit": True},
        "memory": {"seconds": seconds if seconds > 0 else (6.0 if quick else 600.0)},
        "latency": {"seconds": s},
        "api": {"requests": 30 if quick else 500, "days": 7 if quick else 365},
        "log": {"seconds": 1.5 if quick else 6.0},
        "connectors": {"seconds": 2 if quick else 10},
        "alarms": {"seconds": 2 if quick else 5},
        "isolation": {"seconds": 4 if quick else 10},
        "http_ingest": {"seconds": 3 if quick else 20, "clients": 2 if quick else 4},
        "replay": {"ticks": 8 if quick else 200, "load_rate": 20_000.0},
        "archive": {"ticks": 20 if quick else 120},
        "restore": {"ticks": 8 if quick else 60},
        # the mock drops a partition's oldest records past a few MB: stay below
        "kafka": {"ticks": 4 if quick else 24, "devices": 100 if quick else 1000},
        "console": {"loads": 3 if quick else 10},
    }


def worker(group: str, params: dict[str, Any], workdir: Path) -> Figures:
    """Run one group in this process (called in a fresh child by :func:`main`)."""
    if group == "memory":
        from bench.e2e import e2e

        figs, _ = e2e(
            params["seconds"],
            producer="loop",
            storage=False,
            workdir=workdir,
            gc_policy=params.get("gc_policy", True),
            rss_interval_s=min(5.0, params["seconds"] / 6),
        )
        return {"memory_" + k.removeprefix("e2e_"): v for k, v in figs.items()}
    if group in ("e2e", "e2e_loop"):
        from bench.e2e import e2e

        figs, run = e2e(
            params["seconds"],
            producer=params["producer"],
            storage=params["storage"],
            workdir=workdir,
            gc_policy=params.get("gc_policy", True),
            batch_ticks=params.get("batch_ticks", 1),
            limit=params.get("limit", False),
        )
        if group == "e2e_loop":
            figs = {
                (k.replace("e2e_", "e2e_loop_", 1) if k.startswith("e2e_") else f"loop_{k}"): v
                for k, v in figs.items()
            }
        figs[f"{group}_ticks"] = (float(run.ticks), "ticks")
        figs[f"{group}_runtime_batches"] = (float(run.runtime_batches), "batches")
        figs[f"{group}_producer_wait_s"] = (run.producer_wait_s, "s")
        figs[f"{group}_runtime_errors"] = (float(run.runtime_errors), "errors")
        return figs
    if group == "latency":
        from bench.latency import measure

        return measure(params["seconds"], params["rate"], workdir=workdir)
    if group == "api":
        from bench.api import measure as api_measure

        return api_measure(
            params["requests"],
            days=params["days"],
            load_rate=params.get("load_rate"),
            workdir=workdir,
        )
    if group == "log":
        try:
            from bench.log_bench import run as log_run
        except ImportError:
            return {}
        return log_run(params["seconds"], workdir)
    if group == "connectors":
        from bench.connector_modbus import run as modbus_run
        from bench.connector_opcua import run as opcua_run

        figs = modbus_run(params["seconds"], workdir)
        figs.update(opcua_run(params["seconds"], 200, 100, workdir))
        return figs
    if group == "alarms":
        from bench.alarm_bench import run as alarm_run

        return alarm_run(params["seconds"])
    if group == "isolation":
        from bench.isolation import measure as isolation_measure

        return isolation_measure(params["seconds"], workdir, params.get("rate"))
    if group == "http_ingest":
        from bench.http_ingest import measure as http_measure

        return http_measure(params["seconds"], workdir, clients=params["clients"])
    if group == "archive":
        from bench.archive_bench import run as archive_run

        return archive_run(params["ticks"], workdir)
    if group == "restore":
        from bench.restore_bench import run as restore_run

        return restore_run(params["ticks"], workdir)
    if group == "kafka":
        from bench.kafka_bench import run as kafka_run

        return kafka_run(params["ticks"], params["devices"], workdir)
    if group == "replay":
        from bench.replay_bench import measure as replay_measure

        return replay_measure(ticks=params["ticks"], load_rate=params["load_rate"], workdir=workdir)
    if group == "console":
        from bench.console import run as console_run

        return console_run(params["loads"], workdir)
    raise ValueError(f"unknown group {group!r}")


def _spawn(group: str, params: dict[str, Any], workdir: Path) -> tuple[Figures, Load, str]:
    """Run ``group`` in a fresh interpreter; (figures, load, error text)."""
    cmd = [
        sys.executable,
        "-m",
        "bench.run",
        "--worker",
        group,
        "--params",
        json.dumps(params),
        "--workdir",
        str(workdir),
    ]
    with LoadMeter() as meter:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {}, meter.load, proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: (float(v[0]), str(v[1])) for k, v in doc.items()}, meter.load, ""


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _met(name: str, value: float) -> str:
    op, target = TARGETS[name]
    ok = {">=": value >= target, "<": value < target, "<=": value <= target}[op]
    return "met" if ok and not math.isnan(value) else "**missed**"


def write_results(
    path: Path,
    machine: dict[str, str],
    results: dict[str, tuple[Figures, Load, str]],
    quick: bool,
    total_s: float,
) -> None:
    everything: Figures = {}
    for figs, _load, _err in results.values():
        everything.update(figs)
    lines = [
        "# millrace bench results",
        "",
        f"`python -m bench.run{' --quick' if quick else ''}` — {machine['date']}, "
        f"{total_s / 60:.1f} min in all."
        + (" **Quick (smoke-test) run: figures are not representative.**" if quick else ""),
        "",
        "How each figure is measured: `bench/README.md` and the notes below; where the time "
        "goes and what to change: `bench/PROFILE.md`; what each run showed, why a figure "
        "falls short, and the partial before/after measurements between full runs, dated: "
        "`bench/HISTORY.md`.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in machine.items()),
        "",
        "## Targets",
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
    ]
    for name, (op, target) in TARGETS.items():
        value, unit = everything.get(name, (float("nan"), ""))
        lines.append(
            f"| {name} | {_fmt(value)} {unit} | {op} {_fmt(target)} | {_met(name, value)} |"
        )
    lines += ["", "## Figures", ""]
    for group, (figs, load, err) in results.items():
        lines += [f"### {group}", "", NOTES.get(group, ""), ""]
        lines.append(
            f"Wall {load.wall_s:.0f} s; this bench used {load.ours_cores:.2f} cores, "
            f"other processes on the machine {load.others_cores:.2f} cores "
            f"(of {machine['cores']})."
        )
        lines.append("")
        if err:
            lines += [f"**Failed:** `{err}`", ""]
            continue
        lines += ["| figure | value | unit |", "|---|---|---|"]
        lines += [f"| {k} | {_fmt(v)} | {u} |" for k, (v, u) in figs.items()]
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="millrace benchmark suite")
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.0,
        help="seconds per throughput/latency figure (default 60, quick 4)",
    )
    parser.add_argument("--quick", action="store_true", help="every figure briefly (smoke test)")
    parser.add_argument("--only", default="", help="comma-separated groups: " + ",".join(ORDER))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--no-gc-policy",
        action="store_true",
        help="e2e groups: keep the interpreter's GC defaults (to measure the policy)",
    )
    parser.add_argument(
        "--batch-ticks",
        type=int,
        default=1,
        help="e2e groups: ticks per device's TelemetryBatch (the simulator's batch_ticks)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"Markdown report (default: {RESULTS.name} for a full run, none with --quick/--only)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.gettempdir())
    if args.worker:
        figs = worker(args.worker, json.loads(args.params), workdir)
        print(json.dumps(figs))
        return
    groups = [g for g in (args.only.split(",") if args.only else ORDER) if g]
    params = plan(args.seconds, args.quick)
    for group in ("e2e", "e2e_loop", "memory"):
        params[group]["gc_policy"] = not args.no_gc_policy
    for group in ("e2e", "e2e_loop"):
        params[group]["batch_ticks"] = args.batch_ticks
    machine = describe()
    started = time.perf_counter()
    results: dict[str, tuple[Figures, Load, str]] = {}
    for group in groups:
        p = params[group]
        if group in ("latency", "api"):
            e2e_rate = results.get("e2e", ({}, None, ""))[0].get("e2e_readings_per_s")
            half = 0.5 * e2e_rate[0] if e2e_rate else 100_000.0
            p["rate" if group == "latency" else "load_rate"] = half
        if group == "isolation":
            # millrace run: the connector on the engine's loop
            loop_rate = results.get("e2e_loop", ({}, None, ""))[0].get("e2e_loop_readings_per_s")
            p["rate"] = 0.5 * loop_rate[0] if loop_rate else 125_000.0
        print(f"# {group} ...", file=sys.stderr, flush=True)
        results[group] = _spawn(group, p, workdir)
        figs, load, err = results[group]
        if err:
            print(f"# {group} failed: {err}", file=sys.stderr, flush=True)
        for name, (value, unit) in figs.items():
            print(f"{name}: {value:.6g} {unit}", flush=True)
        print(
            f"# {group}: other processes used {load.others_cores:.2f} cores",
            file=sys.stderr,
            flush=True,
        )
    target = args.results or (None if args.quick or args.only else RESULTS)
    if target is not None:
        write_results(target, machine, results, args.quick, time.perf_counter() - started)
        print(f"# wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
