"""Decode once (issue 18 item 2): CPU per reading of ``millrace run``'s three telemetry
readers, with and without the runtime's decoded feed.

The runtime (chDB projections on a fresh directory), the alarm runner with one limit
rule on one of the 25 signals of every device (so it judges telemetry) and the
live-stream tail with a subscriber to ``latest`` follow the same in-memory log of
TelemetryBatches (1000 devices x 25 signals per tick). ``decode_once_fed`` lets the
alarm runner and the tail take the runtime's decoded events (``pipeline.runtime.feed``);
``decode_once_unfed`` has each of them read and decode the log itself (as before the
feed, and as ``millrace process`` / ``millrace api`` still do). Each case runs in a
fresh child process; figures are CPU seconds of that process (chDB's threads
included) per reading, the wall-clock rate, and how many records the codec decoded
per record on the log::

    python -m bench.decode_once [--ticks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.alarm_bench import DEVICES, SIGNALS, T0, _batches

Figures = dict[str, tuple[float, str]]


class _CountingHub:
    """A live-stream subscriber to ``latest`` (counts the items)."""

    def __init__(self) -> None:
        self.items = 0

    def wants(self, kind: str) -> bool:
        return kind == "latest"

    def publish(self, kind: str, data: dict[str, Any]) -> int | None:
        self.items += 1
        return self.items


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


async def _case(fed: bool, ticks: int, workdir: Path) -> dict[str, float]:
    from millrace.api.stream_tail import LogTail
    from millrace.pipeline.alarms.evaluator import Evaluator
    from millrace.pipeline.alarms.rules import parse_rule, rule_event
    from millrace.pipeline.alarms.runner import AlarmRunner, MemoryCheckpoints
    from millrace.pipeline.codec import AvroCodec, default_codec
    from millrace.pipeline.log.base import Message
    from millrace.pipeline.log.memory import MemoryEventLog
    from millrace.pipeline.processors.catalog import processors
    from millrace.pipeline.publisher import LogPublisher
    from millrace.pipeline.runtime.embedded import EmbeddedRuntime
    from millrace.pipeline.topics import ALARMS, TELEMETRY
    from millrace.projections.migrations import migrate
    from millrace.projections.store.chdb import ChdbStore
    from millrace.projections.writer import ProjectionWriter

    decoded = [0]

    class Counting(AvroCodec):
        def decode(self, topic: str, data: bytes, schema_lookup: Any = None) -> dict[str, Any]:
            if topic == TELEMETRY:
                decoded[0] += 1
            return super().decode(topic, data, schema_lookup)

    codec = Counting.load()
    records = _batches(ticks)
    log = MemoryEventLog()
    rule = parse_rule({"id": "r0", "kind": "limit", "signal": "s0", "high": 85, "deadband": 2})
    enc = default_codec()
    await log.append(
        ALARMS, [Message(enc.encode(ALARMS, rule_event(rule, "r0", T0 - 1, "bench")), b"rule")]
    )
    store = ChdbStore(workdir / "chdb")
    migrate(store)
    runtime = EmbeddedRuntime(log, ProjectionWriter(store), processors(), codec=codec)
    feed = runtime.feed if fed else None
    hub = _CountingHub()
    tail = LogTail(log, codec, hub, max_records=5000, feed=feed)
    await tail.start()
    runner = AlarmRunner(
        log, LogPublisher(log, codec), MemoryCheckpoints(), codec, Evaluator, feed=feed
    )
    for i in range(0, len(records), 1000):
        await log.append(TELEMETRY, [Message(v, key=k) for k, v in records[i : i + 1000]])
    cpu, wall = _cpu_s(), time.perf_counter()
    while True:
        n = await runtime.step()
        n += await runner.step(now_us=T0)
        n += await tail.step()
        if n == 0:
            break
    cpu, wall = _cpu_s() - cpu, time.perf_counter() - wall
    runtime.close()
    store.close()
    readings = len(records) * SIGNALS
    return {
        "cpu_us": cpu / readings * 1e6,
        "rate": readings / wall,
        "decodes": decoded[0] / len(records),
        "latest_items": hub.items / readings,
    }


def _child(fed: bool, ticks: int, out: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="millrace-decode-once-") as tmp:
        out.send(asyncio.run(_case(fed, ticks, Path(tmp))))


def run(ticks: int = 20) -> Figures:
    figs: Figures = {}
    ctx = mp.get_context("spawn")
    for name, fed in (("fed", True), ("unfed", False)):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(fed, ticks, child))
        proc.start()
        got = parent.recv()
        proc.join()
        figs[f"decode_once_{name}_cpu_us_per_reading"] = (got["cpu_us"], "µs")
        figs[f"decode_once_{name}_readings_per_s"] = (got["rate"], "readings/s")
        figs[f"decode_once_{name}_decodes_per_record"] = (got["decodes"], "decodes")
    figs["decode_once_readings"] = (float(ticks * DEVICES * SIGNALS), "readings")
    return figs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ticks", type=int, default=20)
    args = p.parse_args()
    print(json.dumps(run(args.ticks), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
