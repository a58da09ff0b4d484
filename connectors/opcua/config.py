"""Configuration of OPC UA connections and endpoints, and their semantic checks.

Validation must not need asyncua (``millrace validate`` runs where the network
libraries may be missing, and importing asyncua costs a second), so node ids and
browse paths are parsed here by :func:`parse_node_ref`, a small parser of the
OPC UA text forms that the connector later hands to asyncua.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from millrace.connectors._common.models import (
    ConnectionBase,
    EndpointBase,
    MappingConfig,
    Violation,
)

SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]

DEFAULT_PORT = 4840
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+|[0-9A-Fa-f:]+)$")
_GUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
# one element of a browse path: an optional namespace index, then a name in which the
# reserved characters of the OPC UA relative path syntax are escaped with '&'
_PATH_ELEMENT = re.compile(r"/(?:(\d+):)?((?:[^/.<>:#!&]|&[/.<>:#!&])+)")


@dataclass(frozen=True)
class NodeRef:
    """A parsed ``node_id``: a node id (``kind="id"``) or a browse path (``"path"``).

    For ids, ``identifier`` keeps the text after ``i=``/``s=``/``g=``/``b=`` and either
    ``namespace`` (index) or ``namespace_uri`` is set. For paths, ``elements`` holds
    ``(namespace index, unescaped name)`` pairs below the Objects folder."""

    kind: Literal["id", "path"]
    namespace: int = 0
    namespace_uri: str | None = None
    id_type: Literal["i", "s", "g", "b"] = "i"
    identifier: str = ""
    elements: tuple[tuple[int, str], ...] = ()

    def node_id_text(self, namespace: int | None = None) -> str:
        """The id in asyncua's ``ns=..;x=..`` form (``namespace`` resolves an ``nsu=``)."""
        ns = self.namespace if namespace is None else namespace
        return f"ns={ns};{self.id_type}={self.identifier}"

    def relative_path(self) -> str:
        """The browse path in the OPC UA relative path syntax (``/2:Plant/2:Temp``)."""
        return "".join(f"/{ns}:{escape_name(name)}" for ns, name in self.elements)


def escape_name(name: str) -> str:
    return re.sub(r"([/.<>:#!&])", r"&\1", name)


def parse_node_ref(text: str) -> NodeRef:
    """Parse a node id (``ns=2;s=Press.Temp``, ``ns=2;i=1001``, ``i=2258``,
    ``ns=3;g=<guid>``, ``ns=1;b=<base64>``, ``nsu=<uri>;s=...``) or a browse path from
    the Objects folder (``/2:Plant/2:Press1/2:Temperature``; an element without a
    namespace index is in namespace 0). ValueError says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("node_id must not be empty")
    if text != text.strip():
        raise ValueError("node_id must not start or end with spaces")
    if text.startswith("/"):
        return _parse_path(text)
    namespace, namespace_uri, rest = 0, None, text
    if rest.startswith("ns="):
        head, sep, rest = rest[3:].partition(";")
        if not sep or not head.isdigit() or int(head) > 65535:
            raise ValueError(
                f"{text!r}: the namespace index after 'ns=' must be a number 0-65535 "
                "followed by ';'"
            )
        namespace = int(head)
    elif rest.startswith("nsu="):
        # the URI may itself contain ';' only if escaped; take up to the identifier
        m = re.match(r"nsu=(.+?);(?=[isgb]=)", rest)
        if m is None or not m.group(1):
            raise ValueError(
                f"{text!r}: 'nsu=<namespace uri>;' must be followed by i=, s=, g= or b="
            )
        namespace_uri, rest = m.group(1), rest[m.end() :]
    kind, sep, ident = rest.partition("=")
    if not sep or kind not in ("i", "s", "g", "b"):
        raise ValueError(
            f"{text!r} is neither a node id (ns=2;s=Name, ns=2;i=1001, i=2258, ns=2;g=<guid>, "
            "ns=2;b=<base64>) nor a browse path (/2:Plant/2:Temperature)"
        )
    if kind == "i":
        if not ident.isdigit() or int(ident) > 0xFFFFFFFF:
            raise ValueError(f"{text!r}: a numeric identifier (i=) must be 0-4294967295")
    elif kind == "s":
        if not ident:
            raise ValueError(f"{text!r}: the string identifier (s=) is empty")
    elif kind == "g":
        if not _GUID.match(ident):
            raise ValueError(f"{text!r}: a GUID identifier (g=) looks like 09087e75-8e5e-499b-...")
    else:
        try:
            if not ident:
                raise binascii.Error
            base64.b64decode(ident, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{text!r}: an opaque identifier (b=) must be base64") from None
    return NodeRef("id", namespace, namespace_uri, kind, ident)  # type: ignore[arg-type]


def _parse_path(text: str) -> NodeRef:
    elements: list[tuple[int, str]] = []
    pos = 0
    while pos < len(text):
        m = _PATH_ELEMENT.match(text, pos)
        if m is None:
            bad = text[pos:].split("/", 2)[1] if text[pos:].startswith("/") else text[pos:]
            raise ValueError(
                f"browse path {text!r}: element {bad!r} is not [<namespace index>:]<name> "
                "(escape / . < > : # ! & in names with '&')"
            )
        ns = int(m.group(1)) if m.group(1) is not None else 0
        if ns > 65535:
            raise ValueError(f"browse path {text!r}: namespace index {ns} is above 65535")
        elements.append((ns, re.sub(r"&(.)", r"\1", m.group(2))))
        pos = m.end()
    if not elements:
        raise ValueError("a browse path needs at least one element (/2:Plant)")
    return NodeRef("path", elements=tuple(elements))


def parse_url(url: str) -> tuple[str, int, str]:
    """``(host, port, path)`` of an ``opc.tcp://host[:port][/path]`` URL; ValueError."""
    if not url.startswith("opc.tcp://"):
        raise ValueError("must start with opc.tcp:// (e.g. opc.tcp://plc-1:4840)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials; use username and password")
    host = parts.hostname or ""
    if not host or not _HOST.match(host):
        raise ValueError("has no valid host name (opc.tcp://host:port/path)")
    if port == 0:
        raise ValueError("port must be 1-65535")
    if parts.query or parts.fragment or any(c.isspace() for c in url):
        raise ValueError("must not contain spaces, '?' or '#'")
    return host, port or DEFAULT_PORT, parts.path


