"""Modbus connector throughput: registers/s polled, decoded and appended to the log.

A pymodbus TCP server (its own process, so that it does not share the connector's GIL)
holds 2000 holding registers; the :class:`ModbusConnector` polls 1000 uint16 and 500
float32 (word-swapped) endpoints of 10 identities as fast as it can (``interval_ms=1``:
every round overruns, so the loop polls back to back), coalesced into 17 requests of at
most 125 registers (a float32 is never split across two requests, so those hold 124),
and publishes TelemetryBatch events through ``LogPublisher`` into a ``LocalEventLog``
(``fsync=batch``, the embedded default) or the in-memory log. At the end the telemetry
in the log is decoded and counted: it must hold every reading the connector emitted.
Figures, not pass/fail::

    python -m bench.connector_modbus [--seconds 10] [--log local|memory] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from millrace.connectors.modbus import ModbusConnection, ModbusEndpoint
from millrace.connectors.modbus.connector import ModbusConnector
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.telemetry_columns import count
from millrace.pipeline.topics import TELEMETRY

REGISTERS = 2000
U16 = 1000  # uint16 endpoints at 0..999
F32 = 500  # float32 endpoints at 1000..1999
IDENTITIES = 10


def _serve() -> None:
    """Child process: the pymodbus server; prints its port, runs until stdin closes."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    async def main() -> None:
        values = [i % 65536 for i in range(REGISTERS)]
        device = SimDevice(
            0,
            simdata=(
                [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                [SimData(0, values=values, datatype=DataType.REGISTERS)],
                [SimData(0, values=[0] * 16, datatype=DataType.REGISTERS)],
            ),
        )
        server = ModbusTcpServer(device, address=("127.0.0.1", 0))
        await server.serve_forever(background=True)
        port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.shutdown()

    asyncio.run(main())


def _endpoints() -> list[ModbusEndpoint]:
    eps = [
        ModbusEndpoint(
            connection="bench",
            identity=f"meter-{i % IDENTITIES}",
            signal=f"u{i}",
            register="holding",
            address=i,
            interval_ms=1,
        )
        for i in range(U16)
    ]
    eps += [
        ModbusEndpoint(
            connection="bench",
            identity=f"meter-{i % IDENTITIES}",
            signal=f"f{i}",
            register="holding",
            address=U16 + 2 * i,
            data_type="float32",
            word_order="little",
            interval_ms=1,
        )
        for i in range(F32)
    ]
    return eps


async def _count_readings(log: EventLog) -> int:
    """Readings in the telemetry topic of ``log``, decoded from Avro."""
    codec = default_codec()
    total = 0
    for p in range(log.partitions(TELEMETRY)):
        offset, end = await log.offsets(TELEMETRY, p)
        while offset < end:
            records = await log.read(TELEMETRY, p, offset, 1000)
            for r in records:
                event = codec.decode(TELEMETRY, r.value)
                total += count(event)
            offset = records[-1].offset + 1
    return total


async def _measure(port: int, seconds: float, log: EventLog) -> dict[str, tuple[float, str]]:
    conn = ModbusConnection(protocol="modbus", host="127.0.0.1", port=port)
    endpoints = _endpoints()
    connector = ModbusConnector("bench", conn, endpoints, status_interval_s=3600)
    publisher = LogPublisher(log)
    registers_per_round = U16 + 2 * F32
    await connector.start(publisher)
    await connector.wait_connected()
    await asyncio.sleep(0.5)  # warm up: first rounds, topic creation
    r0, q0 = connector.counters["readings"], connector.counters["requests"]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    r1, q1 = connector.counters["readings"], connector.counters["requests"]
    await connector.stop()
    readings = (r1 - r0) / elapsed
    in_log = await _count_readings(log)
    missing = connector.counters["readings"] - in_log
    return {
        "modbus_registers_per_s": (readings * registers_per_round / len(endpoints), "registers/s"),
        "modbus_readings_per_s": (readings, "readings/s"),
        "modbus_requests_per_s": ((q1 - q0) / elapsed, "requests/s"),
        "modbus_connector_cpu_cores": (cpu / elapsed, "cores"),
        "modbus_connector_cpu_us_per_register": (
            cpu / elapsed / (readings * registers_per_round / len(endpoints)) * 1e6,
            "us",
        ),
        "modbus_readings_missing_from_log": (missing, "readings"),
        "modbus_log_batches": (float(publisher.published), "events"),
    }


def run(seconds: float, workdir: Path, log_kind: str = "local") -> dict[str, tuple[float, str]]:
    # the server's log (pymodbus dumps its last frames when the connector hangs up
    # mid-request at the end) is shown only if it does not start
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.connector_modbus", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdin is not None
            line = server.stdout.readline()
            if not line.strip().isdigit():
                server.wait(timeout=10)
                errors.seek(0)
                raise RuntimeError(f"the Modbus server did not start:\n{errors.read()}")
            figures = _run_against(int(line), seconds, workdir, log_kind)
            server.stdin.close()
            server.wait(timeout=10)
            lifetime = time.perf_counter() - started
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            if server.stdout is not None:
                server.stdout.close()
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the whole life of the server process (start-up and warm-up included)
    figures["modbus_server_cpu_cores"] = ((child.ru_utime + child.ru_stime) / lifetime, "cores")
    return figures


def _run_against(
    port: int, seconds: float, workdir: Path, log_kind: str
) -> dict[str, tuple[float, str]]:
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="modbus_bench-") as tmp:
        log: EventLog
        if log_kind == "local":
            log = LocalEventLog(Path(tmp) / "log", LocalLogConfig(partitions=4))
        else:
            log = MemoryEventLog()
        try:
            return asyncio.run(_measure(port, seconds, log))
        finally:
            if isinstance(log, LocalEventLog):
                log.close_sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--log", choices=("local", "memory"), default="local")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve()
        return
    print(f"# {os.cpu_count()} cores; server in a child process", file=sys.stderr)
    for name, (value, unit) in run(args.seconds, args.workdir, args.log).items():
        print(f"{name}: {value:.2f} {unit}")


if __name__ == "__main__":
    main()
