"""API keys and roles.

Keys look like ``mr_<id>_<secret>``; only a SHA-256 of the secret is stored (keys are
32 random bytes, so a fast hash is the right tool — slow password hashes are for
low-entropy secrets, and would put ~50 ms on every request). Roles are ordered
viewer < operator < admin. ``MILLRACE_API_KEY``, when set, is an extra admin key held
only in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Role = Literal["viewer", "operator", "admin"]
ROLES: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: str
    sha256: str
    created_us: int


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    key_id: str
    name: str
    role: str

    def has(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]


class KeyStore:
    """API keys in ``<data-dir>/api_keys.json`` (mode 0600), hashed."""

    def __init__(self, path: Path | None, env_key: str | None = None) -> None:
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        self._lock = threading.Lock()
        self._env_digest = _digest(env_key) if env_key else None
        if path is not None and path.exists():
            for item in json.loads(path.read_text()):
                k = ApiKey(**item)
                self._keys[k.id] = k

    def __len__(self) -> int:
        return len(self._keys) + (1 if self._env_digest else 0)

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

    def create(self, name: str, role: str) -> tuple[ApiKey, str]:
        """Create a key; the plaintext is returned once and never stored."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(key_id, name, role, _digest(secret), time.time_ns() // 1000)
        with self._lock:
            self._keys[key_id] = key
            self._save()
        return key, f"mr_{key_id}_{secret}"

    def delete(self, key_id: str) -> bool:
        with self._lock:
            found = self._keys.pop(key_id, None) is not None
            if found:
                self._save()
        return found

    def list(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: k.created_us)

    def authenticate(self, presented: str) -> Principal | None:
        if self._env_digest and hmac.compare_digest(_digest(presented), self._env_digest):
            return Principal("env", "MILLRACE_API_KEY", "admin")
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != "mr":
            return None
        key = self._keys.get(parts[1])
        if key is None or not hmac.compare_digest(_digest(parts[2]), key.sha256):
            return None
        return Principal(key.id, key.name, key.role)