class OpcuaConnection(ConnectionBase):
    """An OPC UA server session (``protocol: opcua``): where it is, how the channel is
    secured and who logs in. Subscriptions are derived from the endpoints."""

    protocol: Literal["opcua"]
    url: str | None = Field(
        None,
        description="Endpoint URL, opc.tcp://host[:port][/path] (port 4840 when omitted). "
        "Give either url or host.",
    )
    host: str | None = Field(None, description="Server host name or address (instead of url).")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="Server port, with host.")
    path: str = Field("", description="Endpoint path after host:port, with host (e.g. /server).")
    security_policy: SecurityPolicy = Field(
        "None", description="Security policy of the secure channel."
    )
    security_mode: SecurityMode = Field(
        "None", description="None, Sign (messages signed) or SignAndEncrypt."
    )
    certificate: str | None = Field(
        None,
        description="Client application instance certificate (.der or .pem); needed for "
        "Sign and SignAndEncrypt. Its SubjectAltName URI is the application URI.",
    )
    private_key: str | None = Field(None, description="Private key of the certificate (.pem/.der).")
    private_key_password: str | None = Field(
        None, description="Password of the private key, as a ${ENV} reference."
    )
    server_certificate: str | None = Field(
        None,
        description="The server's certificate, to pin it; without it the certificate the "
        "server announces in its endpoint list is used.",
    )
    application_uri: str | None = Field(
        None, description="Client application URI; default: the URI in the certificate."
    )
    username: str | None = Field(None, description="User name; anonymous login when unset.")
    password: str | None = Field(None, description="Password, as a ${ENV} reference.")
    timeout_ms: int = Field(4000, ge=100, le=600_000, description="Connect and request timeout.")
    session_timeout_ms: int = Field(
        60_000, ge=1000, le=86_400_000, description="Requested session timeout."
    )
    watchdog_interval_ms: int = Field(
        1000,
        ge=100,
        le=600_000,
        description="The session is probed this often; a probe that fails or gets no "
        "answer within this time ends the session (the connector reconnects).",
    )
    queue_size: int = Field(
        1,
        ge=1,
        le=100_000,
        description="Server-side queue of each monitored item: 1 = latest sample per "
        "publish; more keeps every sample taken between two publishes.",
    )
    session_name: str = Field(
        "millrace", min_length=1, max_length=128, description="Client name shown by the server."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None:
            parse_url(v)
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if v is not None and not _HOST.match(v):
            raise ValueError("must be a host name or IP address (no scheme, port or path)")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if v and (not v.startswith("/") or any(c.isspace() or c in "?#" for c in v)):
            raise ValueError("must start with '/' and contain no spaces, '?' or '#'")
        return v

    def endpoint_url(self) -> str:
        """The opc.tcp URL to connect to, with the port always spelled out."""
        if self.url is not None:
            host, port, path = parse_url(self.url)
        elif self.host is not None:
            host, port, path = self.host.strip("[]"), self.port, self.path
        else:
            raise ValueError("neither url nor host is set")
        return f"opc.tcp://{f'[{host}]' if ':' in host else host}:{port}{path}"


class OpcuaEndpoint(EndpointBase):
    """One OPC UA variable, monitored by a subscription: ``interval_ms`` is its
    sampling (and the subscription's publishing) interval and ``deadband`` an absolute
    deadband the server applies (a DataChangeFilter)."""

    node_id: str = Field(
        description="Node id (ns=2;s=Press1.Temperature, ns=2;i=1001, i=2258, nsu=<uri>;s=...) "
        "or a browse path from the Objects folder (/2:Plant/2:Press1/2:Temperature)."
    )

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, v: str) -> str:
        parse_node_ref(v)
        return v


