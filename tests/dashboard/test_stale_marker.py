"""Stale records (CoinGecko last updated them hours before the snapshot) are marked in the coin table."""

from __future__ import annotations

from sqlalchemy import text

from pipeline.db import make_engine


def test_the_overview_coin_table_marks_stale_records(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    with make_engine(fresh_warehouse.database_url).begin() as conn:
        conn.execute(text("UPDATE crypto_analytics_mart SET stale_record = (id = 'tether')"))
    at = open_app()
    assert not at.exception
    tables = [df.value for df in at.dataframe if "stale_record" in df.value.columns]
    assert tables, "the coin table has no stale column"
    table = tables[0]
    assert set(table.loc[table["stale_record"] == True, "name"]) == {"Tether"}  # noqa: E712


def test_movers_say_why_when_every_coin_is_stale(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    with make_engine(fresh_warehouse.database_url).begin() as conn:
        conn.execute(text("UPDATE crypto_analytics_mart SET stale_record = TRUE"))
    at = open_app()
    assert not at.exception
    assert any("marked stale" in info.value for info in at.info)
