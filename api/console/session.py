"""Who is signed in to a browser tab: the token the console sends to the API and the
permissions the API reported for it (``GET /api/v1/me``).

The permissions only decide what the console shows and offers; the API checks every
call on its own. A signed-in user's ``/me`` lists its permissions; an API key's answers
only its built-in role, whose permissions come from the API's own role table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from millrace.api.permissions import BUILTIN_ROLES


@dataclass
class Session:
    """A signed-in tab: ``token`` is a user's access token (with ``refresh_token``) or an
    API key (no refresh)."""

    token: str
    refresh_token: str | None = None
    name: str = ""
    role: str = ""
    permissions: frozenset[str] = field(default_factory=frozenset)

    def can(self, *needed: str) -> bool:
        """Whether every permission in ``needed`` is held."""
        return all(p in self.permissions for p in needed)

    def apply_me(self, me: dict[str, Any]) -> None:
        """Take name, role and permissions from a ``/me`` answer's ``data``."""
        self.name = str(me.get("username") or me.get("name") or "")
        self.role = str(me.get("role") or "")
        listed = me.get("permissions")
        if listed is not None:
            self.permissions = frozenset(str(p) for p in listed)
        else:
            self.permissions = BUILTIN_ROLES.get(self.role, frozenset())

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "refresh_token": self.refresh_token,
            "name": self.name,
            "role": self.role,
            "permissions": sorted(self.permissions),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Session:
        return cls(
            token=str(raw["token"]),
            refresh_token=raw.get("refresh_token"),
            name=str(raw.get("name", "")),
            role=str(raw.get("role", "")),
            permissions=frozenset(raw.get("permissions", ())),
        )
