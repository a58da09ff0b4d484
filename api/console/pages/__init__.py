"""The console's pages: one module each, registered in :data:`PAGES` (navigation order).

A page is a :class:`Page`: its path, title, the permissions it needs to be shown at all,
and an async ``build(ctx)`` that draws its content inside the shared layout. Adding a
page is one module and one line here (see /work/helpers/console_pages.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from millrace.api.console.client import ConsoleApi
    from millrace.api.console.session import Session


@dataclass
class PageContext:
    """What a page's ``build`` gets: the tab's API client and session."""

    api: ConsoleApi
    session: Session
    #: query parameters of the page's URL (filters links from other pages carry)
    query: dict[str, str] = field(default_factory=dict)

    def can(self, *needed: str) -> bool:
        """Whether the signed-in caller holds every permission in ``needed``: offer a
        write only when this holds (the API refuses it anyway when not)."""
        return self.session.can(*needed)


@dataclass(frozen=True)
class Page:
    """A console page at ``path``, shown in the navigation to callers holding ``needs``."""

    path: str
    title: str
    icon: str
    needs: tuple[str, ...]
    build: Callable[[PageContext], Awaitable[None]]


#: the console's pages in navigation order: module -> path. The paths are known without
#: importing a page (NiceGUI loads on the console's first request: mount.py)
NAVIGATION: dict[str, str] = {
    "overview": "/",
    "live": "/live",
    "explorer": "/explorer",
    "alarms": "/alarms",
    "activities": "/activities",
    "identities": "/identities",
    "services": "/services",
    "sql": "/sql",
    "archive": "/archive",
    "users": "/users",
    "system": "/system",
}
#: the sign-in page
SIGN_IN = "/login"


def path_of(module: str) -> str:
    """The path of the page defined in ``module`` (its ``__name__``)."""
    return NAVIGATION[module.rpartition(".")[2]]


def paths() -> frozenset[str]:
    """Every path the console serves (its pages and the sign-in)."""
    return frozenset([SIGN_IN, *NAVIGATION.values()])


def pages() -> list[Page]:
    """Every page, in navigation order (imported here, on first use: NiceGUI loads only
    when the console is first asked for)."""
    return [import_module(f"{__name__}.{name}").PAGE for name in NAVIGATION]
