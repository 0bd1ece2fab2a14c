"""The Sectors page and the sector filter, on a warehouse filled by the real pipeline from the fake
CoinGecko (real recorded bodies over loopback): ranking, share over time, movers, a sector's coins,
and ``?sector=`` restricting the coin pages to the sector's members, kept in the URL."""

from __future__ import annotations

import json

import pytest

from dashboard import state
from pipeline.flow import run_pipeline
from tests.conftest import make_settings
from tests.dashboard.helpers import Warehouse, chart_specs
from tests.dashboard.test_app_pages import assert_charts_readable, assert_clean, page_text
from tests.fakes.coingecko import REPO_ROOT, FakeCoinGecko, load_fixture

REAL = REPO_ROOT.parent / "shared" / "data" / "real"
MEME = set(load_fixture("categories/sector_members_2022-10-16.json")["meme-token"])


@pytest.fixture(scope="module")
def sector_warehouse(tmp_path_factory) -> Warehouse:
    """One API run with sectors on; on 2023-01-08 (markets, /global and /coins/categories all recorded
    that day) when the shared recordings are there, so the shares of the market exist."""
    data_dir = tmp_path_factory.mktemp("sector-warehouse")
    with FakeCoinGecko() as cg:
        if REAL.is_dir():
            cg.set_markets(json.loads((REAL / "markets/markets_2023-01-08_JKorf-CoinGecko.Net.json").read_text()))
            cg.set_global(json.loads((REAL / "global/global_2023-01-08_JKorf-CoinGecko.Net.json").read_text()))
            cg.set_categories_body(load_fixture("categories/categories_2023-01-08_JKorf-CoinGecko.Net.utf8.json"))
        settings = make_settings(f"sqlite:///{data_dir / 'warehouse.db'}", data_dir, cg.base_url)
        run_pipeline(settings.with_overrides(sectors_every_minutes=60), source="api")
    return Warehouse(settings.database_url, data_dir)


def test_the_sectors_page_ranks_charts_and_lists_a_sectors_coins(sector_warehouse, use_warehouse, open_app):
    use_warehouse(sector_warehouse)
    at = open_app(page="sectors", page_query={"focus": "meme-token"})
    assert_clean(at)
    specs = chart_specs(at)
    assert [s["layout"]["title"]["text"] for s in specs] == [
        "Largest sectors by market cap",
        "Share of the whole market over time",
        "Sector movers (24h)",
    ]
    assert_charts_readable(specs)
    ranking = at.dataframe[0].value
    assert list(ranking["sector_rank"][:3]) == [1, 2, 3]
    assert "data provided by CoinGecko" in page_text(at)
    coins = at.dataframe[1].value
    assert set(coins["name"]) and set(coins["name"]) <= {"Dogecoin", "Shiba Inu"}
    assert at.query_params["focus"] == "meme-token"
    if REAL.is_dir():  # a usable /global: the share chart has a line per tracked sector present
        assert {t["name"] for t in specs[1]["data"]} == {"Decentralized Finance (DeFi)", "Meme", "Stablecoins"}


def test_the_sector_filter_restricts_coin_pages_and_stays_in_the_url(sector_warehouse, use_warehouse, open_app):
    use_warehouse(sector_warehouse)
    at = open_app(query={"sector": "meme-token"}, page="liquidity")
    assert_clean(at)
    assert at.sidebar.selectbox(key="filter_sector").value == "meme-token"
    shown = set(at.dataframe[0].value["name"])
    assert shown and shown <= {"Dogecoin", "Shiba Inu"}
    assert at.query_params["sector"] == "meme-token"
    at.sidebar.selectbox(key="filter_sector").set_value(state.ALL_SECTORS).run()
    assert len(at.dataframe[0].value) > len(shown) and "sector" not in at.query_params


def test_an_unknown_sector_in_the_link_is_ignored_and_said(sector_warehouse, use_warehouse, open_app):
    use_warehouse(sector_warehouse)
    at = open_app(query={"sector": "no-such-sector"}, page=None)
    assert_clean(at)
    assert any("unknown sector" in w.value for w in at.sidebar.warning)
    assert "sector" not in at.query_params


def test_the_page_says_when_there_is_no_sector_data(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page="sectors")
    assert_clean(at)
    assert "No sector data yet" in page_text(at) and chart_specs(at) == []
