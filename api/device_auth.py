"""Device credentials: passwords and tokens, hashed with argon2id, and the guards around
checking them.

Operators use API keys (``api/auth.py``: 32 random bytes, a fast SHA-256 is enough).
Devices may present passwords an installer typed, so their credentials are hashed with
a slow, memory-hard function (argon2id) and only the encoded hash is ever stored. Device
tokens are random like API keys, but share the password path so one stored format and one
verification routine cover both auth types.

A slow hash on every request would be a CPU bill and an invitation to exhaust the server,
so this module also holds what keeps it affordable: a cache of recent successful checks,
a limiter that damps guessing per (identity, address) and per address (never per
identity alone, which would let anyone lock a device out), a bound on how many argon2
computations run at once (each needs its ``memory_cost`` of RAM), and the IP allow-list
that restricts who may provision. Everything here is synchronous and CPU-bound: async
routes call ``verify`` through a thread pool (argon2-cffi releases the GIL).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from argon2 import PasswordHasher, Type
from argon2.exceptions import Argon2Error

from pipeline.errors import MillraceError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: passwords are typed by people; 20 bytes is the floor the product promises (issue 5)
MIN_PASSWORD_BYTES = 20
#: an upper bound keeps a hostile client from making us hash megabytes per request
MAX_PASSWORD_BYTES = 1024

#: device tokens start with this, API keys with ``mr_``: a leaked string says what it is
TOKEN_PREFIX = "dt_"
TOKEN_BYTES = 32


class CredentialError(MillraceError, ValueError):
    """A credential or auth setting that cannot be accepted; ``field`` names the request
    field, ``message`` says what is wrong in words a user can act on."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _utf8(text: object) -> bytes | None:
    """``text`` as UTF-8, or None when it is not a str or holds lone surrogates (which
    JSON can carry but UTF-8 cannot)."""
    if not isinstance(text, str):
        return None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def check_password(password: str) -> None:
    """Refuse a password the product does not accept: not text, under
    ``MIN_PASSWORD_BYTES`` or over ``MAX_PASSWORD_BYTES`` bytes of UTF-8. Bytes, not
    characters, because that is what the device sends and what argon2 hashes."""
    raw = _utf8(password)
    if raw is None:
        raise CredentialError("password", "must be a string of valid Unicode text")
    if len(raw) < MIN_PASSWORD_BYTES:
        raise CredentialError(
            "password", f"must be at least {MIN_PASSWORD_BYTES} bytes long, got {len(raw)}"
        )
    if len(raw) > MAX_PASSWORD_BYTES:
        raise CredentialError(
            "password", f"must be at most {MAX_PASSWORD_BYTES} bytes long, got {len(raw)}"
        )


