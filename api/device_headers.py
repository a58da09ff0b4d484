"""Who may ask and what they present: matching an address against the provisioning IP
allow-list, and the device ``Authorization`` headers (Basic, Bearer), parsed without
ever raising on bad input."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def utf8_or_none(text: object) -> bytes | None:
    """``text`` as UTF-8, or None when it is not a str or holds lone surrogates (which
    JSON can carry but UTF-8 cannot)."""
    if not isinstance(text, str):
        return None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def ip_allowed(ip: str | None, networks: Sequence[IPNetwork]) -> bool:
    """Whether a client at ``ip`` may provision. An empty list lets everyone in; with a
    list, an address that is missing or unreadable is refused. A dual-stack server sees
    IPv4 clients as ``::ffff:a.b.c.d``, so mapped addresses also match IPv4 networks
    (and IPv4 addresses match ``::ffff:0:0/96`` style networks)."""
    if not networks:
        return True
    address = _ip(ip)
    if address is None:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    elif isinstance(address, ipaddress.IPv4Address):
        candidates.append(ipaddress.IPv6Address(f"::ffff:{address}"))
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in networks
    )


def _scheme_value(header_value: str, scheme: str) -> str | None:
    """The credentials after ``scheme`` (matched case-insensitively, RFC 9110), or None
    when the header uses another scheme or is not ``scheme SP credentials``."""
    if not isinstance(header_value, str):
        return None
    parts = header_value.split()
    if len(parts) != 2 or parts[0].lower() != scheme:
        return None
    return parts[1]


def parse_basic(header_value: str) -> tuple[str, str] | None:
    """(identity, password) of an ``Authorization: Basic base64(identity:password)``
    value (RFC 7617), or None when it is not one: another scheme, invalid base64, not
    UTF-8, no colon, or an empty identity. The identity ends at the first colon; the
    password may contain colons."""
    token = _scheme_value(header_value, "basic")
    if token is None:
        return None
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # bad base64, non-ASCII input, not UTF-8
        return None
    identity, colon, password = decoded.partition(":")
    if not colon or not identity:
        return None
    return identity, password


#: RFC 6750 b64token
_BEARER = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def parse_bearer(header_value: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (RFC 6750), or None.
    The token is returned as is: a ``dt_`` device token and an ``mr_`` API key are told
    apart by the caller."""
    token = _scheme_value(header_value, "bearer")
    if token is None or _BEARER.fullmatch(token) is None:
        return None
    return token
