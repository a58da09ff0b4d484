"""Small formatting and linking helpers shared by the console's pages (no NiceGUI)."""

from __future__ import annotations

from urllib.parse import urlsplit

#: the paths of the registered pages (filled by the shell at install)
REGISTERED: set[str] = set()


def registered_link(target: str | None) -> str | None:
    """``target`` when its page is registered (a link to a page not built yet would
    land on the API's 404), else None."""
    if target is None:
        return None
    return target if urlsplit(target).path in REGISTERED else None


def human_bytes(n: float) -> str:
    """``n`` bytes as B, KiB, MiB, GiB or TiB with one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"
