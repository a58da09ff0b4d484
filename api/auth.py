"""API keys and roles.

Keys look like ``mr_<id>_<secret>``; only a SHA-256 of the secret is stored (keys are
32 random bytes, so a fast hash is the right tool — slow password hashes are for
low-entropy secrets, and would put ~50 ms on every request). Roles are ordered
viewer < operator < admin. ``MILLRACE_API_KEY``, when set, is an extra admin key held
only in memory.

A principal is identified by its key id (``Principal.key_id``): streams and other
long-lived things a caller opens remember it, so revoking the key ends them
(:meth:`KeyStore.still_valid`, :meth:`millrace.api.stream.StreamHub.close_owner`).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from millrace.api.permissions import BUILTIN_ROLES
from millrace.pipeline.clock import now_us

Role = Literal["viewer", "operator", "admin"]
ROLES: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}
#: the principal id of ``MILLRACE_API_KEY``
ENV_KEY_ID = "env"
#: a key's last-used time is written at most this often (a write per request would
#: make every request a file write)
LAST_USED_EVERY_US = 60_000_000


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: str
    sha256: str
    created_us: int
    #: after this the key is refused (None: never)
    expires_us: int | None = None
    #: the last time it authenticated, to within :data:`LAST_USED_EVERY_US`
    last_used_us: int | None = None
    rotated_us: int | None = None

    def expired(self, now: int) -> bool:
        return self.expires_us is not None and self.expires_us <= now


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key (``key_id``) or a signed-in user (``key_id`` is
    ``user:<username>``, ``session`` the sign-in session). ``permissions`` are the
    role's (``api.permissions``); None: the built-in role's."""

    key_id: str
    name: str
    role: str
    permissions: frozenset[str] | None = None
    session: str | None = None
    #: when the credential stops being valid (an access token's ``exp``)
    expires_us: int | None = None
    #: identity name patterns (``fnmatch``) a scoped role confines it to; None: all
    scope: tuple[str, ...] | None = None

    @property
    def granted(self) -> frozenset[str]:
        if self.permissions is not None:
            return self.permissions
        return BUILTIN_ROLES.get(self.role, frozenset())

    def can(self, permission: str) -> bool:
        return permission in self.granted

    def has(self, role: str) -> bool:
        """Holds every permission of the built-in ``role``."""
        return BUILTIN_ROLES[role] <= self.granted


class KeyStore:
    """API keys in ``<data-dir>/api_keys.json`` (mode 0600), hashed.

    Several processes may share the file (the distributed deployment runs several
    ``millrace api``): a change is made under an exclusive lock on ``api_keys.lock``,
    on the file as it is on disk then, and every store notices the file changed
    (its size, time or inode) within ``reload_s`` of its next use, so a key created or
    revoked through one process is accepted or refused by all of them within about a
    second. :meth:`still_valid` is what open event streams ask every second.
    """

    def __init__(
        self,
        path: Path | None,
        env_key: str | None = None,
        *,
        reload_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.reload_s = reload_s
        self._clock = clock
        self._keys: dict[str, ApiKey] = {}
        self._lock = threading.Lock()
        self._env_digest = _digest(env_key) if env_key else None
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime) loaded
        self._checked = clock()
        with self._lock:
            self._load()

    def __len__(self) -> int:
        self._refresh()
        return len(self._keys) + (1 if self._env_digest else 0)

    def _signature(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> None:
        """Read the file if it changed since it was last read (lock held)."""
        if self.path is None:
            return
        seen = self._signature()
        if seen == self._seen:
            return
        keys: dict[str, ApiKey] = {}
        if seen is not None:
            for item in json.loads(self.path.read_text()):
                k = ApiKey(**item)
                keys[k.id] = k
        self._keys, self._seen = keys, seen

    def _refresh(self) -> None:
        """At most every ``reload_s``: take in changes other processes made."""
        if self.path is None or self._clock() - self._checked < self.reload_s:
            return
        with self._lock:
            self._checked = self._clock()
            try:
                self._load()
            except (OSError, ValueError, TypeError):
                # a file edited by hand into something unreadable: keep the keys last
                # read (and try again later) rather than fail every request
                logging.getLogger("millrace.api").exception("cannot read %s", self.path)

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold this store's lock and the file lock, on the keys as they are on disk."""
        with self._lock:
            if self.path is None:
                yield
                return
            lock_path = self.path.with_suffix(".lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._load()
                yield
            finally:
                os.close(fd)  # releases the lock

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump([asdict(k) for k in self._keys.values()], f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._seen = self._signature()

    def create(
        self,
        name: str,
        role: str,
        *,
        known_roles: Collection[str] = ROLES,
        expires_us: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; the plaintext is returned once and never stored. ``role`` is a
        built-in role or, when the caller passes ``known_roles``, a custom one."""
        if role not in known_roles:
            raise ValueError(f"role must be one of {sorted(known_roles)}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(key_id, name, role, _digest(secret), now_us(), expires_us)
        with self._changing():
            self._keys[key_id] = key
            self._save()
        return key, f"mr_{key_id}_{secret}"

    def rotate(self, key_id: str) -> tuple[ApiKey, str] | None:
        """A new secret for ``key_id`` (same id, name, role, expiry); the old secret is
        refused from now on. None: no such key."""
        secret = secrets.token_urlsafe(32)
        with self._changing():
            key = self._keys.get(key_id)
            if key is None:
                return None
            key = replace(key, sha256=_digest(secret), rotated_us=now_us())
            self._keys[key_id] = key
            self._save()
        return key, f"mr_{key_id}_{secret}"

    def _used(self, key: ApiKey, now: int) -> None:
        if key.last_used_us is not None and now - key.last_used_us < LAST_USED_EVERY_US:
            return
        try:
            with self._changing():
                current = self._keys.get(key.id)
                if current is not None:
                    self._keys[key.id] = replace(current, last_used_us=now)
                    self._save()
        except (OSError, ValueError, TypeError):
            # a read-only or hand-broken file must not refuse the request
            logging.getLogger("millrace.api").warning("cannot record API key use")

    def delete(self, key_id: str) -> bool:
        with self._changing():
            found = self._keys.pop(key_id, None) is not None
            if found:
                self._save()
        return found

    def list(self) -> list[ApiKey]:
        self._refresh()
        return sorted(self._keys.values(), key=lambda k: k.created_us)

    def authenticate(self, presented: str) -> Principal | None:
        if self._env_digest and hmac.compare_digest(_digest(presented), self._env_digest):
            return Principal(ENV_KEY_ID, "MILLRACE_API_KEY", "admin")
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != "mr":
            return None
        self._refresh()
        key = self._keys.get(parts[1])
        if key is None or not hmac.compare_digest(_digest(parts[2]), key.sha256):
            return None
        now = now_us()
        if key.expired(now):
            return None
        self._used(key, now)
        return Principal(key.id, key.name, key.role, expires_us=key.expires_us)

    def still_valid(self, principal: Principal) -> bool:
        """Whether ``principal``'s key still exists (revoked keys, also those revoked
        through another process, answer False within ``reload_s``)."""
        if principal.key_id == ENV_KEY_ID:
            return self._env_digest is not None
        self._refresh()
        key = self._keys.get(principal.key_id)
        return key is not None and not key.expired(now_us())
