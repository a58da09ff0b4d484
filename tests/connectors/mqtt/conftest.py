"""A real Mosquitto broker for the MQTT connector tests.

``mosquitto`` (session scope) runs one broker with four listeners on free 127.0.0.1
ports: anonymous, username/password (a mosquitto_passwd file), TLS with a CA and
server certificate generated here, and TLS requiring a client certificate.
``fresh_broker`` starts a broker of its own for a test that kills and restarts it.

A missing mosquitto binary fails the tests that need it (it is a test dependency:
``apt-get install -y mosquitto``), it does not skip them.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USERNAME = "plant-reader"
PASSWORD = "correct horse battery"
#: the server certificate names this host only, so that 127.0.0.1 is a mismatch
TLS_HOST = "localhost"


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/usr/bin") if os.access(p := f"{d}/{name}", os.X_OK)), None
    )
    if found is None:
        pytest.fail(
            f"{name} not found (looked in PATH, /usr/sbin, /usr/bin): the MQTT tests need a "
            "Mosquitto broker; install it with `apt-get install -y mosquitto`",
            pytrace=False,
        )
    return found


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certs(directory: Path) -> Certs:
    """A CA, a server certificate for ``localhost`` and a client certificate."""
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("millrace test CA"))
        .issuer_name(name("millrace test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, san: list[x509.GeneralName] | None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf(TLS_HOST, [x509.DNSName(TLS_HOST)])
    client, client_key = leaf("millrace-connector", None)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "client.pem").write_bytes(client.public_bytes(pem))
    return Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=write_key(server_key, directory / "server.key"),
        client_cert=directory / "client.pem",
        client_key=write_key(client_key, directory / "client.key"),
    )


@dataclass
class Broker:
    """A mosquitto process and its listeners; :meth:`kill` and :meth:`start` again keep
    the ports (a restart as a client sees it)."""

    directory: Path
    tls: bool = True
    port: int = 0
    auth_port: int = 0
    tls_port: int = 0
    mtls_port: int = 0
    certs: Certs | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    def _config(self) -> str:
        lines = [
            "per_listener_settings true",
            "persistence false",
            f"log_dest file {self.log_file}",
            "log_type all",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', who cannot read tmp
        lines += [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        if self.tls:
            assert self.certs is not None
            c = self.certs
            lines += [
                f"listener {self.auth_port} 127.0.0.1",
                "allow_anonymous false",
                f"password_file {self.directory / 'passwd'}",
                f"listener {self.tls_port} 127.0.0.1",
                "allow_anonymous true",
                f"cafile {c.ca}",
                f"certfile {c.server_cert}",
                f"keyfile {c.server_key}",
                f"listener {self.mtls_port} 127.0.0.1",
                "allow_anonymous true",
                f"cafile {c.ca}",
                f"certfile {c.server_cert}",
                f"keyfile {c.server_key}",
                "require_certificate true",
            ]
        return "\n".join(lines) + "\n"

    def ports(self) -> list[int]:
        return (
            [self.port, self.auth_port, self.tls_port, self.mtls_port] if self.tls else [self.port]
        )

    def setup(self) -> Broker:
        binary = _binary("mosquitto")
        if self.tls:
            subprocess.run(
                [
                    _binary("mosquitto_passwd"),
                    "-b",
                    "-c",
                    str(self.directory / "passwd"),
                    USERNAME,
                    PASSWORD,
                ],
                check=True,
                capture_output=True,
            )
            self.certs = make_certs(self.directory)
        for _attempt in range(5):
            self.port, self.auth_port, self.tls_port, self.mtls_port = free_ports(4)
            if self._launch(binary):
                return self
        raise RuntimeError(f"mosquitto did not start:\n{self.log_tail()}")

    def start(self) -> None:
        """Start again on the same ports (after :meth:`kill`)."""
        deadline = time.monotonic() + 10
        while not self._launch(_binary("mosquitto")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not restart:\n{self.log_tail()}")
            time.sleep(0.1)

    def _launch(self, binary: str) -> bool:
        conf = self.directory / "mosquitto.conf"
        conf.write_text(self._config())
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        pending = set(self.ports())
        while pending:
            if self.proc.poll() is not None:  # e.g. a port taken in the meantime
                self.proc = None
                return False
            for port in list(pending):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not open its ports:\n{self.log_tail()}")
            time.sleep(0.02)
        return True

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing its sessions."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("mosquitto")).setup()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[Broker]:
    """A plain broker of this test's own (it may be killed and restarted)."""
    broker = Broker(tmp_path, tls=False).setup()
    try:
        yield broker
    finally:
        broker.stop()
