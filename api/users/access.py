"""Who a presented credential is: API keys and access tokens, one entry point.

:class:`AccessControl` is what the authentication middleware and the routes ask. It
holds the API keys (``api.auth.KeyStore``), the users and roles, the sign-in sessions
and the signing keys. A JWT is resolved against the user *as stored now* (read fresh
every request): a disabled or deleted user, a revoked session or a changed role takes
effect at the next request in every ``millrace api`` process of the data directory.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from millrace.api.auth import USER_PREFIX, KeyStore, Principal
from millrace.api.device_auth import CredentialHasher
from millrace.api.users.policy import PasswordPolicy, PasswordRejectedError
from millrace.api.users.sessions import LockoutPolicy, SessionStore
from millrace.api.users.store import UserStore
from millrace.api.users.tokens import SigningKeys, looks_like_jwt
from millrace.pipeline.errors import ConfigError

if TYPE_CHECKING:
    from millrace.pipeline.cli.config import AuthConfig

#: (name patterns, tag criteria) -> names of the identities meeting both
TagResolver = Callable[[tuple[str, ...], tuple[str, ...]], list[str]]


@dataclass
class AccessSettings:
    access_ttl_s: float = 900.0
    refresh_ttl_s: float = 7 * 86_400
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    policy: PasswordPolicy = field(default_factory=PasswordPolicy)

    @staticmethod
    def of(cfg: AuthConfig) -> AccessSettings:
        """From the ``api.auth`` section of the configuration."""
        return AccessSettings(
            access_ttl_s=cfg.access_token_ttl_s,
            refresh_ttl_s=cfg.refresh_ttl_s,
            lockout=LockoutPolicy(
                max_user_failures=cfg.login_max_user_failures,
                max_address_failures=cfg.login_max_address_failures,
                window_s=cfg.login_window_s,
                lock_s=cfg.login_lock_s,
                failure_delay_s=cfg.login_failure_delay_s,
            ),
            policy=PasswordPolicy(
                min_length=cfg.password_min_length, extra_list=cfg.common_passwords_file
            ),
        )


class AccessControl:
    def __init__(
        self,
        keys: KeyStore,
        data_dir: Path | None = None,
        *,
        hasher: CredentialHasher | None = None,
        settings: AccessSettings | None = None,
    ) -> None:
        self.settings = settings or AccessSettings()
        self.keys = keys
        self.hasher = hasher or CredentialHasher()
        self.policy = self.settings.policy
        path = (lambda name: data_dir / name) if data_dir is not None else (lambda name: None)
        self.users = UserStore(path("users.json"))
        self.sessions = SessionStore(
            path("sessions.json"),
            refresh_ttl_s=self.settings.refresh_ttl_s,
            lockout=self.settings.lockout,
        )
        self.signing = SigningKeys(path("jwt_keys.json"), access_ttl_s=self.settings.access_ttl_s)
        #: (name patterns, tag criteria) -> the identities meeting both, from the
        #: projections (``AppContext`` sets it); None: a tag scope confines to nothing
        self.resolve_tags: TagResolver | None = None

    def scope_of(self, roles: tuple[str, ...] | list[str]) -> tuple[str, ...] | None:
        """The identity patterns a principal holding ``roles`` is confined to (None: not
        scoped): the union of its scoped roles'. A role scoped by tags contributes the
        names of the identities whose tags meet its criteria (and whose names match its
        patterns, if it has some), as the projections hold them now; identity names
        hold no ``*`` or ``?``, so each is a pattern matching itself."""
        scopes = self.users.scopes_of(roles)
        if scopes is None:
            return None
        out: set[str] = set()
        for patterns, criteria in scopes:
            if not criteria:
                out.update(patterns)
            elif self.resolve_tags is not None:
                names = self.resolve_tags(patterns, criteria)
                out.update(n for n in names if "*" not in n and "?" not in n)
        return tuple(sorted(out))

    def authenticate(self, token: str) -> Principal | None:
        if looks_like_jwt(token):
            return self._user_principal(token)
        principal = self.keys.authenticate(token)
        if principal is None or principal.role in ("viewer", "operator", "admin"):
            return principal
        # a custom role: its permissions as they are now
        return Principal(
            principal.key_id,
            principal.name,
            principal.role,
            permissions=self.users.permissions_of([principal.role], fresh=True),
            scope=self.scope_of([principal.role]),
        )

    def _user_principal(self, token: str) -> Principal | None:
        claims = self.signing.verify(token)
        if claims is None:
            return None
        user = self.users.get(claims.username, fresh=True)
        if user is None or not user.enabled or not self.sessions.active(claims.sid):
            return None
        return Principal(
            USER_PREFIX + user.username,
            user.username,
            ",".join(user.roles),
            permissions=self.users.permissions_of(user.roles),
            scope=self.scope_of(user.roles),
            session=claims.sid,
            expires_us=claims.expires_us,
        )

    def still_valid(self, principal: Principal) -> bool:
        """Whether ``principal`` may go on (open live streams ask every second). A
        changed scope of its role(s) ends it too: what it opened (a stream's
        subscriptions) was filtered by the scope it had then."""
        if not principal.key_id.startswith(USER_PREFIX):
            if not self.keys.still_valid(principal):
                return False
            return self.scope_of([principal.role]) == principal.scope
        if principal.expires_us is not None and principal.expires_us <= self.users.clock():
            return False
        user = self.users.get(principal.name, fresh=True)
        return (
            user is not None
            and user.enabled
            and principal.session is not None
            and self.sessions.active(principal.session)
            and self.scope_of(user.roles) == principal.scope
        )

    def first_admin(self, password: str | None) -> str | None:
        """Create the ``admin`` user when there are no users; the password generated
        (to print once), or None when ``password`` was given or users exist. Processes
        starting together race under the store's lock: one creates it."""
        if len(self.users):
            return None
        generated = None
        if not password:
            password = generated = secrets.token_urlsafe(18)
        else:
            try:
                self.policy.check(password, "admin")
            except PasswordRejectedError as exc:
                raise ConfigError(f"MILLRACE_ADMIN_PASSWORD: {exc.message}") from None
        created = self.users.create(
            "admin",
            self.hasher.hash(password),
            roles=["admin"],
            display_name="Administrator",
            only_if_none=True,
        )
        return generated if created is not None else None


def announce_admin_password(password: str) -> None:
    """Print the first admin user's password once, to the terminal, never to the log."""
    sys.stdout.write(
        "\nmillrace created the user 'admin' (password shown once, stored hashed):\n\n"
        f"    {password}\n\n"
        "Sign in to the web console at the API's address (http://127.0.0.1:8080/ by\n"
        "default) or with POST /api/v1/login. Set MILLRACE_ADMIN_PASSWORD to choose your own.\n\n"
    )
    sys.stdout.flush()
