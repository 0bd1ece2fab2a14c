"""The checks sql/gold/*.yml declare hold on gold built from real recorded CoinGecko bodies, on
SQLite and PostgreSQL, and a deliberately broken row makes exactly the named check fail."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from pipeline.db import make_engine
from pipeline.flow import run_pipeline
from pipeline.gold import build_gold
from pipeline.gold_catalog import compile_checks, failures, load_catalog, run_checks
from tests.fakes.coingecko import load_fixture

MARKETS_2024 = "markets/markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json"
BASIS_NOTE = (
    "expression((dominance_basis = 'global' and basis_note is null) or "
    "(dominance_basis = 'top_n' and basis_note is not null))"
)


def declared_labels() -> set[str]:
    return {check.label for model in load_catalog().values() for check in compile_checks(model)}


def test_every_declared_check_passes_after_every_build(settings, fake_coingecko, gold_checks_after_every_build):
    builds = gold_checks_after_every_build  # filled by the autouse hook of tests/integration/conftest.py
    settings = settings.with_overrides(classes_refresh_hours=24)  # stablecoins and derivatives from categories
    # 2022-10-16 with its /global allowed (global basis), the older sample snapshot arriving later
    # (top_n, an incremental history build in the past), then 2024-12-19 (top_n, the newest).
    assert run_pipeline(settings.with_overrides(global_max_age_minutes=360), source="api").status == "success"
    assert run_pipeline(settings, source="sample").status == "success"
    fake_coingecko.set_markets(load_fixture(MARKETS_2024))
    assert run_pipeline(settings, source="api").status == "success"
    engine = make_engine(settings.database_url)
    build_gold(engine)  # and a full rebuild, as replay and prune do

    assert len(builds) == 4
    for results in builds:
        assert {result.check.label for result in results} == declared_labels()
        assert failures(results) == []
    with engine.connect() as conn:
        bases = set(conn.execute(text("SELECT dominance_basis FROM market_history")).scalars())
        assert bases == {"global", "top_n"}  # both branches of the basis checks met real rows
        assert failures(run_checks(conn, load_catalog())) == []  # and the committed gold passes too


def copy_without_constraints(table: str) -> list[str]:
    """The table re-created without its primary key and NOT NULLs, so the checks, not the
    database, must catch a duplicate or a NULL (as they would on gold made from older DDL)."""
    return [
        f"ALTER TABLE {table} RENAME TO {table}_kept",
        f"CREATE TABLE {table} AS SELECT * FROM {table}_kept",
    ]


BROKEN = {
    "duplicate history point": (
        [*copy_without_constraints("market_history"), "INSERT INTO market_history SELECT * FROM market_history_kept"],
        {"market_history: unique(snapshot_at)": 2},
    ),
    "history point without a source": (
        [*copy_without_constraints("market_history"), "UPDATE market_history SET source = NULL"],
        {"market_history: not_null(source)": 1},
    ),
    "unknown dominance basis": (
        ["UPDATE crypto_analytics_mart SET dominance_basis = 'whole_market' WHERE id = 'bitcoin'"],
        {
            "crypto_analytics_mart: accepted_values(dominance_basis: global, top_n)": 1,
            f"crypto_analytics_mart: {BASIS_NOTE}": 1,
        },
    ),
    "a share above 100 %": (
        ["UPDATE crypto_analytics_mart SET market_dominance_pct = 100.5 WHERE id = 'bitcoin'"],
        {"crypto_analytics_mart: range(market_dominance_pct: 0..100)": 1},
    ),
    "a segment the mart does not have": (
        ["DELETE FROM crypto_analytics_mart WHERE market_cap_category = 'large_cap'"],
        {"market_segment_analysis: relationships(market_cap_category -> crypto_analytics_mart.market_cap_category)": 1},
    ),
    "more gainers than coins": (
        ["UPDATE market_segment_analysis SET gainers_count = coin_count + 1 WHERE market_cap_category = 'mid_cap'"],
        {"market_segment_analysis: expression(gainers_count + losers_count <= coin_count)": 1},
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_row_fails_the_named_check(settings, case):
    statements, expected = BROKEN[case]
    run_pipeline(settings, source="sample")
    with make_engine(settings.database_url).connect() as conn, conn.begin() as transaction:
        for statement in statements:
            conn.execute(text(statement))
        results = run_checks(conn, load_catalog())
        transaction.rollback()
    failed = {result.check.label: result for result in results if not result.passed}
    assert {label: result.failing_rows for label, result in failed.items()} == expected
    for label, result in failed.items():
        message = result.message()
        assert message.startswith(f"{label} failed on {expected[label]} row(s); rows counted by: SELECT ")
        assert result.check.sql in message
