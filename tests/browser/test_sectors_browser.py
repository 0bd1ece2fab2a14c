"""In chromium: the Sectors page on a warehouse where a run with sectors on fetched CoinGecko's categories
from the fake CoinGecko (the real bodies recorded on 2023-01-08: markets, /global, /coins/categories).
A person sees the ranking chart and table with real sector names, picks a sector and sees its coins,
then sets the sidebar's Sector filter: ?sector= joins the URL and the Coins page lists only that
sector's coins. Screenshot test-artifacts/screenshots/sectors.png."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from pipeline.config import Settings
from pipeline.flow import run_pipeline
from tests.browser.conftest import CHROMIUM, REPO_ROOT, serve_dashboard
from tests.browser.test_dashboard_browser import CHART, EXCEPTION, IDLE, TIMEOUT_MS, full_screenshot, visit
from tests.fakes.coingecko import FakeCoinGecko, load_fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REAL = REPO_ROOT.parent / "shared" / "data" / "real"
MARKETS = REAL / "markets/markets_2023-01-08_JKorf-CoinGecko.Net.json"
GLOBAL = REAL / "global/global_2023-01-08_JKorf-CoinGecko.Net.json"
CATEGORIES = load_fixture("categories/categories_2023-01-08_JKorf-CoinGecko.Net.utf8.json")
MEME_MEMBERS = set(load_fixture("categories/sector_members_2022-10-16.json")["meme-token"])
GRID = '[data-testid="stDataFrame"]'


@pytest.fixture(scope="module")
def sectors_dashboard(tmp_path_factory):
    """The dashboard on a warehouse one API run (sectors on) filled; returns (url, meme coins' names)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    if not REAL.is_dir():
        pytest.skip("the shared real recordings are not next to the repo")
    pytest.importorskip("playwright.sync_api")
    data_dir = tmp_path_factory.mktemp("sectors-warehouse")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "DATA_DIR", "COINGECKO_", "PIPELINE_", "STREAMLIT_"))
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{data_dir / 'warehouse.db'}",
            "DATA_DIR": str(data_dir),
            "COINGECKO_CALLS_PER_MINUTE": "0",
            "COINGECKO_MAX_RETRIES": "0",
            "COINGECKO_BACKOFF_SECONDS": "0",
            "PIPELINE_CLASSES_REFRESH_HOURS": "0",
        }
    )
    markets = json.loads(MARKETS.read_text())
    with FakeCoinGecko(markets=markets) as fake:
        fake.set_global(json.loads(GLOBAL.read_text()))
        fake.set_categories_body(CATEGORIES)
        settings = Settings.from_env(
            {**env, "COINGECKO_BASE_URL": fake.base_url, "PIPELINE_SECTORS_EVERY_MINUTES": "60"}
        )
        assert run_pipeline(settings, trigger="cli", source="api").status == "success"
        assert fake.calls_to("categories") == 1 and fake.calls_to("category") == len(settings.tracked_sectors)
    env["COINGECKO_BASE_URL"] = "http://127.0.0.1:9/api/v3"  # nothing else to reach
    meme = {r["name"] for r in markets if r["id"] in MEME_MEMBERS}
    with serve_dashboard(env, data_dir) as url:
        yield url, meme


def settle(tab) -> None:
    tab.wait_for_timeout(300)
    tab.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    tab.wait_for_timeout(800)


def grid_names(tab, grid: int) -> set[str]:
    """Every cell text of the ``grid``-th data grid's accessible table (names, symbols, numbers...)."""
    return set(
        tab.evaluate(
            f"() => [...document.querySelectorAll('{GRID}')[{grid}].querySelectorAll('table td')]"
            ".map(c => c.innerText.trim())"
        )
    )


