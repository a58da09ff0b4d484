"""Analyst SQL concurrency as configured: never more queries admitted than the analyst
sessions can run (one admitted beyond them would only wait, holding its slot)."""

from __future__ import annotations

from millrace.pipeline.cli.config import ApiConfig


def test_admitted_queries_never_exceed_the_analyst_sessions() -> None:
    assert ApiConfig().sql_limits()["sql_max_concurrent"] == 2
    cfg = ApiConfig(sql_max_concurrent=8, sql_sessions=3)
    assert cfg.sql_limits()["sql_max_concurrent"] == 3
    cfg = ApiConfig(sql_max_concurrent=1, sql_sessions=3)
    assert cfg.sql_limits()["sql_max_concurrent"] == 1


def test_one_key_cannot_take_every_slot_by_default() -> None:
    limits = ApiConfig().sql_limits()
    assert limits["sql_max_concurrent_per_principal"] < limits["sql_max_concurrent"]
