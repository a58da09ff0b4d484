"""Users and custom roles (``<data-dir>/users.json``, see ``shared_file`` for why a
shared file and not the log).

A user: username, display name, email, roles, enabled, created, last login, and the
argon2id hash of the password (never returned, never logged, never in an event). A
custom role: a set of known permissions (``api.permissions``); the built-in roles
``viewer``, ``operator``, ``admin`` cannot be redefined. The store keeps the rules that
need the whole document at once (under its lock, so two processes cannot both remove
"the other" last admin): the last enabled admin user cannot be deleted, disabled or
demoted (:class:`AccessConflictError`, 409), a role in use cannot be deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from millrace.api.permissions import BUILTIN_ROLES
from millrace.api.users.shared_file import SharedJsonFile
from millrace.pipeline.clock import now_us
from millrace.pipeline.errors import MillraceError

#: what a user record shows (everything but the hash)
PUBLIC_FIELDS = (
    "username",
    "display_name",
    "email",
    "roles",
    "enabled",
    "created_us",
    "last_login_us",
    "password_changed_us",
)


class AccessError(MillraceError):
    """A refused change to users or roles; ``field`` names what is wrong."""

    status = 400
    code = "invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class AccessNotFoundError(AccessError):
    status = 404
    code = "not_found"


class AccessConflictError(AccessError):
    status = 409
    code = "conflict"


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    email: str
    roles: tuple[str, ...]
    enabled: bool
    created_us: int
    last_login_us: int | None
    password_changed_us: int
    password_hash: str

    @staticmethod
    def of(item: dict[str, Any]) -> User:
        return User(**{**item, "roles": tuple(item["roles"])})

    def public(self) -> dict[str, Any]:
        return {f: (list(self.roles) if f == "roles" else getattr(self, f)) for f in PUBLIC_FIELDS}


def _is_admin(item: dict[str, Any]) -> bool:
    return bool(item["enabled"]) and "admin" in item["roles"]


class UserStore:
    """Users and custom roles, shared by the processes of one data directory."""

    def __init__(
        self, path: Path | None, *, reload_s: float = 1.0, clock: Callable[[], int] = now_us
    ) -> None:
        self.file: SharedJsonFile[dict[str, Any]] = SharedJsonFile(path, dict, reload_s=reload_s)
        self.clock = clock

    # reads --------------------------------------------------------------------------

    def get(self, username: str, *, fresh: bool = False) -> User | None:
        item = self.file.read(fresh=fresh).get("users", {}).get(username)
        return User.of(item) if item is not None else None

    def list_users(self) -> list[User]:
        users = self.file.read().get("users", {}).values()
        return sorted((User.of(u) for u in users), key=lambda u: u.username)

    def __len__(self) -> int:
        return len(self.file.read(fresh=True).get("users", {}))

    def roles(self, *, fresh: bool = False) -> dict[str, frozenset[str]]:
        """Every role (built-in and custom) -> its permissions."""
        custom = self.file.read(fresh=fresh).get("roles", {})
        return {
            **{n: frozenset(r["permissions"]) for n, r in custom.items()},
            **BUILTIN_ROLES,
        }

    def custom_roles(self) -> dict[str, dict[str, Any]]:
        return dict(self.file.read().get("roles", {}))

    def permissions_of(
        self, roles: tuple[str, ...] | list[str], *, fresh: bool = False
    ) -> frozenset[str]:
        known = self.roles(fresh=fresh)
        found: frozenset[str] = frozenset()
        for r in roles:
            found |= known.get(r, frozenset())
        return found

    def scopes_of(
        self, roles: tuple[str, ...] | list[str]
    ) -> list[tuple[tuple[str, ...], tuple[str, ...]]] | None:
        """The scopes of ``roles`` that have one, each as (name patterns, tag criteria);
        None when no role is scoped. A principal is confined to their union as soon as
        one role is scoped (a scope only ever narrows): ``AccessControl`` resolves it."""
        custom = self.file.read().get("roles", {})
        found = [(custom.get(r) or {}).get("scope") for r in roles]
        scopes = [
            (tuple(s.get("identities") or ()), tuple(s.get("tags") or ())) for s in found if s
        ]
        return scopes or None

    # users --------------------------------------------------------------------------

    def _check_roles(self, roles: list[str], doc: dict[str, Any]) -> None:
        known = set(BUILTIN_ROLES) | set(doc.get("roles", {}))
        unknown: list[str] = sorted(set(roles) - known)
        if unknown:
            raise AccessError("roles", f"roles: unknown role(s) {', '.join(unknown)}")

    def create(
        self,
        username: str,
        password_hash: str,
        *,
        roles: list[str],
        display_name: str = "",
        email: str = "",
        enabled: bool = True,
        only_if_none: bool = False,
    ) -> User | None:
        """A new user; with ``only_if_none``, only when there are no users at all (the
        first start: several processes may race, one wins, the others get None)."""
        now = self.clock()
        with self.file.changing() as doc:
            users = doc.setdefault("users", {})
            if only_if_none and users:
                return None
            if username in users:
                raise AccessConflictError("username", f"username: a user {username!r} exists")
            self._check_roles(roles, doc)
            item = {
                "username": username,
                "display_name": display_name,
                "email": email,
                "roles": sorted(set(roles)),
                "enabled": enabled,
                "created_us": now,
                "last_login_us": None,
                "password_changed_us": now,
                "password_hash": password_hash,
            }
            users[username] = item
        return User.of(item)

    def update(self, username: str, **changes: Any) -> tuple[User, User]:
        """Change display_name, email, roles, enabled or password_hash; (before, after)."""
        with self.file.changing() as doc:
            users = doc.setdefault("users", {})
            item = users.get(username)
            if item is None:
                raise AccessNotFoundError("username", f"username: no user {username!r}")
            before = User.of(item)
            if "roles" in changes:
                self._check_roles(changes["roles"], doc)
                changes["roles"] = sorted(set(changes["roles"]))
            if "password_hash" in changes:
                changes["password_changed_us"] = self.clock()
            new = {**item, **changes}
            if _is_admin(item) and not _is_admin(new):
                self._keep_an_admin(users, username)
            users[username] = new
        return before, User.of(new)

    def _keep_an_admin(self, users: dict[str, Any], leaving: str) -> None:
        if not any(_is_admin(u) for n, u in users.items() if n != leaving):
            raise AccessConflictError(
                "username", f"username: {leaving!r} is the last enabled admin"
            )

    def delete(self, username: str) -> User:
        with self.file.changing() as doc:
            users = doc.setdefault("users", {})
            item = users.get(username)
            if item is None:
                raise AccessNotFoundError("username", f"username: no user {username!r}")
            if _is_admin(item):
                self._keep_an_admin(users, username)
            del users[username]
        return User.of(item)

    def logged_in(self, username: str) -> None:
        with self.file.changing() as doc:
            item = doc.get("users", {}).get(username)
            if item is not None:
                item["last_login_us"] = self.clock()

    # roles --------------------------------------------------------------------------

    def put_role(
        self,
        name: str,
        permissions: list[str],
        description: str,
        scope: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Create or replace a custom role; returns the role before (None: new)."""
        if name in BUILTIN_ROLES:
            raise AccessConflictError("name", f"name: {name!r} is a built-in role")
        with self.file.changing() as doc:
            roles = doc.setdefault("roles", {})
            before = roles.get(name)
            roles[name] = {
                "permissions": sorted(set(permissions)),
                "description": description,
                "scope": scope,
            }
        return before

    def delete_role(self, name: str, *, used_by_keys: Callable[[str], bool]) -> dict[str, Any]:
        if name in BUILTIN_ROLES:
            raise AccessConflictError("name", f"name: {name!r} is a built-in role")
        with self.file.changing() as doc:
            roles = doc.setdefault("roles", {})
            if name not in roles:
                raise AccessNotFoundError("name", f"name: no role {name!r}")
            users = [n for n, u in doc.get("users", {}).items() if name in u["roles"]]
            if users or used_by_keys(name):
                holders = ", ".join(users) or "API keys"
                raise AccessConflictError("name", f"name: role {name!r} is in use ({holders})")
            return dict(roles.pop(name))
