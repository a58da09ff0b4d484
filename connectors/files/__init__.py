"""CSV files dropped in a directory by a plant, read as telemetry (protocol ``files``).

The package exports the models only; the connector is in :mod:`.connector`.
"""

from .config import CsvOptions, FilesConnection, FilesEndpoint

__all__ = ["CsvOptions", "FilesConnection", "FilesEndpoint"]
