"""Types, error bodies, envelopes and paging shared by every answer of the API."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")

Time = Annotated[
    str | int | float,
    Field(description="ISO-8601 (UTC); an epoch number in the unit of `epoch=` when given"),
]
#: a reading: numbers as floats (null for NaN/inf), booleans and strings as they came
Reading = bool | float | str | None
#: an aggregate field: count is an integer, min/max/sum/avg numbers, first/last readings
AggregateValue = bool | int | float | str | None


# -- errors -------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str = Field(description="stable error code, e.g. invalid_parameter, not_found")
    message: str = Field(description="what went wrong, starting with the field when one did")
    details: list[dict[str, Any]] | dict[str, Any] = Field(
        description="one entry per problem, each naming its `field` and `message`"
    )


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorInfo


ERROR_DESCRIPTIONS = {
    400: "Invalid request: the error names the field",
    401: "Missing or invalid credential",
    403: "The caller's role (or the object's status) does not allow this",
    404: "No such object (or no route for this path)",
    409: "Conflicts with the current state",
    413: "Request body too large",
    429: "Too many requests or failed attempts; try again later",
    503: "Overloaded or not available in this deployment",
}


def errors(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: the error body for each status (``descriptions`` by
    ``s404="..."`` override the generic text)."""
    return {
        s: {"model": ErrorBody, "description": descriptions.get(f"s{s}", ERROR_DESCRIPTIONS[s])}
        for s in statuses
    }


# -- envelopes and paging -----------------------------------------------------------------


class Data(BaseModel, Generic[T]):
    """``{"data": ...}``."""

    data: T


class Pagination(BaseModel):
    """``meta.pagination`` of the page/limit lists."""

    page: int | None = Field(description="1-based; null when paging by continuation token")
    limit: int
    rows_in_page: int
    next_page: int | None = Field(description="null: this is the last page")
    total_rows: int | None = Field(None, description="absent where counting is not done")
    total_pages: int | None = None


class PageMeta(BaseModel):
    pagination: Pagination


class Page(BaseModel, Generic[T]):
    """A page of a list: ``data`` and ``meta.pagination``."""

    data: list[T]
    meta: PageMeta


class CountedPage(Page[T], Generic[T]):
    total: int = Field(description="rows matching, over every page")


class NumberedPagination(BaseModel):
    """``meta.pagination`` of the resource state lists (page/items_per_page)."""

    total_pages: int
    total_rows: int
    page_number: int
    rows_in_page: int
    next_page: int | None


class NumberedPageMeta(BaseModel):
    pagination: NumberedPagination


class NumberedPage(BaseModel, Generic[T]):
    data: list[T]
    meta: NumberedPageMeta
