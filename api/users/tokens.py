"""Access tokens: JWTs (PyJWT, HS256) signed with keys kept in the data directory.

``<data-dir>/jwt_keys.json`` (mode 0600) holds 256-bit random signing keys, each with a
``kid``; the first start creates one. :meth:`SigningKeys.rotate` (``POST
/api/v1/auth/keys/rotate``) makes a new key the current one and keeps the previous ones
until every token they signed has expired (``retired + access_ttl``, the longest an
access token lives), so rotation logs nobody out; keys retired longer ago than that are
dropped at the next rotation (their tokens have all expired). HMAC and not a key pair: only
``millrace api`` processes sign and verify, and they share the data directory already;
an asymmetric key would be worth it once a third party verifies tokens.

Verification pins the algorithm (``alg: none`` and any other are refused), requires
``exp``, ``iat``, ``sub``, ``sid``, issuer and audience, and picks the key by ``kid``
(an unknown ``kid`` — a key of another installation — is refused).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from millrace.api.users.shared_file import SharedJsonFile
from millrace.pipeline.clock import now_us

ALGORITHM = "HS256"
ISSUER = "millrace"
AUDIENCE = "millrace-api"
#: how far a token's ``iat`` may lie ahead of this process's clock: the ``millrace api``
#: process that signed it may run a little ahead of this one
MAX_SKEW_US = 60_000_000


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: the new current ``kid`` and the kids dropped."""

    kid: str
    dropped: list[str]


@dataclass(frozen=True)
class AccessClaims:
    username: str
    sid: str
    expires_us: int


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("mr_")


class SigningKeys:
    def __init__(
        self,
        path: Path | None,
        *,
        access_ttl_s: float = 900.0,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.file: SharedJsonFile[dict[str, Any]] = SharedJsonFile(path, dict)
        self.access_ttl_s = access_ttl_s
        self.clock = clock
        if not self.file.read(fresh=True).get("keys"):
            with self.file.changing() as doc:
                if not doc.get("keys"):
                    self._add(doc)

    def _add(self, doc: dict[str, Any]) -> Rotation:
        now = self.clock()
        keep = now - int(self.access_ttl_s * 1_000_000)
        before = doc.get("keys", [])
        keys = [k for k in before if k["retired_us"] is None or k["retired_us"] > keep]
        for k in keys:
            if k["retired_us"] is None:
                k["retired_us"] = now
        kid = secrets.token_hex(6)
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        doc["keys"] = [*keys, {"kid": kid, "secret": secret, "created_us": now, "retired_us": None}]
        return Rotation(kid, [k["kid"] for k in before if k not in keys])

    def rotate(self) -> Rotation:
        """A new current key (and the retired keys whose tokens have all expired
        dropped), under the file's lock: processes rotating at once each add one."""
        with self.file.changing() as doc:
            return self._add(doc)

    def listing(self) -> list[dict[str, Any]]:
        """The keys without their secrets: kid, created_us, retired_us (None: current)."""
        return [
            {"kid": k["kid"], "created_us": k["created_us"], "retired_us": k["retired_us"]}
            for k in self.file.read(fresh=True)["keys"]
        ]

    def _keys(self, *, fresh: bool = False) -> dict[str, bytes]:
        return {
            k["kid"]: base64.b64decode(k["secret"]) for k in self.file.read(fresh=fresh)["keys"]
        }

    def current(self) -> tuple[str, bytes]:
        doc = self.file.read()
        k = next(k for k in doc["keys"] if k["retired_us"] is None)
        return k["kid"], base64.b64decode(k["secret"])

    def issue(self, username: str, sid: str) -> tuple[str, int]:
        """(token, expires_us)."""
        kid, secret = self.current()
        now_s = self.clock() // 1_000_000
        exp = now_s + int(self.access_ttl_s)
        claims = {
            "sub": username,
            "sid": sid,
            "iat": now_s,
            "exp": exp,
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        token = jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid})
        return token, exp * 1_000_000

    def verify(self, token: str) -> AccessClaims | None:
        """The claims of a valid token; None for anything else (never raises)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            keys = self._keys()
            if kid not in keys:
                keys = self._keys(fresh=True)  # rotated by another process just now
            secret = keys.get(kid) if isinstance(kid, str) else None
            if secret is None:
                return None
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                # exp and iat against our clock, not the wall's (tests inject one), iat
                # with the skew between processes allowed
                options={
                    "require": ["exp", "iat", "sub", "sid"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
            expires_us = int(claims["exp"]) * 1_000_000
            issued_us = int(claims["iat"]) * 1_000_000
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError):
            return None
        now = self.clock()
        if expires_us <= now or issued_us > now + MAX_SKEW_US:
            return None
        if not isinstance(claims["sub"], str) or not isinstance(claims["sid"], str):
            return None
        return AccessClaims(claims["sub"], claims["sid"], expires_us)
