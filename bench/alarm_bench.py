"""Alarm evaluation throughput: the AlarmRunner over a log of TelemetryBatches.

1000 devices x 25 signals per batch, already on an in-memory log (Avro encoded, as
the pipeline stores them). Three cases:

* ``alarms_idle``: no rule watches telemetry — the runner moves past readings without
  decoding them (what every ``millrace run`` without signal rules pays);
* ``alarms_one_rule``: one limit rule on one of the 25 signals of every device (the
  runner decodes every batch; the evaluator judges 1 reading in 25);
* ``alarms_all_signals``: 25 limit rules, one per signal (every reading judged).

Figures are readings per second of wall time through ``AlarmRunner.run_until_idle``
(decode + evaluate + append of the alarms it raises + checkpoints to memory)::

    python -m bench.alarm_bench [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

from millrace.pipeline.alarms.evaluator import Evaluator
from millrace.pipeline.alarms.rules import parse_rule, rule_event
from millrace.pipeline.alarms.runner import AlarmRunner, MemoryCheckpoints
from millrace.pipeline.codec import default_codec
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.events import sample, telemetry_batch
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.topics import ALARMS, TELEMETRY

DEVICES = 1000
SIGNALS = 25
T0 = 1_750_000_000_000_000


def _batches(ticks: int) -> list[tuple[bytes, bytes]]:
    codec = default_codec()
    rnd = random.Random(7)
    out = []
    for t in range(ticks):
        for d in range(DEVICES):
            values = {f"s{i}": 50.0 + rnd.random() * 40 for i in range(SIGNALS)}
            at = T0 + t * 1_000_000
            batch = telemetry_batch(
                f"dev-{d}", [sample(at, values)], received_us=at, source="bench"
            )
            out.append((f"dev-{d}".encode(), codec.encode(TELEMETRY, batch)))
    return out


async def _case(records: list[tuple[bytes, bytes]], rules: list[dict[str, Any]]) -> float:
    codec = default_codec()
    log = MemoryEventLog()
    for r in rules:
        rule = parse_rule(r)
        ev = rule_event(rule, rule.id, T0 - 1, "bench")
        await log.append(
            ALARMS, [Message(codec.encode(ALARMS, ev), key=b"rule:" + rule.id.encode())]
        )
    for i in range(0, len(records), 1000):
        await log.append(TELEMETRY, [Message(v, key=k) for k, v in records[i : i + 1000]])
    runner = AlarmRunner(
        log,
        _NullPublisher(),
        MemoryCheckpoints(),
        codec,
        Evaluator,
        checkpoint_every_s=1.0,
    )
    started = time.perf_counter()
    await runner.run_until_idle(now_us=T0)
    return len(records) * SIGNALS / (time.perf_counter() - started)


class _NullPublisher(EventPublisher):
    async def publish(self, topic: str, events: Any) -> None:
        return None


def run(seconds: float = 5.0) -> dict[str, tuple[float, str]]:
    ticks = max(2, int(seconds))
    records = _batches(ticks)
    limit = {"kind": "limit", "high": 85, "deadband": 2}
    cases = {
        "alarms_idle": [],
        "alarms_one_rule": [{"id": "r0", "signal": "s0", **limit}],
        "alarms_all_signals": [{"id": f"r{i}", "signal": f"s{i}", **limit} for i in range(SIGNALS)],
    }
    figs: dict[str, tuple[float, str]] = {}
    for name, rules in cases.items():
        figs[f"{name}_readings_per_s"] = (asyncio.run(_case(records, rules)), "readings/s")
    return figs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    print(json.dumps(run(args.seconds)))


if __name__ == "__main__":
    main()
