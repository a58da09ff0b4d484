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

The cache and the limiter are in ``api.device_guards``, the allow-list and header
parsing in ``api.device_headers``; the allow-list is parsed here (it raises
:class:`CredentialError`), the rest is re-exported here.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import threading
from collections.abc import Sequence

from argon2 import PasswordHasher, Type
from argon2.exceptions import Argon2Error

from millrace.api.device_guards import FailureLimiter, VerifiedCache
from millrace.api.device_headers import IPNetwork, ip_allowed, parse_basic, parse_bearer
from millrace.api.device_headers import utf8_or_none as _utf8
from millrace.pipeline.errors import MillraceError

__all__ = [
    "MAX_PASSWORD_BYTES",
    "MIN_PASSWORD_BYTES",
    "TOKEN_BYTES",
    "TOKEN_PREFIX",
    "CredentialError",
    "CredentialHasher",
    "FailureLimiter",
    "IPNetwork",
    "VerifiedCache",
    "check_password",
    "ip_allowed",
    "new_token",
    "parse_allowlist",
    "parse_basic",
    "parse_bearer",
]


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
