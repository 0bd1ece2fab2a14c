"""The whole pipeline over real HTTP (fake CoinGecko) into SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sqlalchemy import inspect, text

from pipeline import bronze
from pipeline.db import make_engine
from pipeline.errors import PipelineError, SourceError
from pipeline.flow import prepare_database, replay, run_pipeline
from pipeline.gold import build_gold
from pipeline.schema import SCHEMA_VERSION, metadata
from tests.fakes.coingecko import load_fixture

GLOBAL_2022 = load_fixture("global/global_2022-10-16_mrmendoza-dev-cryptotracker.json")["data"]


def read(settings, sql: str, **params) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def table_rows(settings, table: str, order: str) -> list[tuple]:
    """A whole table as comparable tuples (timestamps normalised to text)."""
    frame = read(settings, f"SELECT * FROM {table} ORDER BY {order}")
    for column in frame.columns:
        if "_at" in column or column in ("last_updated",):
            frame[column] = pd.to_datetime(frame[column]).astype(str)
    # Sums of floats may differ in the last bit with aggregation order: compare 12 significant digits.
    return [
        tuple(None if pd.isna(v) else float(f"{v:.12g}") if isinstance(v, float) else v for v in row)
        for row in frame.itertuples(index=False)
    ]


def test_run_builds_every_layer(settings, fake_coingecko):
    result = run_pipeline(settings, source="api", top_n=250)

    assert result.status == "success"
    assert fake_coingecko.calls_to("markets") == 1 and fake_coingecko.calls_to("global") == 1
    tables = set(inspect(make_engine(settings.database_url)).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= tables

    silver = read(settings, "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM staging_crypto_market")
    assert silver.n[0] == 250 and silver.ids[0] == 250
    mart = read(settings, "SELECT * FROM crypto_analytics_mart ORDER BY market_cap_rank")
    assert len(mart) == 250
    # The recorded /global is 5.5 h older than these coins (PIPELINE_GLOBAL_MAX_AGE_MINUTES = 30): not used.
    assert set(mart.dominance_basis) == {"top_n"}
    assert mart.sparkline_7d.notna().sum() >= 245
    assert len(json.loads(mart.sparkline_7d[0])) > 100
    segments = read(settings, "SELECT * FROM market_segment_analysis")
    assert set(segments.market_cap_category) == {"large_cap", "mid_cap", "small_cap", "micro_cap"}
    assert segments.coin_count.sum() == 250
    assert segments.market_cap_share_pct.sum() == pytest.approx(100.0)
    history = read(settings, "SELECT * FROM market_history")
    assert len(history) == 1

    run = read(settings, "SELECT * FROM pipeline_runs WHERE run_id = :r", r=result.run_id).iloc[0]
    assert (run.status, run.trigger, run.source) == ("success", "cli", "api")
    assert run.silver_rows == 250 and run.gold_rows == 250 + 4 + 1 and run.quarantined_count == 0

    folder = bronze.find_run(settings.raw_dir, result.run_id).folder
    assert folder.parent.name == result.snapshot_at.strftime("%Y-%m-%d")
    assert {p.suffix for p in folder.iterdir()} == {".json", ".parquet"}


def test_dominance_matches_coingecko_global(settings):
    # The recorded /global is 5.5 h older than the coins: allowed here by a 6 h maximum age.
    run_pipeline(settings.with_overrides(global_max_age_minutes=360), source="api")
    mart = read(
        settings, "SELECT id, market_dominance_pct FROM crypto_analytics_mart WHERE id IN ('bitcoin', 'ethereum')"
    )
    dominance = dict(zip(mart.id, mart.market_dominance_pct))
    # The recorded /global is 5.5 h older than the coins' prices: within 0.15 points.
    assert dominance["bitcoin"] == pytest.approx(GLOBAL_2022["market_cap_percentage"]["btc"], abs=0.15)
    assert dominance["ethereum"] == pytest.approx(GLOBAL_2022["market_cap_percentage"]["eth"], abs=0.15)
    history = read(settings, "SELECT * FROM market_history").iloc[0]
    assert history.btc_dominance_pct == pytest.approx(dominance["bitcoin"])
    assert history.total_market_cap == pytest.approx(GLOBAL_2022["total_market_cap"]["usd"])
    total = history.btc_dominance_pct + history.eth_dominance_pct + history.stablecoin_dominance_pct
    assert history.others_dominance_pct == pytest.approx(100 - total)
    assert 10 < history.stablecoin_dominance_pct < 20  # USDT 7.2 %, USDC 4.7 %, BUSD, DAI, ...


def test_global_unavailable_falls_back_to_tracked_coins(settings, fake_coingecko):
    fake_coingecko.set_global(None)  # /global answers 500 every time
    result = run_pipeline(settings, source="api")
    assert not result.global_basis
    mart = read(settings, "SELECT id, dominance_basis, market_dominance_pct FROM crypto_analytics_mart")
    assert set(mart.dominance_basis) == {"top_n"}
    # Shares of the top-N total, which leaves out derivative tokens (wrapped, liquid staking, bridged).
    derivatives = set(
        read(
            settings, "SELECT id FROM ref_coin_classes WHERE coin_class IN ('wrapped', 'liquid_staking', 'bridged')"
        ).id
    )
    assert mart[~mart.id.isin(derivatives)].market_dominance_pct.sum() == pytest.approx(100.0)


def test_paging_and_duplicate_ids_across_pages(settings, fake_coingecko):
    fake_coingecko.add_fault("duplicate_ids", page=2)
    settings = settings.with_overrides(top_n=250)
    run_pipeline(settings, source="api", top_n=200)  # 200 → one page of 200
    assert fake_coingecko.calls_to("markets") == 1

    fake_coingecko.clear_requests()
    from pipeline.providers.coingecko import settings as cg_settings

    original = cg_settings.MAX_PER_PAGE
    try:
        cg_settings.MAX_PER_PAGE = 100
        import pipeline.providers.coingecko as cg

        cg.MAX_PER_PAGE = 100
        result = run_pipeline(settings, source="api", top_n=250)
    finally:
        cg_settings.MAX_PER_PAGE = original
        cg.MAX_PER_PAGE = original
    assert fake_coingecko.calls_to("markets") == 3
    assert result.duplicates_dropped == 2
    latest = read(
        settings,
        "SELECT id FROM staging_crypto_market WHERE snapshot_at = (SELECT MAX(snapshot_at) FROM staging_crypto_market)",
    )
    assert len(latest) == 250 and latest.id.is_unique


def test_bad_records_are_quarantined_not_fatal(settings, fake_coingecko):
    fake_coingecko.add_fault("missing_fields")
    fake_coingecko.add_fault("numbers_as_strings")  # queued for the next run
    result = run_pipeline(settings, source="api")
    quarantine = read(settings, "SELECT * FROM quarantine_crypto_market WHERE run_id = :r", r=result.run_id)
    assert list(quarantine.reason) == ["missing id"]
    assert json.loads(quarantine.raw_record[0])["symbol"] == "btc"
    # The 2nd record lost current_price and market_cap: kept, with NULLs, not zeros.
    eth = read(
        settings,
        "SELECT current_price, market_cap, market_cap_category, market_dominance_pct "
        "FROM crypto_analytics_mart WHERE id = 'ethereum'",
    ).iloc[0]
    assert pd.isna(eth.current_price) and pd.isna(eth.market_cap) and pd.isna(eth.market_dominance_pct)
    assert eth.market_cap_category == "unknown"
    assert result.silver_rows == 249 and result.quarantined == 1

    second = run_pipeline(settings, source="api")
    quarantine = read(
        settings, "SELECT record_id, reason FROM quarantine_crypto_market WHERE run_id = :r", r=second.run_id
    )
    assert list(quarantine.reason) == ["non-numeric total_volume: 'n/a'"]
    # Numbers sent as strings are still numbers.
    btc = read(settings, "SELECT current_price FROM crypto_analytics_mart WHERE id = 'bitcoin'").iloc[0]
    assert btc.current_price == pytest.approx(19163.45)
    runs = read(settings, "SELECT quarantined_count FROM pipeline_runs WHERE run_id = :r", r=second.run_id)
    assert runs.quarantined_count[0] == 1


def test_failed_fetch_keeps_previous_gold(settings, fake_coingecko):
    first = run_pipeline(settings, source="api")
    before = table_rows(settings, "crypto_analytics_mart", "id")
    fake_coingecko.add_fault("503", times=10)
    with pytest.raises(SourceError, match="503"):
        run_pipeline(settings, source="api")
    assert table_rows(settings, "crypto_analytics_mart", "id") == before
    runs = read(settings, "SELECT run_id, status, stage, error_message FROM pipeline_runs ORDER BY started_at")
    assert list(runs.status) == ["success", "failed"]
    assert runs.stage[1] == "fetch" and "503" in runs.error_message[1]
    # The failed run's answers are kept in bronze, marked incomplete, and never replayed.
    failed = bronze.find_run(settings.raw_dir, runs.run_id[1])
    assert failed.manifest["complete"] is False
    assert [r.run_id for r in bronze.list_runs(settings.raw_dir)] == [first.run_id]


def test_truncated_body_is_retried(settings, fake_coingecko):
    fake_coingecko.add_fault("truncated")
    result = run_pipeline(settings, source="api")
    assert result.silver_rows == 250
    entries = bronze.find_run(settings.raw_dir, result.run_id).manifest["entries"]
    markets = [e for e in entries if e["endpoint"] == "markets"]
    assert [(e["attempt"], e["used"]) for e in markets] == [(1, False), (2, True)]


def test_run_then_replay_gives_identical_silver_and_gold(settings, fake_coingecko):
    run_pipeline(settings, source="sample")
    fake_coingecko.set_markets(
        load_fixture("markets/markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json")
    )
    fake_coingecko.add_fault("nulls")
    run_pipeline(settings, source="api")
    snapshot = {
        "staging_crypto_market": table_rows(settings, "staging_crypto_market", "id, snapshot_at"),
        "quarantine_crypto_market": table_rows(settings, "quarantine_crypto_market", "run_id, record_index"),
        "crypto_analytics_mart": table_rows(settings, "crypto_analytics_mart", "id"),
        "market_segment_analysis": table_rows(settings, "market_segment_analysis", "market_cap_category"),
        "market_history": table_rows(settings, "market_history", "snapshot_at"),
    }
    assert len(snapshot["market_history"]) == 2
    for _ in range(2):
        replay(settings)
        for table, rows in snapshot.items():
            assert (
                table_rows(
                    settings,
                    table,
                    {
                        "staging_crypto_market": "id, snapshot_at",
                        "quarantine_crypto_market": "run_id, record_index",
                        "crypto_analytics_mart": "id",
                        "market_segment_analysis": "market_cap_category",
                        "market_history": "snapshot_at",
                    }[table],
                )
                == rows
            ), table
    sources = read(settings, "SELECT source, COUNT(*) AS n FROM pipeline_runs GROUP BY source ORDER BY source")
    assert dict(zip(sources.source, sources.n)) == {"api": 1, "replay": 2, "sample": 1}


def test_replay_into_an_empty_database_rebuilds_everything(settings, tmp_path):
    run_pipeline(settings, source="sample")
    gold = table_rows(settings, "crypto_analytics_mart", "id")
    fresh = settings.with_overrides(database_url=f"sqlite:///{tmp_path / 'rebuilt.db'}")
    replay(fresh)
    assert table_rows(fresh, "crypto_analytics_mart", "id") == gold


def test_replay_without_bronze_says_so(settings):
    with pytest.raises(PipelineError, match="nothing to replay"):
        replay(settings)


def test_sample_is_marked_as_sample_everywhere(settings):
    result = run_pipeline(settings, source="sample")
    assert read(settings, "SELECT DISTINCT source FROM crypto_analytics_mart").source.tolist() == ["sample"]
    assert read(settings, "SELECT DISTINCT source FROM market_history").source.tolist() == ["sample"]
    assert bronze.find_run(settings.raw_dir, result.run_id).source == "sample"
    assert str(result.snapshot_at) == "2022-10-16 09:28:53"


def test_failed_gold_build_leaves_previous_gold_readable(settings, tmp_path):
    run_pipeline(settings, source="sample")
    before = {
        t: table_rows(settings, t, o)
        for t, o in [
            ("crypto_analytics_mart", "id"),
            ("market_segment_analysis", "market_cap_category"),
            ("market_history", "snapshot_at"),
        ]
    }
    broken = tmp_path / "gold"
    broken.mkdir()
    from pipeline.gold import GOLD_SQL_DIR

    for path in [*GOLD_SQL_DIR.glob("*.sql"), *GOLD_SQL_DIR.glob("*.yml")]:
        (broken / path.name).write_text(path.read_text())
    # The mart and segments rebuild fine; history fails: all three must roll back.
    (broken / "market_history.sql").write_text("select * from no_such_table")
    with pytest.raises(Exception, match="no_such_table"):
        build_gold(make_engine(settings.database_url), sql_dir=broken)
    for table, rows in before.items():
        assert (
            table_rows(
                settings,
                table,
                {
                    "crypto_analytics_mart": "id",
                    "market_segment_analysis": "market_cap_category",
                    "market_history": "snapshot_at",
                }[table],
            )
            == rows
        )


def test_schema_creation_is_idempotent(settings):
    engine = prepare_database(settings)
    prepare_database(settings)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version FROM schema_version")).scalars().all()
        stablecoins = conn.execute(text("SELECT COUNT(*) FROM ref_stablecoins")).scalar()
    assert versions == [SCHEMA_VERSION]
    assert stablecoins > 20


def test_micro_cap_prices_survive_the_round_trip(settings, fake_coingecko):
    records = load_fixture("markets/markets_250_sparkline_pct1h24h7d_2022-10-16_mrmendoza-dev-cryptotracker.json")[:3]
    records[2]["current_price"] = 7.8666533e-10
    records[2]["market_cap_rank"] = None
    fake_coingecko.set_markets(records)
    run_pipeline(settings, source="api")
    row = read(
        settings, "SELECT current_price, market_cap_rank FROM staging_crypto_market WHERE id = :i", i=records[2]["id"]
    ).iloc[0]
    assert row.current_price == 7.8666533e-10
    assert pd.isna(row.market_cap_rank)


def test_incremental_history_equals_a_full_rebuild(settings, fake_coingecko):
    run_pipeline(settings, source="api")
    run_pipeline(settings, source="sample")  # an older snapshot arriving later
    fake_coingecko.set_markets(
        load_fixture("markets/markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json")
    )
    run_pipeline(settings, source="api")
    incremental = table_rows(settings, "market_history", "snapshot_at")
    assert len(incremental) == 3
    build_gold(make_engine(settings.database_url))
    assert table_rows(settings, "market_history", "snapshot_at") == incremental


@pytest.mark.postgres
def test_postgres_silver_is_partitioned_by_month(postgres_url, tmp_path, fake_coingecko):
    from tests.conftest import make_settings

    settings = make_settings(postgres_url, tmp_path / "data", fake_coingecko.base_url)
    run_pipeline(settings, source="sample")
    run_pipeline(settings, source="api")
    partitions = read(
        settings,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'staging_crypto_market' "
        "ORDER BY 1",
    ).relname.tolist()
    assert partitions[0] == "staging_crypto_market_2022_10"
    assert len(partitions) == 2
    counts = read(
        settings,
        "SELECT tableoid::regclass::text AS part, COUNT(*) AS n FROM staging_crypto_market GROUP BY 1 ORDER BY 1",
    )
    assert counts.n.tolist() == [250, 250]


def test_an_older_database_is_upgraded_in_place(settings):
    """A version-1 database (before the coin-history index) gains it, keeping its rows."""
    run_pipeline(settings, source="sample")
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_staging_crypto_market_coin_history"))
        conn.execute(text("DELETE FROM schema_version"))
        conn.execute(text("INSERT INTO schema_version (version, applied_at) VALUES (1, :t)"), {"t": "2026-01-01"})
    prepare_database(settings)
    indexes = {i["name"] for i in inspect(engine).get_indexes("staging_crypto_market")}
    assert "ix_staging_crypto_market_coin_history" in indexes
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars().all() == list(
            range(1, SCHEMA_VERSION + 1)
        )
        assert conn.execute(text("SELECT COUNT(*) FROM staging_crypto_market")).scalar() == 250
