"""What keeps device authentication affordable and hard to abuse: a cache of recent
successful argon2 checks and a limiter that damps guessing per (identity, address) and
per address (see ``api.device_auth``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from millrace.api.device_headers import utf8_or_none as _utf8

if TYPE_CHECKING:
    from millrace.api.device_auth import CredentialHasher


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
