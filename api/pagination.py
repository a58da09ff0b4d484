"""``meta.pagination`` of a numbered page (the one shape the page-numbered lists share).

``next_page`` is null on the last page; with a ``total`` the answer also has
``total_rows`` and ``total_pages``. Whether there is more is ``more`` when the caller
knows (a query that fetched one row beyond the page), else from ``total``, else a full
page is taken to mean there may be more. A list paged by a continuation token has no
page number (``page`` None): ``next_page`` is then null.
"""

from __future__ import annotations

from typing import Any


def page_meta(
    page: int | None,
    limit: int,
    rows: int,
    total: int | None = None,
    more: bool | None = None,
) -> dict[str, Any]:
    """The pagination of a page of ``rows`` (at most ``limit``) numbered ``page``."""
    if more is None:
        more = rows >= limit if total is None or page is None else page * limit < total
    meta: dict[str, Any] = {
        "page": page,
        "limit": limit,
        "rows_in_page": rows,
        "next_page": page + 1 if page is not None and more else None,
    }
    if total is not None:
        meta["total_rows"] = total
        meta["total_pages"] = (total + limit - 1) // limit
    return meta
