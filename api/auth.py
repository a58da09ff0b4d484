"""API keys and roles.

Keys look like ``mr_<id>_<secret>``; only a SHA-256 of the secret is stored (keys are
32 random bytes, so a fast hash is the right tool — slow password hashes are for
low-entropy secrets, and would put ~50 ms on every request). A key holds a role: a
built-in one (viewer ⊂ operator ⊂ admin, as sets of permissions) or a custom one
(``api.permissions``, ``api.users``). ``MILLRACE_API_KEY``, when set, is an extra admin
key held only in memory.

A principal is identified by its key id (``Principal.key_id``): streams and other
long-lived things a caller opens remember it, so revoking the key ends them
(:meth:`KeyStore.still_valid`, :meth:`millrace.api.stream.StreamHub.close_owner`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from millrace.api.permissions import BUILTIN_ROLES
from millrace.api.users.shared_file import SharedJsonFile
from millrace.pipeline.clock import now_us

Role = Literal["viewer", "operator", "admin"]
ROLES: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}
#: the principal id of ``MILLRACE_API_KEY``
ENV_KEY_ID = "env"
#: the principal id of a signed-in user is this and the username
USER_PREFIX = "user:"
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


def _key_of(item: dict[str, Any]) -> ApiKey:
    return ApiKey(**item)


def _index(items: list[Any], key_id: str) -> int | None:
    return next((i for i, k in enumerate(items) if k.get("id") == key_id), None)


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

    @property
    def actor(self) -> str:
        """Who did it, as the audit trail and the objects (acknowledged_by, set_by,
        updated_by) record it: ``user:<username>`` for a signed-in user,
        ``key:<key id>:<key name>`` for an API key."""
        if self.key_id.startswith(USER_PREFIX):
            return self.key_id
        return f"key:{self.key_id}:{self.name}"


class KeyStore:
    """API keys in ``<data-dir>/api_keys.json`` (mode 0600), hashed.

    Several processes may share the file (the distributed deployment runs several
    ``millrace api``): it is a :class:`~millrace.api.users.shared_file.SharedJsonFile`,
    changed under an exclusive lock on the file as it is on disk then, and every store
    notices the file changed within ``reload_s`` of its next use, so a key created or
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
        self.file: SharedJsonFile[list[Any]] = SharedJsonFile(
            path, list, reload_s=reload_s, clock=clock
        )
        self._env_digest = _digest(env_key) if env_key else None
        # (the document parsed, its keys): held, so ``is`` tells a new version apart
        self._parsed: tuple[list[Any] | None, dict[str, ApiKey]] = (None, {})

    @property
    def _keys(self) -> dict[str, ApiKey]:
        """The keys as last read (parsed once per version of the file)."""
        items = self.file.read()
        if self._parsed[0] is not items:
            self._parsed = (items, {k.id: k for k in map(_key_of, items)})
        return self._parsed[1]

    def __len__(self) -> int:
        return len(self._keys) + (1 if self._env_digest else 0)

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
        with self.file.changing() as items:
            items.append(asdict(key))
        return key, f"mr_{key_id}_{secret}"

    def rotate(self, key_id: str) -> tuple[ApiKey, str] | None:
        """A new secret for ``key_id`` (same id, name, role, expiry); the old secret is
        refused from now on. None: no such key."""
        secret = secrets.token_urlsafe(32)
        with self.file.changing() as items:
            at = _index(items, key_id)
            if at is None:
                return None
            key = replace(_key_of(items[at]), sha256=_digest(secret), rotated_us=now_us())
            items[at] = asdict(key)
        return key, f"mr_{key_id}_{secret}"

    def _used(self, key: ApiKey, now: int) -> None:
        if key.last_used_us is not None and now - key.last_used_us < LAST_USED_EVERY_US:
            return
        try:
            with self.file.changing() as items:
                at = _index(items, key.id)
                if at is not None:
                    items[at] = asdict(replace(_key_of(items[at]), last_used_us=now))
        except (OSError, ValueError, TypeError):
            # a read-only or hand-broken file must not refuse the request
            logging.getLogger("millrace.api").warning("cannot record API key use")

    def delete(self, key_id: str) -> bool:
        with self.file.changing() as items:
            at = _index(items, key_id)
            if at is not None:
                del items[at]
        return at is not None

    def list(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: k.created_us)

    def authenticate(self, presented: str) -> Principal | None:
        if self._env_digest and hmac.compare_digest(_digest(presented), self._env_digest):
            return Principal(ENV_KEY_ID, "MILLRACE_API_KEY", "admin")
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != "mr":
            return None
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
        key = self._keys.get(principal.key_id)
        return key is not None and not key.expired(now_us())
