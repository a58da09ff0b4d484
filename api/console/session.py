"""Who is signed in to a browser: the token the console sends to the API and the
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
    """A signed-in browser: ``token`` is a user's access token (with ``refresh_token``) or an
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