def _path(*loc: int | str) -> str:
    from millrace.connectors.commissioning import (
        json_path,  # lazily: commissioning imports the registry
    )

    return json_path(loc)


def check(
    name: str,
    conn: Any,
    endpoints: Sequence[tuple[int, Any]],
    mappings: Sequence[tuple[int, MappingConfig]],
) -> list[Violation]:
    """What the models cannot see alone: url vs host, security mode vs policy vs
    certificates, login, writable endpoints and mappings that do not apply to OPC UA."""
    out: list[Violation] = []
    c: OpcuaConnection = conn
    base = ("connections", name)

    def err(desc: str, *loc: int | str, level: Literal["error", "warning"] = "error") -> None:
        out.append(Violation(level=level, json_path=_path(*loc), description=desc))

    if c.url is None and c.host is None:
        err("url or host is required (e.g. url: opc.tcp://plc-1:4840)", *base, "url")
    elif c.url is not None and c.host is not None:
        err("give either url or host, not both", *base, "host")
    if c.security_mode != "None" and c.security_policy == "None":
        err(
            f"security_mode {c.security_mode} needs a security_policy other than None "
            "(e.g. Basic256Sha256)",
            *base,
            "security_policy",
        )
    if c.security_policy != "None" and c.security_mode == "None":
        err(
            f"security_policy {c.security_policy} needs security_mode Sign or SignAndEncrypt",
            *base,
            "security_mode",
        )
    secured = c.security_mode != "None" or c.security_policy != "None"
    if secured:
        if not c.certificate:
            err(f"security_mode {c.security_mode} needs a client certificate", *base, "certificate")
        if not c.private_key:
            err(
                f"security_mode {c.security_mode} needs the certificate's private_key",
                *base,
                "private_key",
            )
    for key in ("certificate", "private_key", "server_certificate"):
        value = getattr(c, key)
        if value is None:
            continue
        if not secured:
            err("ignored: security_mode is None", *base, key, level="warning")
        elif not Path(value).is_file():
            err(f"file {value!r} not found here", *base, key, level="warning")
    if c.password is not None and not c.username:
        err("a password needs a username", *base, "password")
    elif c.username and c.password is None:
        err("username without password", *base, "password", level="warning")

    seen: dict[tuple[str, int], int] = {}
    for i, ep in endpoints:
        e: OpcuaEndpoint = ep
        if e.writable and e.scale == 0:
            err(
                "a writable endpoint needs a non-zero scale (command values are divided by it)",
                "endpoints",
                i,
                "scale",
            )
        if e.deadband > 0 and e.data_type in ("bool", "string"):
            err(
                f"a deadband applies to numbers only, not to {e.data_type}",
                "endpoints",
                i,
                "deadband",
                level="warning",
            )
        node = (e.node_id, e.interval_ms)
        if node in seen:
            err(
                f"node {e.node_id} is already monitored at the same interval by "
                f"$.endpoints[{seen[node]}]",
                "endpoints",
                i,
                "node_id",
                level="warning",
            )
        else:
            seen[node] = i
    for i, m in mappings:
        if m.topic is not None or m.values or m.identity_path or m.timestamp_path:
            err(
                "payload mappings (topic, values, identity_path, timestamp_path) are for MQTT; "
                "an opcua mapping renames or scales readings",
                "mappings",
                i,
                "topic" if m.topic is not None else "values",
            )
    return out
