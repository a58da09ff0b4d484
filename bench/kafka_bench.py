"""The distributed deployment's throughput on librdkafka's mock cluster, with one and
with two ``millrace process`` workers.

For each worker count, on fresh topics (a topic prefix of its own) of a mock cluster
of its own (``tests/kafka_mock.py``: one broker in a child process, 4 partitions):

1. this process produces ``ticks`` simulator ticks (``devices`` x 25 signals, one
   TelemetryBatch per device per tick) to the telemetry topic, Avro-encoded, through
   ``KafkaEventLog`` (aiokafka), as ``millrace connect`` would;
2. ``workers`` real ``millrace process`` processes start together (faust, chDB each in
   a data directory of its own, since no ClickHouse server runs here; the partitions
   are shared by the consumer group);
3. the faust group's committed offsets are polled every 0.25 s (a worker commits only
   what its sink wrote, ``pipeline.runtime.faust_runtime``) until every record is
   committed;
4. the workers are stopped (SIGTERM) and ``millrace sql`` counts the readings in each
   data directory: ``*_readings_unaccounted`` = readings landed - readings produced.

``readings_per_s`` = readings produced / the time from the last poll that saw nothing
committed to the poll that saw everything committed (the workers' start-up and the
group's first join are mostly not counted; a rebalance while the second worker joins
is). CPU per process (``/proc``) over that window says where
the time goes: the workers, the mock broker and, during production, this process.

The worker processes import ``tests.runtime.worker_main`` before the CLI, for its two
work-arounds of the mock's group coordinator (it answers a late follower's SyncGroup
with INVALID_REQUEST; it keeps an evicted member id): test scaffolding that a real
broker does not need, millrace's code unchanged.
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.procstat import cpu_seconds
from millrace.connectors.simulator import SimulatorConfig, SimulatorConnector
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Message, TopicPartition
from millrace.pipeline.log.kafka import KafkaEventLog, KafkaLogConfig
from millrace.pipeline.runtime.faust_runtime import FaustRuntimeConfig
from millrace.pipeline.topics import TELEMETRY
from tests.kafka_mock import MockKafkaCluster

Figures = dict[str, tuple[float, str]]
ROOT = Path(__file__).resolve().parents[1]
START_US = 1_735_689_600_000_000
SIGNALS = 25
_WORKER = (
    "import tests.runtime.worker_main  # noqa: F401 - the mock's work-arounds\n"
    "from millrace.pipeline.cli.main import app\n"
    "app()\n"
)


def _say(what: str) -> None:
    print(f"# kafka {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


async def produce(bootstrap: str, prefix: str, ticks: int, devices: int) -> tuple[int, float]:
    """Produce ``ticks`` ticks to the telemetry topic; (records, seconds)."""
    sim = SimulatorConnector(
        SimulatorConfig(devices=devices, signals=SIGNALS, start_us=START_US, realtime=False)
    )
    codec = default_codec()
    log = KafkaEventLog(KafkaLogConfig(bootstrap_servers=bootstrap, topic_prefix=prefix))
    await log.start((TELEMETRY,))
    records = 0
    t0 = time.perf_counter()
    try:
        for tick in range(ticks):
            events = sim.generate_tick(tick, START_US + tick * 1_000_000)
            messages = [
                Message(codec.encode(TELEMETRY, e), key=identity.encode()) for identity, e in events
            ]
            await log.append(TELEMETRY, messages)
            records += len(messages)
    finally:
        await log.close()
    return records, time.perf_counter() - t0


async def committed(bootstrap: str, prefix: str) -> tuple[int, int]:
    """(records committed by the faust group, records in the topic)."""
    group = FaustRuntimeConfig(bootstrap=bootstrap).consumer_name
    log = KafkaEventLog(KafkaLogConfig(bootstrap_servers=bootstrap, topic_prefix=prefix))
    await log.start((TELEMETRY,))
    try:
        done = end = 0
        for p in range(log.partitions(TELEMETRY)):
            end += (await log.offsets(TELEMETRY, p))[1]
            done += await log.committed(group, TopicPartition(TELEMETRY, p)) or 0
        return done, end
    finally:
        await log.close()


#: readings, deadletters, and the first deadletter's reason, in one chDB start
_COUNT = (
    "SELECT (SELECT count() FROM millrace.readings), "
    "(SELECT count() FROM millrace.deadletter_public), "
    "(SELECT any(reason) FROM millrace.deadletter_public)"
)


def _count(data: Path) -> tuple[int, int, str]:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "millrace.pipeline.cli.main",
            "sql",
            _COUNT,
            "--data-dir",
            str(data),
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    )
    readings, dead, reason = next(csv.reader(r.stdout.splitlines()[1:]))
    return int(readings), int(dead), reason


def one_run(
    workers: int,
    ticks: int,
    devices: int,
    base: Path,
    timeout_s: float,
    max_records: int | None = None,
) -> Figures:
    """Produce, fold with ``workers`` processes, count (see the module doc);
    ``max_records``: the workers' ``runtime.max_records`` (default: the config's)."""
    tag = f"kafka_{workers}w"
    config = base / f"{tag}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"runtime: {{max_records: {max_records}}}\n" if max_records else "{}\n")
    prefix = f"b{uuid.uuid4().hex[:8]}-"
    with MockKafkaCluster() as cluster:
        broker = cluster._process.pid if cluster._process else None
        cpu_self0, cpu_broker0 = cpu_seconds(), cpu_seconds(broker)
        _say(f"{tag}: producing")
        records, produce_s = asyncio.run(produce(cluster.bootstrap, prefix, ticks, devices))
        _say(f"{tag}: starting the workers")
        produce_cpu = cpu_seconds() - cpu_self0
        produce_broker_cpu = cpu_seconds(broker) - cpu_broker0
        env = {
            **os.environ,
            "MILLRACE_KAFKA_BOOTSTRAP": cluster.bootstrap,
            "MILLRACE_TOPIC_PREFIX": prefix,
        }
        env.pop("MILLRACE_CLICKHOUSE_URL", None)
        dirs = [base / f"{tag}-{i}" for i in range(workers)]
        procs = []
        for d in dirs:
            d.mkdir(parents=True)
            with open(d.with_suffix(".log"), "wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            _WORKER,
                            "process",
                            "--data-dir",
                            str(d),
                            "--config",
                            str(config),
                        ],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        try:
            # the window opens at the last poll that saw nothing committed (the first
            # take is being read and folded then), and closes when all is committed
            # (if the first poll already sees commits: from the workers' start)
            first, last = time.perf_counter(), 0.0
            cpu0 = [cpu_seconds(p.pid) for p in procs] + [cpu_seconds(broker)]
            announced = False
            deadline = time.monotonic() + timeout_s
            while True:
                cpu = [cpu_seconds(p.pid) for p in procs] + [cpu_seconds(broker)]
                now = time.perf_counter()
                done, end = asyncio.run(committed(cluster.bootstrap, prefix))
                if not done:
                    first, cpu0 = now, cpu
                elif not announced:
                    _say(f"{tag}: first commit")
                    announced = True
                if done >= end:
                    last = time.perf_counter()
                    cpu1 = [cpu_seconds(p.pid) for p in procs] + [cpu_seconds(broker)]
                    break
                dead = [p.returncode for p in procs if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    tail = "".join(d.with_suffix(".log").read_text()[-1500:] for d in dirs)
                    raise RuntimeError(f"{done}/{end} committed, exits {dead}: {tail}")
                time.sleep(0.25)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    _say(f"{tag}: counting")
    counts = [_count(d) for d in dirs]
    landed = sum(c[0] for c in counts)
    reasons = {c[2] for c in counts if c[1]}
    if reasons:
        _say(f"{tag}: deadletters, e.g. {sorted(reasons)[0][:300]}")
    _say(f"{tag}: done")
    window = max(last - first, 1e-6)
    readings = records * SIGNALS
    figs: Figures = {
        f"{tag}_readings_per_s": (readings / window, "readings/s"),
        f"{tag}_fold_s": (window, "s"),
        f"{tag}_readings": (float(readings), "readings"),
        f"{tag}_readings_unaccounted": (float(landed - readings), "readings"),
        f"{tag}_deadletters": (float(sum(c[1] for c in counts)), "records"),
        f"{tag}_broker_cores": ((cpu1[-1] - cpu0[-1]) / window, "cores"),
    }
    worker_cpu = [b - a for a, b in zip(cpu0[:-1], cpu1[:-1], strict=True)]
    for i, c in enumerate(worker_cpu):
        figs[f"{tag}_worker{i}_cores"] = (c / window, "cores")
    figs[f"{tag}_cpu_us_per_reading"] = (
        (sum(worker_cpu) + cpu1[-1] - cpu0[-1]) / readings * 1e6,
        "us/reading",
    )
    if workers == 1:
        figs["kafka_produce_readings_per_s"] = (readings / produce_s, "readings/s")
        figs["kafka_produce_cpu_us_per_reading"] = (
            (produce_cpu + produce_broker_cpu) / readings * 1e6,
            "us/reading",
        )
    return figs


def run(ticks: int, devices: int, workdir: Path | None = None, timeout_s: float = 600) -> Figures:
    """One worker, then two, on the same amount of data; the scale-out ratio."""
    base = Path(tempfile.mkdtemp(prefix="millrace-kafka-bench-", dir=workdir))
    try:
        figs: Figures = {}
        for workers in (1, 2):
            figs.update(one_run(workers, ticks, devices, base, timeout_s))
        one = figs["kafka_1w_readings_per_s"][0]
        figs["kafka_scale_out_ratio"] = (figs["kafka_2w_readings_per_s"][0] / one, "x")
        return figs
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 3:  # one worker count only: TICKS DEVICES WORKERS [MAX_RECORDS]
        n, ticks, devices = int(sys.argv[3]), int(sys.argv[1]), int(sys.argv[2])
        most = int(sys.argv[4]) if len(sys.argv) > 4 else None
        with tempfile.TemporaryDirectory() as tmp:
            figures = one_run(n, ticks, devices, Path(tmp), 900, most)
    else:
        figures = run(int(sys.argv[1]), int(sys.argv[2]))
    for name, (value, unit) in figures.items():
        print(f"{name}: {value:.6g} {unit}")
