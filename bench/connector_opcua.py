"""OPC UA data changes per second through the connector into the event log.

An asyncua Server in a child process changes ``--variables`` Double variables as fast
as it can (each write a new value with a new source timestamp); the parent runs an
:class:`~millrace.connectors.opcua.connector.OpcuaConnector` monitoring all of them (one
subscription, ``--interval-ms`` publishing/sampling interval, a queue per monitored
item so that no change is lost between publishes) and publishing TelemetryBatch
events through :class:`~millrace.pipeline.publisher.LogPublisher` (Avro) into a
``LocalEventLog`` (``fsync=batch``, the embedded default; ``--log memory`` for the
in-memory log). The figure counts readings emitted by the connector during the measured
window after a warm-up; the server's own write rate and both processes' CPU are
printed beside it, since on a small machine either side can be the limit (on two
cores it is the Python server), and ``opcua_changes_per_connector_cpu_s`` gives the
connector's own cost. Figures, not pass/fail::

    python -m bench.connector_opcua [--seconds 10] [--variables 200] [--log local|memory]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import socket
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.machine import describe

NS_URI = "urn:millrace:bench"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _serve(port: int, variables: int, pipe: Connection) -> None:
    import logging

    from asyncua import Server, ua

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NS_URI)
    plant = await server.nodes.objects.add_object(
        ua.NodeId(ua.String("Plant"), ua.Int16(idx)), "Plant"
    )
    ids = []
    for i in range(variables):
        node_id = ua.NodeId(ua.String(f"V{i}"), ua.Int16(idx))
        await plant.add_variable(node_id, f"V{i}", 0.0, ua.VariantType.Double)
        ids.append(node_id)
    await server.start()
    pipe.send("ready")
    writes = 0
    start = time.perf_counter()
    t_us = time.time_ns() // 1000
    while not pipe.poll():
        t_us += 1
        ts: Any = EPOCH + timedelta(microseconds=t_us)
        for k, node_id in enumerate(ids):
            dv = ua.DataValue(
                ua.Variant(float(writes + k), ua.VariantType.Double), SourceTimestamp=ts
            )
            await server.write_attribute_value(node_id, dv)
        writes += len(ids)
        await asyncio.sleep(0)  # let the publish loop and the session run
    elapsed = time.perf_counter() - start
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    pipe.send((writes, elapsed, cpu.ru_utime + cpu.ru_stime))
    await server.stop()


def _server_main(port: int, variables: int, pipe: Connection) -> None:
    asyncio.run(_serve(port, variables, pipe))


async def _measure(
    port: int, variables: int, interval_ms: int, seconds: float, log: Any
) -> dict[str, float]:
    import logging

    from millrace.connectors.opcua.config import OpcuaConnection, OpcuaEndpoint
    from millrace.connectors.opcua.connector import OpcuaConnector
    from millrace.pipeline.publisher import LogPublisher

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    conn = OpcuaConnection(
        protocol="opcua",
        url=f"opc.tcp://127.0.0.1:{port}/bench",
        queue_size=10_000,
        batch_ms=200,
        watchdog_interval_ms=5000,
    )
    endpoints = [
        OpcuaEndpoint(
            connection="bench",
            identity=f"dev-{i // 10}",
            signal=f"s{i % 10}",
            node_id=f"nsu={NS_URI};s=V{i}",
            interval_ms=interval_ms,
        )
        for i in range(variables)
    ]
    publisher = LogPublisher(log)
    c = OpcuaConnector("bench", conn, endpoints, status_interval_s=3600)
    await c.start(publisher)
    await c.wait_connected(timeout_s=30)
    await asyncio.sleep(min(2.0, seconds / 4))  # warm-up
    n0, t0 = c.counters["readings"], time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(seconds)
    n1, t1 = c.counters["readings"], time.perf_counter()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    await c.stop()
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {
        "changes_per_s": (n1 - n0) / (t1 - t0),
        "connector_cpu_cores": cpu / (t1 - t0),
        "events_in_log": float(publisher.published),
        "duplicates_dropped": c.counters["duplicates_dropped"],
        "errors": c.counters["errors"],
    }


def run(
    seconds: float,
    variables: int,
    interval_ms: int,
    workdir: Path | None = None,
    log_kind: str = "local",
) -> dict[str, tuple[float, str]]:
    from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig
    from millrace.pipeline.log.memory import MemoryEventLog

    port = _free_port()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_server_main, args=(port, variables, child), daemon=True)
    proc.start()
    try:
        if not parent.poll(60) or parent.recv() != "ready":
            raise RuntimeError("the OPC UA server did not start")
        with tempfile.TemporaryDirectory(dir=workdir, prefix="opcua_bench-") as tmp:
            log: Any = (
                LocalEventLog(Path(tmp) / "log", LocalLogConfig(partitions=4))
                if log_kind == "local"
                else MemoryEventLog()
            )
            try:
                result = asyncio.run(_measure(port, variables, interval_ms, seconds, log))
            finally:
                if isinstance(log, LocalEventLog):
                    log.close_sync()
        parent.send("stop")
        writes, elapsed, server_cpu = parent.recv() if parent.poll(30) else (0, 1.0, 0.0)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return {
        "opcua_data_changes_per_s": (result["changes_per_s"], "changes/s"),
        "opcua_server_writes_per_s": (writes / elapsed, "writes/s"),
        "opcua_connector_cpu_cores": (result["connector_cpu_cores"], "cores"),
        # the connector's own cost, whichever side limits the rate above
        "opcua_changes_per_connector_cpu_s": (
            result["changes_per_s"] / max(result["connector_cpu_cores"], 1e-9),
            "changes/CPU-s",
        ),
        "opcua_server_cpu_cores": (server_cpu / elapsed, "cores"),
        "opcua_errors": (result["errors"], "errors"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--variables", type=int, default=200)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--log", choices=("local", "memory"), default="local")
    args = parser.parse_args()
    machine = describe()
    load = os.getloadavg()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram']}, "
        f"Python {machine['python']}, {machine['date']}; load average before "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    for name, (value, unit) in run(
        args.seconds, args.variables, args.interval_ms, log_kind=args.log
    ).items():
        print(f"{name}: {value:.2f} {unit}" if value < 10 else f"{name}: {value:.0f} {unit}")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
