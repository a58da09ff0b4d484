"""Replay while running: rebuild every projection from the log while the producer
appends, the live runtime folds and the API answers.

Set-up, through the pipeline: ``ticks`` simulator ticks of ``devices`` x ``signals``
folded into chDB. Then, with uvicorn serving ``create_app`` on the engine's loop and the
runtime running, the process producer appends at ``load_rate`` readings/s while a
:class:`Replay` of all projections runs (its own chDB session, as ``millrace run``
gives it); a client process (``python -m bench.replay_bench --client``) sends sequential
``GET /signals/latest?limit=1000`` and 1000 raw readings of one signal until the replay
ends. Figures: records and readings the replay rebuilt per second of its wall time, how
long the live fold was held for the swap, what the live runtime folded meanwhile, and
the API's p50/p99 during the replay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.api import API_KEY, _free_port, live
from bench.e2e import Figures, Pipeline, append_from_child
from bench.latency import percentile
from millrace.api.app import create_app
from millrace.api.auth import KeyStore
from millrace.api.context import AppContext
from millrace.pipeline.log.base import TopicPartition
from millrace.projections.replay import Replay, ReplayParts
from millrace.projections.store.chdb import ChdbStore


def paths(identity: str, signal: str) -> dict[str, str]:
    return {
        "latest_1000": "/api/v1/signals/latest?limit=1000",
        "raw_1000": f"/api/v1/identities/{identity}/signals/{signal}?limit=1000",
    }


class HeldFor:
    """Wraps the runtime's ``paused`` to time how long the live fold is held."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.ms = 0.0
        runtime = pipeline.runtime
        original = runtime.paused

        @contextlib.asynccontextmanager
        async def paused() -> AsyncIterator[dict[TopicPartition, int]]:
            t = time.perf_counter()
            async with original() as positions:
                yield positions
            self.ms += (time.perf_counter() - t) * 1000

        runtime.paused = paused  # type: ignore[method-assign]


async def _replay_under_load(
    pipeline: Pipeline, base: Path, load_rate: float, devices: int, signals: int
) -> tuple[Figures, dict[str, Any]]:
    import uvicorn

    reader = ChdbStore(base / "data" / "chdb")
    side = ChdbStore(base / "data" / "chdb")
    ctx = AppContext(
        store=reader,
        publisher=pipeline.publisher,
        keys=KeyStore(None, env_key=API_KEY),
        on_ingest=pipeline.runtime.wake,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    stop = asyncio.Event()
    runtime_task = asyncio.create_task(pipeline.runtime.run(stop))
    api_task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    done = asyncio.Event()
    producer = asyncio.create_task(
        append_from_child(
            pipeline, 3600.0, devices, signals, 40_000, devices * signals / load_rate, until=done
        )
    )
    flag = base / "replay.done"
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.replay_bench",
        "--client",
        f"http://127.0.0.1:{port}",
        "--until",
        str(flag),
        "--paths",
        json.dumps(paths("sim-0", "temperature_0")),
        stdout=asyncio.subprocess.PIPE,
    )
    held = HeldFor(pipeline)
    await asyncio.sleep(2.0)  # the producer, the runtime and the client steady
    live_before = pipeline.runtime.stats.records
    t = time.perf_counter()
    replay = Replay(ReplayParts(pipeline.log, side, pipeline.runtime, pipeline.codec), "bench")

    async def quiet(counts: dict[str, int]) -> None:
        pass

    counts = await replay.run(quiet, asyncio.Event()) or {}
    took = time.perf_counter() - t
    live_done = pipeline.runtime.stats.records - live_before
    flag.touch()
    out, _ = await client.communicate()
    done.set()
    await producer
    server.should_exit = True
    await api_task
    stop.set()
    pipeline.runtime.wake()
    await runtime_task
    reader.close()
    side.close()
    figs: Figures = {
        "replay_s": (took, "s"),
        "replay_records_per_s": (counts.get("records", 0) / took, "records/s"),
        "replay_readings_per_s": (counts.get("readings", 0) / took, "readings/s"),
        "replay_live_hold_ms": (held.ms, "ms"),
        "replay_live_readings_per_s": (live_done * signals / took, "readings/s"),
    }
    return figs, json.loads(out) if client.returncode == 0 else {}


def measure(
    *,
    ticks: int = 40,
    devices: int = 1000,
    signals: int = 25,
    load_rate: float = 20_000.0,
    workdir: Path | None = None,
) -> Figures:
    base = Path(tempfile.mkdtemp(prefix="millrace-replay-", dir=workdir))
    try:
        pipeline = Pipeline(base / "data")
        pipeline.open()
        now_us = time.time_ns() // 1000
        asyncio.run(live(pipeline, devices, signals, ticks, now_us))
        figs, api = asyncio.run(_replay_under_load(pipeline, base, load_rate, devices, signals))
        figs["replay_log_readings"] = (float(pipeline.readings()), "readings")
        asyncio.run(pipeline.close())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for name, r in api.items():
        figs[f"replay_api_{name}_p50_ms"] = (r["p50_ms"], "ms")
        figs[f"replay_api_{name}_p99_ms"] = (r["p99_ms"], "ms")
        figs[f"replay_api_{name}_requests"] = (float(r["requests"]), "requests")
        figs[f"replay_api_{name}_errors"] = (float(r["errors"]), "errors")
    return figs


def client(url: str, until: Path, named: dict[str, str]) -> dict[str, Any]:
    """Sequential GETs, endpoint after endpoint, until ``until`` exists."""
    import httpx

    times: dict[str, list[float]] = {name: [] for name in named}
    errors = dict.fromkeys(named, 0)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        while not until.exists():
            for name, path in named.items():
                t = time.perf_counter()
                res = http.get(path, timeout=30)
                times[name].append((time.perf_counter() - t) * 1000)
                errors[name] += res.status_code != 200
    return {
        name: {
            "p50_ms": percentile(v, 50) if v else float("nan"),
            "p99_ms": percentile(v, 99) if v else float("nan"),
            "requests": len(v),
            "errors": errors[name],
        }
        for name, v in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="replay-while-running bench")
    parser.add_argument("--client", metavar="URL")
    parser.add_argument("--until", type=Path)
    parser.add_argument("--paths", default="{}")
    parser.add_argument("--ticks", type=int, default=8)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(client(args.client, args.until, json.loads(args.paths))))
        return
    for name, (value, unit) in measure(ticks=args.ticks).items():
        print(f"{name}: {value:.3f} {unit}")


if __name__ == "__main__":
    main()
