"""A column pipeline.schema declares and the database lacks (a new derived column, say) needs no
hand-written migration: ensure_schema adds it, check_schema says the database needs an upgrade
until then. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from pipeline.db import add_missing_columns, check_schema, ensure_schema, make_engine, prepare_database
from pipeline.errors import SchemaNotReady
from pipeline.flow import run_pipeline
from pipeline.schema import SCHEMA_VERSION


def columns(engine, table: str) -> list[str]:
    return [c["name"] for c in inspect(engine).get_columns(table)]


def drop_column(engine, table: str, column: str) -> None:
    """The table as an older version of the code made it (PostgreSQL drops it from every partition too)."""
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    assert column not in columns(engine, table)


def test_a_missing_derived_column_is_added_back_and_filled(settings):
    first = run_pipeline(settings, source="api")
    engine = make_engine(settings.database_url)
    drop_column(engine, "staging_crypto_market", "distance_from_ath_pct")
    drop_column(engine, "run_requests", "message")  # an operations table follows the same rule

    with pytest.raises(SchemaNotReady) as caught:
        check_schema(engine)  # read-only: says what to do, changes nothing
    message = str(caught.value)
    assert "lacks columns run_requests.message, staging_crypto_market.distance_from_ath_pct" in message
    assert "python -m pipeline schema --apply" in message
    assert "distance_from_ath_pct" not in columns(engine, "staging_crypto_market")

    assert prepare_database(settings) is engine  # the numbered migrations have nothing to do; the column is added
    assert check_schema(engine) == SCHEMA_VERSION
    cols = columns(engine, "staging_crypto_market")
    assert cols.index("distance_from_ath_pct") == len(cols) - 1  # appended: the declared order is not needed
    assert "message" in columns(engine, "run_requests")
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            types = set(
                conn.execute(
                    text(
                        "SELECT data_type FROM information_schema.columns "
                        "WHERE table_name LIKE 'staging_crypto_market%' AND column_name = 'distance_from_ath_pct'"
                    )
                ).scalars()
            )
        assert types == {"double precision"}  # the parent and every monthly partition

    second = run_pipeline(settings, source="api")
    assert second.status == "success"
    with engine.connect() as conn:
        filled = dict(
            conn.execute(
                text(
                    "SELECT run_id, COUNT(distance_from_ath_pct) FROM staging_crypto_market "
                    "WHERE run_id IN (:a, :b) GROUP BY run_id"
                ),
                {"a": first.run_id, "b": second.run_id},
            ).all()
        )
        btc = conn.execute(
            text("SELECT distance_from_ath_pct FROM crypto_analytics_mart WHERE id = 'bitcoin'")
        ).scalar()
    assert filled[first.run_id] == 0  # rows loaded before the column existed stay NULL until replayed
    assert filled[second.run_id] > 200
    assert btc is not None and btc < 0


def test_a_current_database_gets_no_column_and_no_write(database_url):
    engine = make_engine(database_url)
    ensure_schema(engine)
    with engine.begin() as conn:
        assert add_missing_columns(conn) == []
    assert check_schema(engine) == SCHEMA_VERSION


def test_a_not_null_column_without_default_needs_a_numbered_migration(database_url):
    engine = make_engine(database_url)
    ensure_schema(engine)
    drop_column(engine, "staging_crypto_market", "market_cap_category")  # NOT NULL, no server default

    with pytest.raises(SchemaNotReady, match="lacks column staging_crypto_market.market_cap_category"):
        check_schema(engine)
    with pytest.raises(SchemaNotReady, match=r"market_cap_category .*numbered migration in pipeline\.db\.MIGRATIONS"):
        ensure_schema(engine)
    assert "market_cap_category" not in columns(engine, "staging_crypto_market")  # nothing half-done


def test_a_not_null_column_with_a_server_default_is_added(settings):
    run_pipeline(settings, source="api")
    engine = make_engine(settings.database_url)
    drop_column(engine, "staging_crypto_market", "provider")  # NOT NULL DEFAULT 'coingecko', not in the key

    ensure_schema(engine)
    assert check_schema(engine) == SCHEMA_VERSION
    with engine.connect() as conn:
        providers = conn.execute(text("SELECT DISTINCT provider FROM staging_crypto_market")).scalars().all()
    assert providers == ["coingecko"]  # the rows already there take the server default


def test_a_gold_table_missing_a_column_is_reported_then_rebuilt(settings):
    run_pipeline(settings, source="api")
    engine = make_engine(settings.database_url)
    drop_column(engine, "crypto_analytics_mart", "volume_to_mcap_ratio")

    with pytest.raises(SchemaNotReady, match="lacks column crypto_analytics_mart.volume_to_mcap_ratio"):
        check_schema(engine)
    ensure_schema(engine)  # gold is derived: re-created and rebuilt from silver, no migration
    assert check_schema(engine) == SCHEMA_VERSION
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(volume_to_mcap_ratio) FROM crypto_analytics_mart")).scalar() > 200
