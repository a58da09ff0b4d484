"""An asyncua Client set up from an :class:`OpcuaConnection`, and user-facing reasons
for the ways connecting fails (shared by the connector and :mod:`.browse`)."""

from __future__ import annotations

import asyncio
import errno
import socket
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509

from millrace.pipeline.errors import ConnectorError

from .config import OpcuaConnection, parse_url
from .values import status_name

_LOGIN_CODES = {
    "BadUserAccessDenied",
    "BadIdentityTokenInvalid",
    "BadIdentityTokenRejected",
    "BadUserSignatureInvalid",
}
_SECURITY_CODES = {
    "BadSecurityChecksFailed",
    "BadSecurityPolicyRejected",
    "BadSecurityModeRejected",
    "BadCertificateInvalid",
    "BadCertificateUntrusted",
    "BadCertificateTimeInvalid",
    "BadCertificateRevoked",
    "BadCertificateUriInvalid",
    "BadCertificateUseNotAllowed",
    "BadCertificateHostNameInvalid",
    "BadApplicationSignatureInvalid",
}


async def make_client(conn: OpcuaConnection) -> Client:
    """A Client for ``conn`` (not connected). With security, the certificates are
    loaded here and, unless ``server_certificate`` pins it, the server's certificate
    is fetched from its endpoint list, so this already talks to the server."""
    client = Client(
        conn.endpoint_url(),
        timeout=conn.timeout_ms / 1000,
        watchdog_intervall=conn.watchdog_interval_ms / 1000,
        auto_reconnect=False,  # the connector's supervisor reconnects (with status)
    )
    client.name = client.description = conn.session_name
    client.session_timeout = conn.session_timeout_ms
    if conn.username:
        client.set_user(conn.username)
        if conn.password is not None:
            client.set_password(conn.password)
    if conn.application_uri:
        client.application_uri = conn.application_uri
    if conn.security_mode != "None" or conn.security_policy != "None":
        await _set_security(client, conn)
    return client


async def _set_security(client: Client, conn: OpcuaConnection) -> None:
    if conn.security_mode == "None" or conn.security_policy == "None":
        raise ConnectorError(
            f"security_policy {conn.security_policy} with security_mode {conn.security_mode} "
            "is not a valid combination"
        )
    if not conn.certificate or not conn.private_key:
        raise ConnectorError(
            f"security_mode {conn.security_mode} needs certificate and private_key"
        )
    for what, path in (
        ("client certificate", conn.certificate),
        ("private key", conn.private_key),
        ("server certificate", conn.server_certificate),
    ):
        if path is not None and not Path(path).is_file():
            raise ConnectorError(f"{what} file not found: {path}")
    try:
        cert = await uacrypto.load_certificate(conn.certificate)
    except ValueError as exc:
        raise ConnectorError(
            f"cannot read the client certificate {conn.certificate}: {exc}"
        ) from exc
    if not conn.application_uri:
        uri = certificate_uri(cert)
        if uri:
            client.application_uri = uri
    policy = getattr(security_policies, f"SecurityPolicy{conn.security_policy}")
    mode = getattr(ua.MessageSecurityMode, conn.security_mode)
    try:
        await client.set_security(
            policy,
            certificate=conn.certificate,
            private_key=conn.private_key,
            private_key_password=conn.private_key_password,
            server_certificate=conn.server_certificate,
            mode=mode,
        )
    except (ValueError, TypeError) as exc:  # cryptography: bad key file or password
        raise ConnectorError(f"cannot use the certificate or private key: {exc}") from exc


def certificate_uri(cert: x509.Certificate) -> str | None:
    """The application URI in a certificate's SubjectAltName (servers check that the
    client's application URI matches it)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def connect_error(exc: BaseException, conn: OpcuaConnection) -> ConnectorError:
    """A ConnectorError whose message tells an operator what to fix."""
    if isinstance(exc, ConnectorError):
        return exc
    try:
        host, port, _ = parse_url(conn.endpoint_url())
    except ValueError:
        host, port = "?", 0
    where = f"{host}:{port}"
    if isinstance(exc, ConnectionRefusedError):
        msg = f"Connection refused by {where} (is the OPC UA server running?)"
    elif isinstance(exc, socket.gaierror):
        msg = f"Host not found: {host}"
    elif isinstance(exc, TimeoutError | asyncio.TimeoutError):
        msg = f"Host not reachable: {where} did not answer within {conn.timeout_ms / 1000:g} s"
    elif isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        msg = f"Host not reachable: {where}"
    elif isinstance(exc, ua.UaStatusCodeError):
        name = status_name(exc.code)
        if name in _LOGIN_CODES:
            who = f"user {conn.username!r}" if conn.username else "anonymous login"
            msg = f"Login refused by the server ({name}) for {who}"
        elif name in _SECURITY_CODES:
            msg = (
                f"The server rejected the secure channel ({name}): check that it trusts the "
                "client certificate and supports the security policy and mode"
            )
        else:
            msg = f"The server refused the session: {name}"
    elif isinstance(exc, ua.UaError) and "No matching endpoints" in str(exc):
        msg = (
            f"The server offers no endpoint with security_policy {conn.security_policy} "
            f"and security_mode {conn.security_mode}"
        )
    elif isinstance(exc, ConnectionError | EOFError):
        msg = f"The server at {where} closed the connection ({exc or type(exc).__name__})"
    else:
        msg = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    err = ConnectorError(msg)
    err.__cause__ = exc
    return err


async def close_quietly(client: Client, timeout_s: float) -> None:
    """Close session, channel and socket; a dead peer must not hold this up."""
    try:
        await asyncio.wait_for(client.disconnect(), timeout_s)
    except Exception:
        client.disconnect_socket()
