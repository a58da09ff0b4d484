"""The restore's errors (in the tree of ``pipeline.errors``)."""

from __future__ import annotations

from millrace.pipeline.errors import MillraceError


class RestoreError(MillraceError):
    """A restore cannot run as asked (bad parameters, no archive store); the message
    starts with the offending field (``urls[2]: …``)."""


class RestoreForbiddenError(RestoreError):
    """A URL outside the configured allow-list, or credentials its prefix does not
    declare (403)."""
