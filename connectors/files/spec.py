"""The ``files`` protocol as the commissioning file sees it: models, template, checks.

Imports only the models and the pure CSV helpers; the connector is loaded lazily.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from millrace.connectors._common.models import MappingConfig, Violation
from millrace.connectors.commissioning import json_path
from millrace.connectors.registry import ProtocolSpec

from .config import EPOCH_FORMATS, FilesConnection, FilesEndpoint
from .csvparse import check_timestamp_format


def _ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check(
    name: str,
    connection: Any,
    endpoints: Sequence[tuple[int, Any]],
    mappings: Sequence[tuple[int, MappingConfig]],
) -> list[Violation]:
    """What the models cannot see: the directory, zone, format and column references."""
    out: list[Violation] = []
    c: FilesConnection = connection
    o = c.csv

    def add(
        level: Literal["error", "warning"],
        loc: tuple[int | str, ...],
        desc: str,
        base: str | None = None,
    ) -> None:
        path = json_path(loc, base) if base else json_path(("connections", name, *loc))
        out.append(Violation(level=level, json_path=path, description=desc))

    d = Path(c.directory)
    if not d.exists():
        a = _ancestor(d)
        if a.is_dir() and os.access(a, os.W_OK | os.X_OK):
            add("warning", ("directory",), f"{d} does not exist here (yet); it is waited for")
        else:
            add("warning", ("directory",), f"{d} does not exist and cannot be created here")
    elif not d.is_dir():
        add("warning", ("directory",), f"{d} is not a directory here")
    if c.after == "move" and Path(os.path.abspath(c.done_path())) == Path(os.path.abspath(d)):
        add("error", ("done_directory",), "must differ from directory")
    if c.done_directory is not None and c.after != "move":
        add("warning", ("done_directory",), "only used with after: move")

    try:
        ZoneInfo(o.timezone)
    except (KeyError, ValueError, OSError):
        add("error", ("csv", "timezone"), f"unknown time zone {o.timezone!r} (IANA name)")
    try:
        codecs.lookup(o.encoding)
    except LookupError:
        add("error", ("csv", "encoding"), f"unknown encoding {o.encoding!r}")
    if (why := check_timestamp_format(o.timestamp_format)) is not None:
        add("error", ("csv", "timestamp_format"), why)
    elif o.timestamp_format in EPOCH_FORMATS and len(o.timestamp) > 1:
        add("error", ("csv", "timestamp"), "an epoch time is one column")
    if o.separator == o.quotechar:
        add("error", ("csv", "quotechar"), "must differ from separator")

    if o.identity is not None and o.identity_column is not None:
        add("error", ("csv", "identity_column"), "give identity or identity_column, not both")
    if not endpoints and o.identity is None and o.identity_column is None:
        add(
            "error",
            ("csv", "identity"),
            "without endpoints, csv.identity or csv.identity_column names the device",
        )
    if endpoints and o.identity is not None:
        add("warning", ("csv", "identity"), "not used: each endpoint names its identity")
    if endpoints and o.value_columns is not None:
        add("warning", ("csv", "value_columns"), "not used when endpoints are given")

    # column references
    def no_header(ref: Any, loc: tuple[int | str, ...], base: str | None = None) -> None:
        if o.header is False and isinstance(ref, str):
            add("error", loc, "a column name needs a header row; use a 0-based position", base)

    special: dict[str | int, str] = {}
    for i, ref in enumerate(o.timestamp):
        no_header(ref, ("csv", "timestamp", i))
        if ref in special:
            add("error", ("csv", "timestamp", i), "the same column twice")
        special[ref] = "the timestamp column"
    if o.identity_column is not None:
        no_header(o.identity_column, ("csv", "identity_column"))
        if o.identity_column in special:
            add("error", ("csv", "identity_column"), "is also a timestamp column")
        special.setdefault(o.identity_column, "the identity column")
    for i, ref in enumerate(o.value_columns or []):
        no_header(ref, ("csv", "value_columns", i))
        if ref in special:
            add("error", ("csv", "value_columns", i), f"is {special[ref]}")

    for i, ep in endpoints:
        base = f"$.endpoints[{i}]"
        field = "column" if ep.column is not None else "signal"
        ref = ep.column_ref()
        no_header(ref, (field,), base)
        if ref in special:
            add("error", (field,), f"column {ref!r} is {special[ref]}", base)
        if ep.writable:
            add("error", ("writable",), "files connections cannot write", base)
        if "interval_ms" in ep.model_fields_set:
            add(
                "warning",
                ("interval_ms",),
                "not used: rows carry their own time; the directory is scanned every poll_ms",
                base,
            )
    for i, m in mappings:
        if m.topic is not None:
            add(
                "error", ("topic",), "payload mappings are for MQTT connections", f"$.mappings[{i}]"
            )
    return out


SPEC = ProtocolSpec(
    name="files",
    connection_model=FilesConnection,
    endpoint_model=FilesEndpoint,
    connector_path="millrace.connectors.files.connector:FilesConnector",
    check=check,
)
