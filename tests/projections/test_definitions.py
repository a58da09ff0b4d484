"""``projections.definitions``: the one reader of ``millrace.resource_defs`` (chDB)."""

from __future__ import annotations

import logging

import pytest

from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.projections.definitions import definition_map, definitions
from millrace.projections.store.chdb import ChdbStore

ROWS = """INSERT INTO millrace.resource_defs
    (name, version, present, definition, updated_us, updated_by) VALUES
    ('temp', 1, 1, '{"format": "number", "unit": "degC"}', 10, 'admin'),
    ('temp', 2, 1, '{"format": "number", "unit": "K"}', 20, 'ops'),
    ('gone', 1, 1, '{"format": "string"}', 10, 'admin'),
    ('gone', 2, 0, '', 30, 'admin'),
    ('broken', 1, 1, '{"format": "no-such-format"}', 10, 'admin')"""


def test_present_definitions_newest_version_unreadable_skipped(
    store: ChdbStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.execute(ROWS)
    with caplog.at_level(logging.WARNING, logger="millrace.projections"):
        got = definitions(store)
    assert got == {
        "temp": {
            "definition": ResourceDefinition(format="number", unit="K"),
            "updated_us": 20,
            "updated_by": "ops",
        }
    }
    assert "'broken'" in caplog.text
    assert definition_map(store) == {"temp": ResourceDefinition(format="number", unit="K")}
