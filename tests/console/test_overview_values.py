"""The overview's figures computed from the API's answers (no browser)."""

from __future__ import annotations

from millrace.api.console.pages.overview import disk_used


def test_disk_use_is_the_data_directory_not_data_plus_log() -> None:
    # /system/info: data_bytes counts the whole data directory, log/ included
    assert disk_used({"disk": {"data_bytes": 5000, "log_bytes": 3000}}) == 5000
    assert disk_used({"disk": None}) == 0
    assert disk_used({}) == 0