def new_token() -> str:
    """A fresh device token: ``dt_`` and 32 random bytes in url-safe base64 (46
    characters, safe in a header, a URL or a YAML file without quoting)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


class CredentialHasher:
    """argon2id hashing and verification of device secrets.

    The defaults are OWASP's minimum for argon2id (19 MiB, 2 passes, 1 lane), about
    30 ms per check on one core of the 2-core servers millrace targets. More lanes would
    not make a check cheaper for the server, only occupy more cores at once, and higher
    memory would multiply by the number of concurrent checks; the parameters live in
    each encoded hash, so they can be raised later and old hashes keep verifying
    (``needs_rehash`` tells when to re-hash after a successful check).

    At most ``max_concurrent`` computations run at once (default: the number of CPUs):
    more would not finish sooner, only hold more ``memory_cost`` blocks of RAM.

    Tests pass a cheap profile: ``CredentialHasher(time_cost=1, memory_cost=8)`` (8 KiB
    per lane is argon2's minimum).
    """

    def __init__(
        self,
        *,
        time_cost: int = 2,
        memory_cost: int = 19_456,
        parallelism: int = 1,
        max_concurrent: int | None = None,
    ) -> None:
        if time_cost < 1 or parallelism < 1:
            raise ValueError("time_cost and parallelism must be at least 1")
        if memory_cost < 8 * parallelism:
            raise ValueError("memory_cost must be at least 8 KiB per lane (8 * parallelism)")
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        slots = max_concurrent if max_concurrent is not None else (os.cpu_count() or 2)
        if slots < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._slots = threading.BoundedSemaphore(slots)
        self._dummy: str | None = None

    def hash(self, secret: str, *, field: str = "password") -> str:
        """The argon2id encoded string (parameters, random salt, digest) of ``secret``;
        the only form in which a device credential is stored. Refuses what ``verify``
        would refuse, so a stored hash can always be matched; ``field`` names the request
        field in that error."""
        raw = _utf8(secret)
        if raw is None:
            raise CredentialError(field, "must be a string of valid Unicode text")
        if len(raw) > MAX_PASSWORD_BYTES:
            raise CredentialError(field, f"must be at most {MAX_PASSWORD_BYTES} bytes long")
        with self._slots:
            return self._hasher.hash(raw)

    def verify(self, encoded: str, secret: str) -> bool:
        """Whether ``secret`` matches ``encoded``. Never raises: a wrong secret, a
        malformed or foreign hash, or a secret that is not text all answer False, so a
        corrupt record refuses the device instead of failing the request. The
        comparison is argon2's, constant-time."""
        raw = _utf8(secret)
        if raw is None or len(raw) > MAX_PASSWORD_BYTES:
            return False
        if not isinstance(encoded, str) or not encoded.isascii():
            return False
        try:
            with self._slots:
                return self._hasher.verify(encoded, raw)
        except (Argon2Error, ValueError):  # mismatch, malformed, unsupported parameters
            return False

    def verify_unknown(self, secret: str) -> bool:
        """Spend what a real check costs, then answer False: for identities that do not
        exist or have no credential, so response time does not tell which identities
        exist."""
        if self._dummy is None:
            self._dummy = self.hash(secrets.token_urlsafe(TOKEN_BYTES))
        self.verify(self._dummy, secret)
        return False

    def needs_rehash(self, encoded: str) -> bool:
        """Whether ``encoded`` was made with other parameters than this hasher's (or
        cannot be read): after a successful check, store ``hash(secret)`` instead."""
        if not isinstance(encoded, str):
            return True
        try:
            return self._hasher.check_needs_rehash(encoded)
        except (Argon2Error, ValueError):
            return True


class VerifiedCache:
    """Recent successful verifications, so a device posting every second pays argon2
    once per ``ttl_s`` rather than on every request.

    An entry is keyed by a keyed hash of (identity, encoded hash, secret): a changed
    credential, another identity or another secret never hits it. The key is an HMAC
    with a random per-process key rather than a bare SHA-256, so a memory dump does not
    hand out a fast hash of the passwords that argon2 is there to protect. Entries
    expire ``ttl_s`` after the verification (a hit does not extend it) and the least
    recently used are dropped beyond ``max_entries``. Failures are not cached: a wrong
    secret costs a full check every time, and ``FailureLimiter`` bounds how often.
    """

    def __init__(
        self,
        hasher: CredentialHasher,
        *,
        ttl_s: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("ttl_s must be positive and max_entries at least 1")
        self.hasher = hasher
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._pepper = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _key(self, identity: str, encoded: str, secret: str) -> bytes | None:
        """The cache key, or None when the three parts could not be told apart from
        their joined form (a NUL inside the identity or hash) or are not encodable;
        such calls are verified without the cache."""
        if "\0" in identity or "\0" in encoded:
            return None
        raw = _utf8(f"{identity}\0{encoded}\0{secret}")
        if raw is None:
            return None
        return hmac.new(self._pepper, raw, hashlib.sha256).digest()

    def verify(self, identity: str, encoded: str, secret: str) -> bool:
        """Whether ``secret`` matches ``encoded`` for ``identity``; never raises. The
        lock is not held during argon2, so checks of different devices run in parallel
        (two simultaneous misses for one device both verify, which is harmless)."""
        if not all(isinstance(part, str) for part in (identity, encoded, secret)):
            return False
        key = self._key(identity, encoded, secret)
        if key is None:
            return self.hasher.verify(encoded, secret)
        now = self._clock()
        with self._lock:
            expires = self._entries.get(key)
            if expires is not None:
                if now < expires:
                    self._entries.move_to_end(key)
                    return True
                del self._entries[key]
        if not self.hasher.verify(encoded, secret):
            return False
        with self._lock:
            self._entries[key] = self._clock() + self.ttl_s
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return True

    def clear(self) -> None:
        """Forget every entry (e.g. after credentials were rotated in bulk)."""
        with self._lock:
            self._entries.clear()


class FailureLimiter:
    """Damps credential guessing without letting a third party lock a device out.

    Failures count per (identity, address) pair and per address, never per identity
    alone: after ``max_failures`` failures within ``window_s`` seconds, that identity is
    blocked *from that address*; after ``max_address_failures``, the address is blocked
    for every identity. The device itself, at another address, keeps working however
    many wrong passwords others send in its name. Guessing is capped at about
    ``max_failures`` per window per identity and address, and ``max_address_failures``
    per window per address (a password has at least 20 bytes: that is plenty). A key
    is blocked until the oldest of its counted failures leaves the window, so a device
    with a mistyped password recovers on its own once it is fixed.

    The address is the client's as the server sees it: uvicorn replaces the peer with
    the ``X-Forwarded-For`` address only for trusted proxies (``forwarded_allow_ips``),
    so a client cannot choose its own. Without an address (``None``) the pair is
    (identity, unknown), shared by every such caller. Devices behind one NAT address
    share that address's count.

    Per key only the latest ``max_failures`` (or ``max_address_failures``) timestamps
    are kept (the window is full exactly when the oldest of them is still in it), and
    keys beyond ``max_keys`` are dropped oldest first, so memory is bounded whatever an
    attacker sends. A success clears its pair, not the address: one valid credential
    must not reset the count of an address trying many identities.

    Callers should answer a blocked request without verifying and without recording
    it, so a blocked client is not also spending argon2 time.
    """

    def __init__(
        self,
        *,
        max_failures: int = 10,
        max_address_failures: int = 100,
        window_s: float = 60.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or max_address_failures < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError(
                "max_failures, max_address_failures and max_keys must be at least 1, "
                "window_s positive"
            )
        self.max_failures = max_failures
        self.max_address_failures = max_address_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[tuple[str, ...], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._failures)

    def _keys(self, identity: str, ip: str | None) -> list[tuple[tuple[str, ...], int]]:
        """The keys a failure of ``identity`` from ``ip`` counts against, with limits."""
        keys: list[tuple[tuple[str, ...], int]] = [
            (("pair", identity, ip or ""), self.max_failures)
        ]
        if ip:
            keys.append((("ip", ip), self.max_address_failures))
        return keys

    def _full(self, key: tuple[str, ...], limit: int, now: float) -> bool:
        stamps = self._failures.get(key)
        if stamps is None:
            return False
        if stamps[-1] <= now - self.window_s:  # even the newest left the window
            del self._failures[key]
            return False
        return len(stamps) >= limit and stamps[0] > now - self.window_s

    def blocked(self, identity: str, ip: str | None) -> bool:
        """Whether ``identity`` from ``ip``, or ``ip`` itself, has used up its failures."""
        now = self._clock()
        with self._lock:
            return any([self._full(key, limit, now) for key, limit in self._keys(identity, ip)])

    def record_failure(self, identity: str, ip: str | None) -> None:
        """Count a failed check against the pair and the address."""
        now = self._clock()
        with self._lock:
            for key, limit in self._keys(identity, ip):
                stamps = self._failures.get(key)
                if stamps is None:
                    stamps = self._failures[key] = deque(maxlen=limit)
                stamps.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def record_success(self, identity: str, ip: str | None = None) -> None:
        """Forget the failures of ``identity`` from ``ip``: the device there has the
        right credential now. Failures from other addresses stay counted."""
        with self._lock:
            self._failures.pop(("pair", identity, ip or ""), None)


def parse_allowlist(entries: Sequence[str]) -> list[IPNetwork]:
    """The networks of a provisioning allow-list: addresses (a /32 or /128) and CIDRs.
    A CIDR with host bits set (``10.0.0.5/24``) is refused rather than widened silently,
    with the network it probably meant in the message."""
    if isinstance(entries, str) or not isinstance(entries, Sequence):
        raise CredentialError("ip_allowlist", "must be a list of addresses or CIDR networks")
    networks: list[IPNetwork] = []
    for i, entry in enumerate(entries):
        field = f"ip_allowlist[{i}]"
        if not isinstance(entry, str):
            raise CredentialError(field, "must be a string like 10.0.0.0/24 or 2001:db8::1")
        text = entry.strip()
        try:
            networks.append(ipaddress.ip_network(text))
            continue
        except ValueError:
            pass
        try:
            wide = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise CredentialError(
                field, f"{entry!r} is not an IP address or CIDR network (like 10.0.0.0/24)"
            ) from None
        raise CredentialError(field, f"{entry!r} has host bits set; did you mean {wide}?")
    return networks


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
