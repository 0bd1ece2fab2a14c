"""A second provider plugs in by adding one folder (tests/providers/fixed_file/), on SQLite and PostgreSQL.

The fixed-file provider serves three coins in its own field names, stamped with the moment the
bundled CoinGecko sample was recorded: its rows meet CoinGecko's for the same coins and time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import inspect, text

from pipeline import bronze
from pipeline.db import make_engine, prepare_database
from pipeline.flow import replay, run_pipeline
from pipeline.providers.registry import get_provider
from pipeline.silver.load import load_coin_history

PROVIDERS = Path(__file__).resolve().parent.parent / "providers"
SAMPLE_AT = datetime(2022, 10, 16, 9, 28, 53)


def read(settings, sql: str) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(text(sql), conn)


@pytest.fixture
def fixed_file(settings, monkeypatch):
    """Settings whose live runs fetch from the test-only provider (found through PIPELINE_PROVIDER_PATH)."""
    monkeypatch.setenv("PIPELINE_PROVIDER_PATH", str(PROVIDERS))
    return settings.with_overrides(provider="fixed_file", top_n=3)


def test_a_second_provider_lands_beside_coingecko(settings, fixed_file, fake_coingecko):
    run_pipeline(settings, source="sample")  # CoinGecko's recording: 250 coins at SAMPLE_AT
    result = run_pipeline(fixed_file, source="api")

    assert result.status == "success" and fake_coingecko.calls_to("markets") == 0
    kept = bronze.find_run(settings.raw_dir, result.run_id)
    assert kept.provider == "fixed_file" and kept.source == "api"
    assert [e["file"] for e in kept.manifest["entries"]] == ["quotes_p001.json"]
    assert kept.markets_record_count == 3

    silver = read(settings, "SELECT id, snapshot_at, provider, source, current_price FROM staging_crypto_market")
    silver["snapshot_at"] = pd.to_datetime(silver.snapshot_at)
    theirs = silver[silver.provider == "fixed_file"].sort_values("id")
    ours = silver[silver.provider == "coingecko"]
    assert len(ours) == 250 and set(ours.snapshot_at) == {SAMPLE_AT} and set(ours.source) == {"sample"}
    assert theirs.id.tolist() == ["bitcoin", "ethereum", "tether"] and set(theirs.source) == {"api"}
    # Same coins, same data time: the snapshot time belongs to the first run, the second gets the next microsecond.
    assert set(theirs.snapshot_at) == {SAMPLE_AT + timedelta(microseconds=1)}
    both = silver[silver.id == "bitcoin"].set_index("provider").current_price.to_dict()
    assert both == {"coingecko": 19163.45, "fixed_file": 19163.45}

    mart = read(settings, "SELECT id, run_id FROM crypto_analytics_mart ORDER BY market_cap_rank")
    assert mart.id.tolist() == ["bitcoin", "ethereum", "tether"] and set(mart.run_id) == {result.run_id}
    history = read(settings, "SELECT snapshot_at, coin_count FROM market_history ORDER BY snapshot_at")
    assert history.coin_count.tolist() == [250, 3]

    # Bronze replays into the same silver, each run read through its own provider.
    before = read(settings, "SELECT id, snapshot_at, provider, run_id FROM staging_crypto_market ORDER BY 2, 3, 1")
    replay(fixed_file)
    after = read(settings, "SELECT id, snapshot_at, provider, run_id FROM staging_crypto_market ORDER BY 2, 3, 1")
    pd.testing.assert_frame_equal(before, after)


def test_bronze_of_a_provider_that_is_not_installed_is_skipped_not_fatal(settings, fixed_file, monkeypatch):
    run_pipeline(settings, source="sample")
    theirs = run_pipeline(fixed_file, source="api")
    # Without PIPELINE_PROVIDER_PATH the fixed-file run cannot be read: replay skips it and says why.
    monkeypatch.delenv("PIPELINE_PROVIDER_PATH")
    get_provider.cache_clear()
    result = replay(settings)
    assert result.status == "success"
    assert any(theirs.run_id in w and "'fixed_file', which is not installed" in w for w in result.warnings)


def test_two_providers_keep_their_history_points_for_the_same_coin_and_day(settings):
    engine = prepare_database(settings)
    day = datetime(2024, 1, 1)
    with engine.begin() as conn:
        load_coin_history(conn, [("bitcoin", day, "run-a", 42000.0, 8.2e11, 1e10)])
        load_coin_history(conn, [("bitcoin", day, "run-b", 42010.0, 8.2e11, 1e10)], provider="fixed_file")
        load_coin_history(conn, [("bitcoin", day, "run-c", 42001.0, 8.2e11, 1e10)])  # CoinGecko again: replaces
    rows = read(settings, "SELECT provider, run_id, price FROM staging_coin_history ORDER BY provider")
    assert rows.values.tolist() == [["coingecko", "run-c", 42001.0], ["fixed_file", "run-b", 42010.0]]


def test_a_version_5_database_gains_the_provider_columns(settings):
    """History rows kept before providers were recorded are CoinGecko's; the new key holds them."""
    engine = prepare_database(settings)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE staging_coin_history"))
        conn.execute(
            text(
                "CREATE TABLE staging_coin_history (id TEXT NOT NULL, ts TIMESTAMP NOT NULL, run_id VARCHAR(64) NOT NULL, "
                "price DOUBLE PRECISION, market_cap DOUBLE PRECISION, total_volume DOUBLE PRECISION, "
                "CONSTRAINT pk_staging_coin_history PRIMARY KEY (id, ts))"
            )
        )
        conn.execute(text("INSERT INTO staging_coin_history VALUES ('bitcoin', '2024-01-01 00:00:00', 'r1', 1, 2, 3)"))
        conn.execute(text("ALTER TABLE staging_crypto_market DROP COLUMN provider"))
        conn.execute(text("DELETE FROM schema_version"))
        conn.execute(text("INSERT INTO schema_version (version, applied_at) VALUES (5, '2026-01-01')"))
    make_engine.cache_clear()
    prepare_database(settings)
    rows = read(settings, "SELECT provider, id, run_id FROM staging_coin_history")
    assert rows.values.tolist() == [["coingecko", "bitcoin", "r1"]]
    inspector = inspect(make_engine(settings.database_url))
    assert inspector.get_pk_constraint("staging_coin_history")["constrained_columns"] == ["provider", "id", "ts"]
    assert "provider" in {c["name"] for c in inspector.get_columns("staging_crypto_market")}
    run_pipeline(settings, source="sample")
    assert set(read(settings, "SELECT DISTINCT provider FROM staging_crypto_market").provider) == {"coingecko"}
