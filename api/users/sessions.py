"""Sign-in sessions, their refresh tokens, and login failure counters
(``<data-dir>/sessions.json``; see ``shared_file`` for why a shared file).

A login starts a session (``sid``) and hands out an opaque refresh token; only its
SHA-256 is stored (32 random bytes: a fast hash is the right tool, as for API keys).
Each refresh marks the presented token used and hands out the next one of the chain.
Presenting a used token again means it was copied: the whole session is revoked, so
the thief and the owner both have to sign in again. Access tokens carry the ``sid``;
a revoked session refuses them at the next request in every process.

Failures are counted per username and per source address in a sliding window; at the
limit that name or address is locked out of *login* for ``lock_s`` (API keys, other
users and other addresses are unaffected). Counters for names that do not exist are kept
too, so a lockout tells nothing about which users exist.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from millrace.api.users.shared_file import SharedJsonFile
from millrace.pipeline.clock import now_us
from millrace.pipeline.errors import MillraceError

_US = 1_000_000


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshRefusedError(MillraceError):
    """The refresh token is unknown, expired, or was reused (``reused``: its session
    is revoked now)."""

    def __init__(self, reused: bool = False, username: str | None = None) -> None:
        super().__init__("refresh token reused" if reused else "invalid refresh token")
        self.reused = reused
        self.username = username


@dataclass(frozen=True)
class LockoutPolicy:
    max_user_failures: int = 5
    max_address_failures: int = 20
    window_s: float = 900.0
    lock_s: float = 900.0
    #: added before answering a failed login (slows guessing; 0 in tests)
    failure_delay_s: float = 0.5


class SessionStore:
    def __init__(
        self,
        path: Path | None,
        *,
        refresh_ttl_s: float = 7 * 86_400,
        lockout: LockoutPolicy | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.file: SharedJsonFile[dict[str, Any]] = SharedJsonFile(path, dict)
        self.refresh_ttl_us = int(refresh_ttl_s * _US)
        self.lockout = lockout or LockoutPolicy()
        self.clock = clock

    def _purge(self, doc: dict[str, Any], now: int) -> None:
        sessions = doc.setdefault("sessions", {})
        for sid in [s for s, v in sessions.items() if v["expires_us"] <= now]:
            del sessions[sid]
        tokens = doc.setdefault("tokens", {})
        for t in [t for t, v in tokens.items() if v["sid"] not in sessions]:
            del tokens[t]
        fails = doc.setdefault("failures", {})
        window = int(self.lockout.window_s * _US)
        for k in [
            k for k, v in fails.items() if max(v["last_us"] + window, v["locked_until_us"]) <= now
        ]:
            del fails[k]

    def _issue(self, doc: dict[str, Any], sid: str, now: int) -> str:
        token = "rt_" + secrets.token_urlsafe(32)
        doc["tokens"][_digest(token)] = {"sid": sid, "used": False}
        return token

    def start(self, username: str) -> tuple[str, str]:
        """A new session for ``username``: (sid, refresh token)."""
        now = self.clock()
        sid = secrets.token_hex(8)
        with self.file.changing() as doc:
            self._purge(doc, now)
            doc["sessions"][sid] = {
                "user": username,
                "created_us": now,
                "expires_us": now + self.refresh_ttl_us,
            }
            return sid, self._issue(doc, sid, now)

    def rotate(self, refresh_token: str) -> tuple[str, str, str]:
        """(username, sid, next refresh token); :class:`RefreshRefusedError` otherwise."""
        now = self.clock()
        reused: str | None = None
        with self.file.changing() as doc:
            self._purge(doc, now)
            item = doc["tokens"].get(_digest(refresh_token))
            session = doc["sessions"].get(item["sid"]) if item is not None else None
            if item is None or session is None:
                raise RefreshRefusedError()
            if item["used"]:
                self._revoke(doc, item["sid"])
                reused = session["user"]
            else:
                item["used"] = True
                session["expires_us"] = now + self.refresh_ttl_us
                return session["user"], item["sid"], self._issue(doc, item["sid"], now)
        raise RefreshRefusedError(reused=True, username=reused)

    def _revoke(self, doc: dict[str, Any], sid: str) -> None:
        doc["sessions"].pop(sid, None)
        for t in [t for t, v in doc["tokens"].items() if v["sid"] == sid]:
            del doc["tokens"][t]

    def end(self, refresh_token: str) -> str | None:
        """Revoke the session of ``refresh_token`` (logout); its username, if any."""
        with self.file.changing() as doc:
            self._purge(doc, self.clock())
            item = doc["tokens"].get(_digest(refresh_token))
            if item is None:
                return None
            user: str | None = doc["sessions"].get(item["sid"], {}).get("user")
            self._revoke(doc, item["sid"])
            return user

    def end_sid(self, sid: str) -> None:
        with self.file.changing() as doc:
            doc.setdefault("sessions", {})
            doc.setdefault("tokens", {})
            self._revoke(doc, sid)

    def end_user(self, username: str) -> None:
        """Revoke every session of ``username`` (disabled, deleted, new password)."""
        with self.file.changing() as doc:
            self._purge(doc, self.clock())
            for sid in [s for s, v in doc["sessions"].items() if v["user"] == username]:
                self._revoke(doc, sid)

    def active(self, sid: str) -> bool:
        """Whether session ``sid`` is live (read fresh: revocations elsewhere count)."""
        session = self.file.read(fresh=True).get("sessions", {}).get(sid)
        return session is not None and session["expires_us"] > self.clock()

    # lockout ------------------------------------------------------------------------

    def locked(self, username: str, address: str) -> bool:
        now = self.clock()
        fails = self.file.read(fresh=True).get("failures", {})
        return any(
            fails.get(k, {}).get("locked_until_us", 0) > now
            for k in (f"user:{username}", f"addr:{address}")
        )

    def failed(self, username: str, address: str) -> list[str]:
        """Count a failed login; the counters (``user:…``/``addr:…``) locked by it."""
        now = self.clock()
        window = int(self.lockout.window_s * _US)
        newly: list[str] = []
        with self.file.changing() as doc:
            self._purge(doc, now)
            limits = {
                f"user:{username}": self.lockout.max_user_failures,
                f"addr:{address}": self.lockout.max_address_failures,
            }
            for key, limit in limits.items():
                item = doc["failures"].setdefault(key, {"times": [], "locked_until_us": 0})
                item["times"] = [t for t in item["times"] if t > now - window] + [now]
                item["last_us"] = now
                if len(item["times"]) >= limit and item["locked_until_us"] <= now:
                    item["locked_until_us"] = now + int(self.lockout.lock_s * _US)
                    item["times"] = []
                    newly.append(key)
        return newly

    def succeeded(self, username: str) -> None:
        """A successful login clears that user's failures (not the address's)."""
        with self.file.changing() as doc:
            doc.setdefault("failures", {}).pop(f"user:{username}", None)
