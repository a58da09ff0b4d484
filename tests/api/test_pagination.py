"""``api.pagination.page_meta``: the one ``meta.pagination`` of the numbered lists."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from millrace.api.pagination import page_meta


def test_known_pages() -> None:
    assert page_meta(1, 10, 10, 25) == {
        "page": 1,
        "limit": 10,
        "rows_in_page": 10,
        "next_page": 2,
        "total_rows": 25,
        "total_pages": 3,
    }
    assert page_meta(3, 10, 5, 25)["next_page"] is None
    # without a total: a full page may have more, a short one is the last
    assert page_meta(2, 10, 10) == {"page": 2, "limit": 10, "rows_in_page": 10, "next_page": 3}
    assert page_meta(2, 10, 9)["next_page"] is None
    # the caller knows better (one row fetched beyond the page); a token-paged list
    assert page_meta(1, 10, 10, 10, more=True)["next_page"] == 2
    assert page_meta(None, 10, 10, 30, more=True)["next_page"] is None


@given(st.integers(1, 50), st.integers(1, 20), st.integers(0, 500))
def test_pages_cover_the_total_once(limit: int, page: int, total: int) -> None:
    rows = max(0, min(limit, total - (page - 1) * limit))
    meta = page_meta(page, limit, rows, total)
    pages = -(-total // limit)
    assert meta["total_pages"] == pages
    assert (meta["next_page"] is not None) == (page < pages)
