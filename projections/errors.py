"""Errors of the projections' read side."""

from __future__ import annotations

from millrace.pipeline.errors import MillraceError


class QueryError(MillraceError, ValueError):
    """A registry query that cannot run as asked; ``field`` names the request field
    (``status``, ``identity``, ``order``, ``tags``, ``limit``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
