"""CPU cost of each stage of the end-to-end path, run one stage after the other.

``python -m bench.profile [--ticks 40] [--batch 20] [--batch-ticks 1] [--no-gc-policy]``: the
simulator makes ``ticks`` ticks (1000 devices x 25 signals each; ``batch-ticks`` of them per
device's TelemetryBatch), then every stage runs on all of them the way
the pipeline does (appends per tick; the runtime's reads, decoding, processing and
chDB writes per ``batch`` ticks, as with max_records=5000 on 4 partitions). CPU time
(``time.process_time``: every thread of this process, chDB's included) is not
inflated by other processes on the machine the way wall time is; wall time of the
log append (fsync) and the chDB writes is shown too. The GC policy of ``millrace run``
(``pipeline.runtime.gc_policy``) is applied once the pipeline is open, unless
``--no-gc-policy``; the collector's own time is inside the stages' figures (the
``gc`` line counts collections and their time, from ``gc.callbacks``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.e2e import START_US, TICK_US, Pipeline
from millrace.connectors.simulator import SimulatorConfig, SimulatorConnector
from millrace.pipeline.log.base import Message, Record, TopicPartition
from millrace.pipeline.processors import telemetry as tp
from millrace.pipeline.processors.base import Event
from millrace.pipeline.runtime.gc_policy import GcConfig, apply
from millrace.pipeline.sink import Range, SinkBatch
from millrace.pipeline.topics import TELEMETRY


class Stages:
    """CPU and wall seconds per stage name."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        c, w = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w


def _produce(
    st: Stages, p: Pipeline, ticks: int, devices: int, signals: int, batch_ticks: int = 1
) -> None:
    sim = SimulatorConnector(
        SimulatorConfig(devices=devices, signals=signals, start_us=START_US, realtime=False)
    )
    for tick in range(0, ticks, batch_ticks):
        n = min(batch_ticks, ticks - tick)
        with st.stage("1 simulate"):
            batches = sim.generate_ticks(tick, n, START_US + tick * TICK_US, TICK_US)
        with st.stage("2 avro encode"):
            msgs = [Message(p.codec.encode(TELEMETRY, e), key=k.encode()) for k, e in batches]
        with st.stage("3 log append (fsync=batch)"):
            p.log.append_sync(TELEMETRY, msgs)


def _consume(st: Stages, p: Pipeline, per_partition: int) -> None:
    parts = p.log.partitions(TELEMETRY)
    positions = [0] * parts
    processor = tp.TelemetryProcessor()
    seq = 0
    while True:
        records: list[Record] = []
        ranges: dict[TopicPartition, Range] = {}
        for n in range(parts):
            with st.stage("4 log read"):
                got = p.log.read_sync(TELEMETRY, n, positions[n], per_partition)
            if got:
                records.extend(got)
                ranges[TopicPartition(TELEMETRY, n)] = Range(positions[n], got[-1].offset + 1)
                positions[n] = got[-1].offset + 1
        if not records:
            return
        with st.stage("5 avro decode"):
            events = [
                Event(
                    r.topic,
                    r.partition,
                    r.offset,
                    r.timestamp_us,
                    r.key,
                    p.codec.decode(TELEMETRY, r.value),
                )
                for r in records
            ]
        with st.stage("6 flatten"):
            flat = tp.flatten_all(events)
            readings = flat.readings
        with st.stage("7 latest"):
            tp.latest(readings, flat.groups)
        with st.stage("8 sort for aggregates"):
            good, groups = tp.order_good(readings, flat.groups)
        for name, width in processor.buckets.items():
            with st.stage(f"9 aggregate {name}"):
                tp.aggregate(good, width, groups)
        out = processor.process(events)  # the real thing, for the write (not timed)
        seq += 1
        with st.stage("10 chDB write (all tables)"):
            p.runtime.sink.write("profile", SinkBatch(seq=seq, ranges=ranges, tables=out.tables))


class GcTimer:
    """Collections and their CPU seconds, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.collections = 0
        self.cpu_s = 0.0
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.process_time()
        else:
            self.collections += 1
            self.cpu_s += time.process_time() - self._t


def profile(
    ticks: int,
    batch: int,
    devices: int = 1000,
    signals: int = 25,
    gc_policy: bool = True,
    batch_ticks: int = 1,
) -> tuple[Stages, GcTimer]:
    """Produce ``ticks`` ticks into a fresh log, then consume them ``batch`` at a time."""
    st, timer = Stages(), GcTimer()
    base = Path(tempfile.mkdtemp(prefix="millrace-profile-"))
    try:
        p = Pipeline(base / "data")
        p.open()
        apply(GcConfig(enabled=gc_policy))
        gc.callbacks.append(timer)
        try:
            _produce(st, p, ticks, devices, signals, batch_ticks)
            per_partition = batch * devices // p.log.partitions(TELEMETRY) // batch_ticks
            _consume(st, p, max(1, per_partition))
        finally:
            gc.callbacks.remove(timer)
        asyncio.run(p.close())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return st, timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=40)
    parser.add_argument("--batch", type=int, default=20, help="ticks per runtime batch")
    parser.add_argument(
        "--batch-ticks", type=int, default=1, help="ticks per device's TelemetryBatch"
    )
    parser.add_argument(
        "--no-gc-policy", action="store_true", help="keep the interpreter's GC defaults"
    )
    args = parser.parse_args()
    st, timer = profile(
        args.ticks, args.batch, gc_policy=not args.no_gc_policy, batch_ticks=args.batch_ticks
    )
    readings = args.ticks * 25_000
    total = sum(st.cpu.values())
    print(f"{'stage':32s} {'CPU ms/tick':>11s} {'share':>6s} {'wall ms/tick':>12s}")
    for name in sorted(st.cpu, key=lambda s: int(s.split()[0])):
        cpu, wall = st.cpu[name], st.wall[name]
        print(
            f"{name:32s} {cpu / args.ticks * 1000:11.1f} {cpu / total:6.1%} "
            f"{wall / args.ticks * 1000:12.1f}"
        )
    print(
        f"{'total':32s} {total / args.ticks * 1000:11.1f}        "
        f"-> {readings / total:,.0f} readings per CPU-second, "
        f"{total / readings * 1e6:.2f} us CPU per reading"
    )
    print(
        f"gc ({'policy' if not args.no_gc_policy else 'defaults'}): {timer.collections} "
        f"collections, {timer.cpu_s / args.ticks * 1000:.1f} ms/tick (inside the stages)"
    )


if __name__ == "__main__":
    main()
