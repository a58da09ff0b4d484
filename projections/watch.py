"""Moved: the watch decisions are ``pipeline.identities.watch``, the stage
``pipeline.identities.watch_stage``, its queries and retention DDL
``projections.watch_queries``. Re-exported here until every import follows."""

from pipeline.identities.watch import WatchSettings, WatchSettingsError, reported_value
from projections.watch_queries import IdentityWatch, quote_literal, retention_sql

__all__ = [
    "IdentityWatch",
    "WatchSettings",
    "WatchSettingsError",
    "quote_literal",
    "reported_value",
    "retention_sql",
]
