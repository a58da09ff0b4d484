"""The MQTT session's edges: the client TLS context, and a failed connect put in words
(a CONNACK refusal with a hint, a timeout, a TLS handshake the broker or the client
rejected) with the sockets paho leaves open closed."""

from __future__ import annotations

import socket
import ssl

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from millrace.pipeline.errors import ConnectorError

from .config import MqttTls

# CONNACK reason codes (MQTT 5 numbering; paho maps 3.1.1 return codes onto them)
_REFUSAL_HINTS = {
    133: " (client_id rejected)",
    134: " (check username and password)",
    135: " (check username and password, and the broker's access rules)",
    136: " (broker unavailable)",
}


def tls_context(tls: MqttTls) -> ssl.SSLContext:
    """The client TLS context of ``tls`` (ConnectorError naming the file that fails)."""
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectorError(f"TLS: cannot load ca_file {tls.ca_file}: {_os_text(exc)}") from exc
    if tls.cert_file:
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectorError(
                f"TLS: cannot load cert_file/key_file {tls.cert_file}: {_os_text(exc)}"
            ) from exc
    ctx.check_hostname = not tls.insecure
    return ctx


def refusal(exc: MqttConnectError) -> str:
    rc = exc.rc
    value = rc.value if isinstance(rc, ReasonCode) else rc
    reason = str(rc) if isinstance(rc, ReasonCode) else str(exc)
    hint = _REFUSAL_HINTS.get(value, "") if isinstance(value, int) else ""
    return f"{reason}: the broker refused the connection{hint}"


def connect_failure(exc: aiomqtt.MqttError, timeout_s: float) -> Exception:
    """A clear error for a failed connect: aiomqtt hides the socket error (raised
    ``from None``) but keeps it as the context."""
    ctx = exc.__context__
    if str(exc) == "Operation timed out":
        return ConnectorError(f"no answer from the broker within {timeout_s:g} s (CONNACK)")
    if isinstance(ctx, OSError):
        _close_sockets_of(ctx)
    if isinstance(ctx, ssl.SSLCertVerificationError):
        return ConnectorError(f"TLS: broker certificate not accepted: {ctx.verify_message}")
    if isinstance(ctx, ssl.SSLError):
        return ConnectorError(f"TLS handshake failed: {ctx.reason or ctx}")
    if isinstance(ctx, ConnectionError) and _in_tls_handshake(ctx):
        return ConnectorError(
            f"TLS handshake failed: {_os_text(ctx).lower()} (is the port a TLS listener?)"
        )
    if isinstance(ctx, OSError):
        return ctx  # ConnectionRefusedError, socket.gaierror...: worded by the base
    return ConnectorError(f"MQTT connect failed: {exc}")


def _in_tls_handshake(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "do_handshake":
            return True
        tb = tb.tb_next
    return False


def _close_sockets_of(exc: BaseException) -> None:
    """Close the sockets held by the frames ``exc`` went through.

    paho does not close its socket when the TLS handshake fails: the SSLSocket is then
    only referenced by the failed frame, and would leak until collected."""
    tb = exc.__traceback__
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, socket.socket):
                value.close()
        tb = tb.tb_next


def _os_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
