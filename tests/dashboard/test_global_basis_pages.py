"""Whole-market figures on the pages: CoinGecko's /global when usable, otherwise labelled "top N coins"
with the reason next to the figures. Warehouses loaded by the real pipeline from real recorded bodies
(/work/shared/data/real: markets and /global of 2022-11-27) served by the fake CoinGecko."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from dashboard import formatting as fmt
from pipeline.config import Settings
from pipeline.db import make_engine
from pipeline.flow import run_pipeline
from tests.dashboard.helpers import Warehouse, chart_specs, metric, plain
from tests.dashboard.test_app_pages import assert_clean, page_text
from tests.fakes.coingecko import REPO_ROOT, FakeCoinGecko

REAL = REPO_ROOT.parent / "shared" / "data" / "real"
MARKETS = REAL / "markets" / "markets_100_sparkline_2022-11-27_mrmendoza-dev-cryptotracker.json"
GLOBAL = REAL / "global" / "global_2022-11-27_mrmendoza-dev-cryptotracker.json"

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="the shared real recordings are not next to the repo")


def read(warehouse: Warehouse, sql: str) -> pd.DataFrame:
    with make_engine(warehouse.database_url).connect() as conn:
        return pd.read_sql(text(sql), conn)


def real_day_warehouse(data_dir: Path, *, with_global: bool) -> Warehouse:
    data_dir.mkdir(parents=True, exist_ok=True)
    warehouse = Warehouse(f"sqlite:///{data_dir / 'warehouse.db'}", data_dir)
    with FakeCoinGecko(markets=json.loads(MARKETS.read_text())) as fake:
        fake.set_global(json.loads(GLOBAL.read_text()) if with_global else None)
        settings = Settings.from_env(
            {
                "DATABASE_URL": warehouse.database_url,
                "DATA_DIR": str(data_dir),
                "COINGECKO_BASE_URL": fake.base_url,
                "COINGECKO_MAX_RETRIES": "0",
                "COINGECKO_BACKOFF_SECONDS": "0",
                "COINGECKO_CALLS_PER_MINUTE": "0",
            }
        )
        result = run_pipeline(settings, source="api", top_n=100)
    assert result.status == "success"
    return warehouse


@pytest.fixture(scope="module")
def no_global_warehouse(tmp_path_factory) -> Warehouse:
    return real_day_warehouse(tmp_path_factory.mktemp("no-global"), with_global=False)


@pytest.fixture(scope="module")
def global_warehouse(tmp_path_factory) -> Warehouse:
    return real_day_warehouse(tmp_path_factory.mktemp("with-global"), with_global=True)


def test_overview_without_global_says_why_next_to_top_n_figures(no_global_warehouse, use_warehouse, open_app):
    use_warehouse(no_global_warehouse)
    at = open_app()
    assert_clean(at)
    warning = next(plain(w.value) for w in at.warning if "/global" in w.value)
    assert "the /global call failed" in warning and "top 100 coins, not the whole market" in warning
    labels = [m.label for m in at.metric]
    assert labels[:5] == [
        "Market cap (top 100 coins)",
        "24h volume (top 100 coins)",
        "24h change (top 100 coins)",
        "BTC share of top 100 coins",
        "ETH share of top 100 coins",
    ]
    assert "Total market cap" not in labels and "BTC dominance" not in labels
    markets = json.loads(MARKETS.read_text())
    derivatives = set(
        read(
            no_global_warehouse,
            "SELECT id FROM ref_coin_classes WHERE coin_class IN ('wrapped', 'liquid_staking', 'bridged')",
        ).id
    )
    top_n_total = sum(r["market_cap"] for r in markets if r["id"] not in derivatives)
    assert metric(at, "Market cap (top 100 coins)").value == fmt.format_usd(top_n_total)
    assert "top 100 coins" in metric(at, "Market cap (top 100 coins)").help
    # The coin table and its CSV say what the share is of.
    assert "share_of_top_100_coins_pct" in at.dataframe[0].value.columns
    assert "market_dominance_pct" not in at.dataframe[0].value.columns


def test_dominance_and_segments_without_global_never_pass_top_n_off_as_the_market(
    no_global_warehouse, use_warehouse, open_app
):
    use_warehouse(no_global_warehouse)
    at = open_app(page="dominance")
    assert_clean(at)
    assert any("the /global call failed" in plain(w.value) for w in at.warning)
    donut, categories, history = chart_specs(at)
    assert "top 100 coins" in donut["layout"]["title"]["text"]
    assert "top 100 coins" in categories["layout"]["yaxis"]["title"]["text"]
    assert "top 100 coins" in history["layout"]["yaxis"]["title"]["text"]
    assert {t["name"] for t in history["data"]} >= {"Bitcoin (top 100 coins)"}
    assert "share_of_top_100_coins_pct" in at.dataframe[0].value.columns

    at = open_app(page="segments")
    assert_clean(at)
    text = page_text(at)
    assert "No whole-market figures" in text
    columns = at.dataframe[0].value.columns
    assert "share_of_top_100_coins_pct" in columns and "market_dominance_pct" not in columns


def test_overview_with_global_shows_coingecko_figures(global_warehouse, use_warehouse, open_app):
    use_warehouse(global_warehouse)
    at = open_app()
    assert_clean(at)
    assert not at.warning
    cg = json.loads(GLOBAL.read_text())["data"]
    assert metric(at, "Total market cap").value == fmt.format_usd(cg["total_market_cap"]["usd"])  # $879.85B
    assert metric(at, "24h volume").value == fmt.format_usd(cg["total_volume"]["usd"])
    assert metric(at, "24h change").value == fmt.format_pct(cg["market_cap_change_percentage_24h_usd"], 2, signed=True)
    assert metric(at, "BTC dominance").value == fmt.format_pct(cg["market_cap_percentage"]["btc"], 1)
    assert metric(at, "ETH dominance").value == fmt.format_pct(cg["market_cap_percentage"]["eth"], 1)
    assert "market_dominance_pct" in at.dataframe[0].value.columns
    at = open_app(page="segments")
    assert "market_dominance_pct" in at.dataframe[0].value.columns


def test_sample_overview_gives_the_age_of_global(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app()
    assert any("/global is 5.5 h older than the coins" in plain(w.value) for w in at.warning)
    assert metric(at, "Market cap (top 250 coins)")
