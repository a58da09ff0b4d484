"""The archive's errors (drawn in :mod:`millrace.pipeline.errors`)."""

from millrace.pipeline.errors import MillraceError


class ArchiveError(MillraceError):
    """An archive file, manifest or store failed."""


class ArchiveFormatError(ArchiveError):
    """A file that is not a millrace archive, has a wrong checksum or an unknown schema."""


class ArchiveStoreError(ArchiveError):
    """The archive store could not be reached, listed or written."""
