"""Whole-market figures come from a usable /global; otherwise from the top-N coins, and gold says why.

Real recorded CoinGecko bodies (/work/shared/data/real, see PROVENANCE.md there): /global and
/coins/markets of the same day (2022-11-27 and 2023-01-08), and the offline sample (2022-10-16)
whose /global is 5.5 h older than its coins. Both databases.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sqlalchemy import inspect, text

from dashboard import charts
from pipeline.db import ensure_schema, make_engine, utcnow
from pipeline.flow import prepare_database, replay, run_pipeline
from tests.fakes.coingecko import REPO_ROOT

REAL = REPO_ROOT.parent / "shared" / "data" / "real"
DAYS = {
    "2022-11-27": (
        "markets/markets_100_sparkline_2022-11-27_mrmendoza-dev-cryptotracker.json",
        "global/global_2022-11-27_mrmendoza-dev-cryptotracker.json",
    ),
    "2023-01-08": (
        "markets/markets_2023-01-08_JKorf-CoinGecko.Net.json",
        "global/global_2023-01-08_JKorf-CoinGecko.Net.json",
    ),
}

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="the shared real recordings are not next to the repo")


def real(name: str):
    return json.loads((REAL / name).read_text())


def serve_day(fake, day: str) -> tuple[list[dict], dict]:
    markets, global_body = (real(name) for name in DAYS[day])
    fake.set_markets(markets)
    fake.set_global(global_body)
    return markets, global_body["data"]


def read(settings, sql: str, **params) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


@pytest.mark.parametrize("day", sorted(DAYS))
def test_mart_matches_coingecko_global_on_a_real_day(settings, fake_coingecko, day):
    markets, cg = serve_day(fake_coingecko, day)
    result = run_pipeline(settings, source="api", top_n=100)
    assert result.status == "success"

    mart = read(settings, "SELECT * FROM crypto_analytics_mart").set_index("id")
    assert set(mart.dominance_basis) == {"global"}
    assert mart.basis_note.isna().all()
    # CoinGecko's own dominance (market_cap_percentage, keyed by symbol) for the coins it lists.
    assert mart.loc["bitcoin", "market_dominance_pct"] == pytest.approx(cg["market_cap_percentage"]["btc"], abs=0.05)
    assert mart.loc["ethereum", "market_dominance_pct"] == pytest.approx(cg["market_cap_percentage"]["eth"], abs=0.05)
    assert mart.loc["tether", "market_dominance_pct"] == pytest.approx(cg["market_cap_percentage"]["usdt"], abs=0.05)
    # Totals of the basis are /global's, on every row.
    assert list(mart.basis_total_market_cap) == pytest.approx([cg["total_market_cap"]["usd"]] * len(mart))
    assert list(mart.basis_total_volume) == pytest.approx([cg["total_volume"]["usd"]] * len(mart))
    assert list(mart.basis_market_cap_change_percentage_24h) == pytest.approx(
        [cg["market_cap_change_percentage_24h_usd"]] * len(mart)
    )
    # A coin /global does not list: its market cap over /global's total.
    record = next(r for r in markets if r["market_cap_rank"] == 50)
    assert record["symbol"] not in cg["market_cap_percentage"]
    assert mart.loc[record["id"], "market_dominance_pct"] == pytest.approx(
        record["market_cap"] * 100 / cg["total_market_cap"]["usd"]
    )

    history = read(settings, "SELECT * FROM market_history").iloc[0]
    assert history.dominance_basis == "global" and pd.isna(history.basis_note)
    assert history.total_market_cap == pytest.approx(cg["total_market_cap"]["usd"])
    assert history.total_volume == pytest.approx(cg["total_volume"]["usd"])
    assert history.market_cap_change_percentage_24h == pytest.approx(cg["market_cap_change_percentage_24h_usd"])
    assert history.btc_dominance_pct == pytest.approx(cg["market_cap_percentage"]["btc"])

    silver = read(settings, "SELECT usable, unusable_reason, fetched_at FROM staging_global_market").iloc[0]
    assert bool(silver.usable) and silver.unusable_reason is None and silver.fetched_at is not None
    dominance = read(settings, "SELECT symbol, dominance_pct FROM staging_global_dominance")
    assert dict(zip(dominance.symbol, dominance.dominance_pct)) == pytest.approx(cg["market_cap_percentage"])

    segments = read(settings, "SELECT * FROM market_segment_analysis")
    assert set(segments.dominance_basis) == {"global"}
    assert segments.market_dominance_pct.sum() < segments.market_cap_share_pct.sum()  # 100 coins < whole market


def test_sample_global_is_too_old_so_the_basis_is_top_n(settings):
    run_pipeline(settings, source="sample")
    silver = read(settings, "SELECT usable, unusable_reason FROM staging_global_market").iloc[0]
    assert not bool(silver.usable)
    assert silver.unusable_reason == "/global is 5.5 h older than the coins"
    mart = read(settings, "SELECT * FROM crypto_analytics_mart")
    assert set(mart.dominance_basis) == {"top_n"}
    assert set(mart.basis_note) == {"/global is 5.5 h older than the coins"}
    assert mart.market_dominance_pct.sum() == pytest.approx(100.0)
    assert list(mart.basis_total_market_cap) == pytest.approx([mart.market_cap.sum()] * len(mart))
    history = read(settings, "SELECT * FROM market_history").iloc[0]
    assert (history.dominance_basis, history.basis_note) == ("top_n", "/global is 5.5 h older than the coins")
    assert history.total_market_cap == pytest.approx(mart.market_cap.sum())
    assert history.market_cap_change_percentage_24h is not None and abs(history.market_cap_change_percentage_24h) < 10

    # The age limit is a setting: a replay with 6 h allowed uses the same bronze /global.
    replay(settings.with_overrides(global_max_age_minutes=360))
    mart = read(settings, "SELECT dominance_basis, basis_note FROM crypto_analytics_mart")
    assert set(mart.dominance_basis) == {"global"} and mart.basis_note.isna().all()


def test_history_with_and_without_global_has_two_bases_and_two_chart_styles(settings, fake_coingecko):
    serve_day(fake_coingecko, "2022-11-27")
    run_pipeline(settings, source="api", top_n=100)
    fake_coingecko.set_global(None)  # /global answers 500 every time
    run_pipeline(settings, source="api", top_n=100)

    history = read(settings, "SELECT * FROM market_history ORDER BY snapshot_at")
    assert list(history.dominance_basis) == ["global", "top_n"]
    assert list(history.basis_note.fillna("")) == ["", "the /global call failed"]
    mart = read(settings, "SELECT dominance_basis, basis_note FROM crypto_analytics_mart")
    assert set(mart.dominance_basis) == {"top_n"} and set(mart.basis_note) == {"the /global call failed"}

    figure = charts.create_dominance_history_chart(history)
    styles = {t.line.dash for t in figure.data if t.legendgroup == "Bitcoin"}
    assert styles == {"solid", "dot"}


def test_top_n_total_leaves_out_derivative_tokens_and_counts_classified_stablecoins(settings, fake_coingecko):
    markets, _ = serve_day(fake_coingecko, "2022-11-27")
    fake_coingecko.set_global(None)
    engine = prepare_database(settings)
    by_id = {r["id"]: r for r in markets}
    derivative = {"wrapped-bitcoin": "wrapped", "staked-ether": "liquid_staking"}
    assert set(derivative) <= set(by_id)
    extra_stable = "paxos-standard"  # not in the seed list? then ref_coin_classes adds it
    with engine.begin() as conn:
        seeded = {r[0] for r in conn.execute(text("SELECT id FROM ref_stablecoins"))}
        rows = [{"id": i, "coin_class": c, "origin": "test", "updated_at": utcnow()} for i, c in derivative.items()]
        candidates = [
            r["id"]
            for r in markets
            if r["id"] not in seeded and r["id"] not in derivative and r["id"] not in ("bitcoin", "ethereum")
        ]
        extra_stable = extra_stable if extra_stable in candidates else candidates[-1]
        rows.append({"id": extra_stable, "coin_class": "stablecoin", "origin": "test", "updated_at": utcnow()})
        conn.execute(
            text(
                "INSERT INTO ref_coin_classes (id, coin_class, origin, updated_at) "
                "VALUES (:id, :coin_class, :origin, :updated_at)"
            ),
            rows,
        )
    run_pipeline(settings, source="api", top_n=100)

    mart = read(settings, "SELECT * FROM crypto_analytics_mart").set_index("id")
    classes = read(settings, "SELECT id, coin_class FROM ref_coin_classes")  # the run may add CoinGecko's own
    derivatives = set(classes.id[classes.coin_class.isin(["wrapped", "liquid_staking", "bridged"])])
    assert set(derivative) <= derivatives
    expected = sum(r["market_cap"] for r in markets if r["id"] not in derivatives)
    assert list(mart.basis_total_market_cap) == pytest.approx([expected] * len(mart))
    assert mart.loc["bitcoin", "market_dominance_pct"] == pytest.approx(by_id["bitcoin"]["market_cap"] * 100 / expected)
    history = read(settings, "SELECT * FROM market_history").iloc[0]
    assert history.total_market_cap == pytest.approx(expected)
    stablecoins = seeded | set(classes.id[classes.coin_class == "stablecoin"])
    assert extra_stable in stablecoins
    stable = sum(r["market_cap"] for r in markets if r["id"] in stablecoins)
    assert history.stablecoin_dominance_pct == pytest.approx(stable * 100 / expected)


def test_gold_tables_with_old_columns_are_recreated_and_rebuilt(settings, fake_coingecko):
    serve_day(fake_coingecko, "2022-11-27")
    run_pipeline(settings, source="api", top_n=100)
    engine = make_engine(settings.database_url)
    segments = read(settings, "SELECT COUNT(*) AS n FROM market_segment_analysis").n[0]
    # An older database: market_history without the new columns, holding the old basis name.
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE market_history"))
        conn.execute(
            text(
                "CREATE TABLE market_history (snapshot_at TIMESTAMP PRIMARY KEY, source VARCHAR(16) NOT NULL, "
                "coin_count INTEGER NOT NULL, total_market_cap FLOAT, total_volume FLOAT, "
                "btc_dominance_pct FLOAT, eth_dominance_pct FLOAT, stablecoin_dominance_pct FLOAT, "
                "others_dominance_pct FLOAT, dominance_basis VARCHAR(32) NOT NULL)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO market_history (snapshot_at, source, coin_count, dominance_basis) "
                "SELECT max(snapshot_at), 'api', 1, 'tracked_universe' FROM staging_crypto_market"
            )
        )
        conn.execute(text("ALTER TABLE crypto_analytics_mart DROP COLUMN basis_note"))

    ensure_schema(engine)

    inspector = inspect(engine)
    assert "basis_note" in {c["name"] for c in inspector.get_columns("crypto_analytics_mart")}
    assert "market_cap_change_percentage_24h" in {c["name"] for c in inspector.get_columns("market_history")}
    history = read(settings, "SELECT dominance_basis, total_market_cap FROM market_history")
    assert list(history.dominance_basis) == ["global"] and history.total_market_cap.notna().all()
    assert len(read(settings, "SELECT id FROM crypto_analytics_mart")) == 100
    assert read(settings, "SELECT COUNT(*) AS n FROM market_segment_analysis").n[0] == segments > 0

    # Already in shape: nothing is dropped (a second start keeps the same rows).
    before = read(settings, "SELECT * FROM market_history")
    ensure_schema(engine)
    pd.testing.assert_frame_equal(before, read(settings, "SELECT * FROM market_history"))
