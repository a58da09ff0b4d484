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


def keep_session(
    sessions: dict[str, Session],
    browser: str,
    previous: Session | None,
    current: Session | None,
    limit: int,
) -> None:
    """Record in ``sessions`` (browser id -> session, oldest first) that one tab of
    ``browser`` went from session ``previous`` to ``current``.

    A new sign-in (``current`` is a new object) replaces whatever the browser had. A
    refresh (``current is previous``) or an end (``current`` None) touches the browser's
    entry only while it still is the tab's own ``previous`` object: an old tab of a
    signed-out user (still polling) neither removes nor brings back anything once another
    user signed in to the same browser.
    """
    held = sessions.get(browser)
    if current is not None and current is not previous:
        sessions.pop(browser, None)
    elif held is None or held is not previous:
        return  # the tab's session is no longer the browser's: leave the browser's alone
    else:
        sessions.pop(browser)
    if current is not None:
        sessions[browser] = current  # the newest last: the oldest go first
        while len(sessions) > limit:
            sessions.pop(next(iter(sessions)))
