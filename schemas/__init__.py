"""The event contract: one Avro schema (``*.avsc``) per event record.

``history/`` keeps every previous version of a record as ``<RecordName>.v<N>.avsc``, so
that events written with it still decode (``pipeline.codec``). Changing a schema means
copying the old file there first; changes must stay backward compatible.
"""

from pathlib import Path

SCHEMA_DIR: Path = Path(__file__).resolve().parent
HISTORY_DIR: Path = SCHEMA_DIR / "history"

__all__ = ["HISTORY_DIR", "SCHEMA_DIR"]
