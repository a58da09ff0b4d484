"""librdkafka's mock Kafka cluster, run in a helper process for integration tests.

``MockKafkaCluster`` starts a child Python process that creates a
``confluent_kafka.Producer({"test.mock.num.brokers": 1})``: librdkafka then hosts an
in-process mock broker on a free loopback port.  The child prints the broker's
``host:port`` (from ``list_topics()``) and stays alive until its stdin is closed, so
any Kafka client (aiokafka, kafka-python) in the test process can connect to it::

    with MockKafkaCluster() as cluster:
        log = KafkaEventLog(KafkaLogConfig(bootstrap_servers=cluster.bootstrap))

Known limits of the mock cluster (librdkafka 2.x):

* topics are auto-created on first use (metadata request or produce) with
  **4 partitions** and replication factor 1; the partition count cannot be chosen;
* **CreateTopics is not implemented**, so ``pipeline.log.kafka.admin.ensure_topics``
  cannot run against it, and faust needs ``topic_allow_declare=False``;
* state lives in memory only: stopping the cluster loses every topic and offset.

It runs in a separate process because librdkafka's broker threads must not share the
test process (and its event loop) with the clients under test.
"""

from __future__ import annotations

import subprocess
import sys
from types import TracebackType

_CHILD = r"""
import sys
from confluent_kafka import Producer

producer = Producer({"test.mock.num.brokers": 1, "log_level": 0})
broker = next(iter(producer.list_topics(timeout=float(sys.argv[1])).brokers.values()))
print(f"{broker.host}:{broker.port}", flush=True)
sys.stdin.read()  # block until the parent closes our stdin
"""


class MockKafkaError(RuntimeError):
    """The mock cluster could not be started."""


class MockKafkaCluster:
    """A one-broker librdkafka mock cluster in a child process (a context manager)."""

    def __init__(self, start_timeout: float = 20.0) -> None:
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[str] | None = None
        self.bootstrap = ""

    def start(self) -> MockKafkaCluster:
        try:
            import confluent_kafka  # noqa: F401
        except ImportError as exc:
            raise MockKafkaError("confluent-kafka is not installed") from exc
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(self._start_timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        # readline blocks; the child either prints its address or exits (EOF)
        line = self._process.stdout.readline().strip()
        if not line:
            self.stop()
            raise MockKafkaError("the mock cluster exited before reporting its address")
        host, _, port = line.rpartition(":")
        host = "127.0.0.1" if host in ("localhost", "") else host
        self.bootstrap = f"{host}:{port}"
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        finally:
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> MockKafkaCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def leave_group(bootstrap: str, group: str, member_id: str) -> None:
    """Sends the LeaveGroup a member's own clean close would send, on its behalf: the
    coordinator drops a killed or frozen member at once instead of after its session
    timeout (the member itself learns it was dropped at its next heartbeat or commit)."""
    from aiokafka.client import AIOKafkaClient, ConnectionGroup
    from aiokafka.protocol.group import LeaveGroupRequest

    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        node = await client.coordinator_lookup(0, group)  # 0: a group coordinator
        response = await client.send(
            node, LeaveGroupRequest(group, member_id), group=ConnectionGroup.COORDINATION
        )
    finally:
        await client.close()
    if response.error_code:
        raise MockKafkaError(f"LeaveGroup of {member_id} in {group}: error {response.error_code}")
