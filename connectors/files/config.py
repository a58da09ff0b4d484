"""Models of the ``files`` protocol: a directory where a plant drops CSV files.

Only pydantic and the standard library are imported here, so that validating a
commissioning file never loads the connector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from millrace.connectors._common.models import ConnectionBase, DataType, EndpointBase, Strict

#: a CSV column: its header name, or its 0-based position (the only way without a header)
ColumnRef = str | Annotated[int, Field(ge=0)]

#: names that are never read, whatever ``include`` says: files still being written
DEFAULT_TEMP_PATTERNS = ["*.tmp", "*.temp", "*.part", "*.partial", "*.crdownload", ".*", "~*"]

EPOCH_FORMATS = ("epoch_s", "epoch_ms", "epoch_us")


class CsvOptions(Strict):
    """How the rows of a file become readings."""

    separator: str = Field(
        ",", min_length=1, max_length=1, description='Field separator; "\\t" for tabs.'
    )
    quotechar: str = Field('"', min_length=1, max_length=1)
    encoding: str = Field(
        "utf-8-sig",
        description="Text encoding (Python codec name). utf-8-sig also reads files with a "
        "byte-order mark, as Excel writes them.",
    )
    skip_rows: int = Field(
        0, ge=0, description="Lines skipped at the start of every file (a preamble)."
    )
    header: bool | Annotated[int, Field(ge=0)] = Field(
        True,
        description="true: the first row after skip_rows names the columns; an integer n: "
        "the n-th row after skip_rows does (rows before it are skipped); false: no header, "
        "columns are referenced by 0-based position.",
    )
    skip_after_header: int = Field(
        0, ge=0, description="Lines between the header and the data (units, ...)."
    )
    timestamp: list[ColumnRef] = Field(
        default_factory=lambda: list[ColumnRef](["timestamp"]),
        min_length=1,
        max_length=2,
        description="The column holding each row's time, or [date column, time column] "
        "(joined with one space before parsing).",
    )
    timestamp_format: str = Field(
        "iso8601",
        description="iso8601, epoch_s, epoch_ms, epoch_us, or a strptime format such as "
        '"%d.%m.%Y %H:%M:%S".',
    )
    timezone: str = Field(
        "UTC",
        description="IANA zone (Europe/Berlin) of times written without a UTC offset.",
    )
    identity: str | None = Field(
        None, min_length=1, max_length=256, description="Identity of every row (a literal)."
    )
    identity_column: ColumnRef | None = Field(
        None, description="Column holding each row's identity (long-format files)."
    )
    value_columns: list[ColumnRef] | None = Field(
        None,
        description="Columns read when no endpoints are given; default: every column that "
        "is neither a timestamp nor the identity column.",
    )
    value_type: DataType = Field(
        "float64",
        description="Type of the value columns when no endpoints are given; auto keeps "
        "text that is not a number as a string.",
    )
    decimal_comma: bool = Field(
        False, description='Numbers are written "12,5"; a "." in a number is then an error.'
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _one_column(cls, v: Any) -> Any:
        return [v] if isinstance(v, str | int) and not isinstance(v, bool) else v


class FilesConnection(ConnectionBase):
    """A drop directory polled for complete CSV files."""

    protocol: Literal["files"]
    directory: str = Field(min_length=1, description="Directory the files are dropped in.")
    include: list[str] = Field(
        default_factory=lambda: ["*.csv"],
        min_length=1,
        description="Glob patterns of files to read (a pattern with '/' is matched "
        "against the path relative to the directory, others against the file name).",
    )
    exclude: list[str] = Field(default_factory=list, description="Glob patterns never read.")
    temp_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TEMP_PATTERNS),
        description="Names of files still being written (write-then-rename writers); never read.",
    )
    recursive: bool = Field(False, description="Also read files in subdirectories.")
    order: Literal["name", "mtime"] = Field(
        "name", description="Order in which complete files are read."
    )
    poll_ms: int = Field(1000, ge=10, le=3_600_000, description="Directory scan interval.")
    settle_ms: int = Field(
        2000,
        ge=0,
        le=86_400_000,
        description="A file is read once its size and modification time have not changed "
        "for this long (a writer may still be appending).",
    )
    after: Literal["mark", "delete", "move"] = Field(
        "mark",
        description="What happens to a file once read: mark (kept, remembered in the "
        "ledger), delete, or move to done_directory.",
    )
    done_directory: str | None = Field(
        None, description="Where `after: move` puts read files; default <directory>/done."
    )
    state_dir: str | None = Field(
        None,
        description="Where the ledger of read files is kept; default <directory>/.millrace.",
    )
    only_newer: bool = Field(
        False,
        description="Drop a reading whose time is not after the last one read for its "
        "identity/signal (also across restarts): for exports that repeat earlier rows.",
    )
    csv: CsvOptions = Field(default_factory=CsvOptions)

    def directory_path(self) -> Path:
        return Path(self.directory)

    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else Path(self.directory) / ".millrace"

    def done_path(self) -> Path:
        return Path(self.done_directory) if self.done_directory else Path(self.directory) / "done"


class FilesEndpoint(EndpointBase):
    """One CSV column read as a signal.

    Without ``csv.identity_column`` every row gives a reading of ``identity``/``signal``;
    with it, only rows whose identity column equals ``identity`` do. ``interval_ms`` is
    not used: files are read when they arrive (``poll_ms``) and every row carries its
    own time.
    """

    column: ColumnRef | None = Field(
        None, description="Header name or 0-based position; default: the signal name."
    )
    data_type: DataType = Field(
        "float64", description="How the text is read: numbers, bool, string or auto."
    )

    def column_ref(self) -> str | int:
        return self.signal if self.column is None else self.column