def choose(tab, scope, label: str, option: str) -> None:
    """Open the selectbox labelled ``label`` inside ``scope`` and click ``option``.

    A rerun that lands just after the click redraws the box closed, so open it again until the option shows."""
    settle(tab)
    box = scope.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    wanted = tab.get_by_role("option", name=option, exact=True)
    for _ in range(5):
        box.get_by_role("combobox").click()
        try:
            wanted.wait_for(state="visible", timeout=3_000)
            break
        except PlaywrightTimeoutError:
            tab.keyboard.press("Escape")
            settle(tab)
    wanted.click()
    settle(tab)


def test_the_sectors_page_ranks_real_sectors_shows_a_sectors_coins_and_filters_the_coins_page(
    sectors_dashboard, page, screenshots
):
    url, meme = sectors_dashboard
    assert meme  # the 2023-01-08 top 250 holds some of CoinGecko's meme coins
    visit(page, url, "sectors", 3)
    main = page.locator('[data-testid="stMain"]')
    assert page.locator(EXCEPTION).count() == 0
    text = main.inner_text()
    assert "Sectors" in text and "data provided by CoinGecko" in text
    assert f"{len(CATEGORIES):,} sectors" in text

    # The ranking chart: a bar per sector, labelled with CoinGecko's names (the largest first).
    ranking = page.locator(CHART).nth(0)
    assert ranking.is_visible()
    assert "Largest sectors by market cap" in ranking.inner_text()
    by_cap = sorted((r for r in CATEGORIES if r.get("market_cap")), key=lambda r: -r["market_cap"])
    ticks = ranking.locator(".ytick text").all_text_contents()
    assert by_cap[0]["name"] in ticks and by_cap[1]["name"] in ticks, ticks
    assert ranking.locator("g.trace.bars path").count() >= 10
    # The share chart has a line per tracked sector in the day's categories (a usable /global that run).
    share = page.locator(CHART).nth(1)
    legend = share.locator("g.legend").text_content() or ""
    assert "Decentralized Finance (DeFi)" in legend and "Meme" in legend and "Stablecoins" in legend

    # The ranking table: the real names, visible.
    page.locator(GRID).first.scroll_into_view_if_needed()
    assert page.locator(GRID).first.is_visible()
    table = grid_names(page, 0)
    assert by_cap[0]["name"] in table and by_cap[1]["name"] in table, table

    # Pick a sector: its coins, and the page keeps the choice in the URL.
    choose(page, main, "Sector", "Meme")
    page.wait_for_function(f"() => document.querySelectorAll('{GRID}').length >= 2", timeout=TIMEOUT_MS)
    page.wait_for_url(re.compile(r"focus=meme-token"), timeout=TIMEOUT_MS)
    coins = grid_names(page, 1)
    assert meme <= coins, (meme, coins)
    assert "Bitcoin" not in coins and "Ethereum" not in coins
    assert f"{len(meme):,} of them among the tracked coins shown" in main.inner_text()
    full_screenshot(page, screenshots / "sectors.png")

    # The sidebar's Sector filter: in the URL, and the Coins page lists only that sector's coins.
    sidebar = page.locator('[data-testid="stSidebar"]')
    choose(page, sidebar, "Sector", "Meme")  # one label per sector: CoinGecko's name
    page.wait_for_url(re.compile(r"sector=meme-token"), timeout=TIMEOUT_MS)
    sidebar.get_by_role("link", name=re.compile("Coins")).first.click()
    settle(page)
    page.wait_for_selector(GRID, timeout=TIMEOUT_MS)
    page.wait_for_timeout(800)
    assert "sector=meme-token" in page.url
    assert f"Coins 1–{len(meme)} of {len(meme)}" in main.inner_text()
    listed = " | ".join(grid_names(page, 0))  # the Coin column shows name and symbol together
    assert all(name in listed for name in meme) and "Bitcoin" not in listed, listed
    full_screenshot(page, screenshots / "sectors_filter_coins.png")
    assert page.locator(EXCEPTION).count() == 0
    assert not page.js_errors, page.js_errors
