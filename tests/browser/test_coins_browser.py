"""In chromium: the Coins table is the landing page, shows finance-site prices while sorting by value, and
stars coins for real: two ticks put them in the URL and on the Watchlist page, which saves the list under a
name that a link (?watchlist=<name>) loads again in a new session. Screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from pipeline.config import Settings
from pipeline.flow import run_pipeline
from tests.browser.conftest import CHROMIUM, serve_dashboard
from tests.browser.test_dashboard_browser import CHART, EXCEPTION, IDLE, TIMEOUT_MS, full_screenshot, metric_value

pytestmark = [pytest.mark.browser, pytest.mark.slow]

GRID = '[data-testid="stDataFrame"]'
HEADER, ROW = 35, 35  # the grid's header and row heights (px; the page sets row_height=35)
STAR_X = 37  # the ★ column is the first one: its checkbox sits in the middle of a small column
PRICE_X = 480  # inside the Price header at 1440 px wide (★, #, logo and Coin come first)
LIST_NAME = "My 'L1s' & friends"


@pytest.fixture(scope="module")
def coins_dashboard(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    pytest.importorskip("playwright.sync_api")
    data_dir = tmp_path_factory.mktemp("coins-warehouse")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "DATA_DIR", "COINGECKO_", "PIPELINE_", "STREAMLIT_"))
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{data_dir / 'warehouse.db'}",
            "DATA_DIR": str(data_dir),
            "COINGECKO_BASE_URL": "http://127.0.0.1:9/api/v3",
            "COINGECKO_MAX_RETRIES": "0",
        }
    )
    assert run_pipeline(Settings.from_env(env), trigger="cli", source="sample").status == "success"
    with serve_dashboard(env, data_dir) as url:
        yield url


def settle(tab, grid: bool = True) -> None:
    tab.wait_for_timeout(300)
    tab.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    if grid:
        tab.wait_for_selector(GRID, timeout=TIMEOUT_MS)
    tab.wait_for_timeout(800)


def grid_rows(tab, first: int = 5) -> list[list[str]]:
    """The grid's first rows as its accessible table lists them (the raw cell values, in display order)."""
    return tab.evaluate(
        f"() => [...document.querySelectorAll('{GRID} table tr')].slice(1, {first + 1})"
        ".map(r => [...r.querySelectorAll('td')].map(c => c.innerText))"
    )


def click_cell(tab, x: float, row: int | None) -> None:
    box = tab.locator(GRID).first.bounding_box()
    y = HEADER / 2 if row is None else HEADER + ROW * row + ROW / 2
    tab.mouse.click(box["x"] + x, box["y"] + y)


def test_star_two_coins_see_them_on_the_watchlist_save_and_reload_by_link(coins_dashboard, page, screenshots):
    page.goto(f"{coins_dashboard}/")
    settle(page)
    main = page.locator('[data-testid="stMain"]')
    assert main.locator("h1").first.inner_text().endswith("Coins")  # the landing page
    assert "Coins 1–100 of 250" in main.inner_text()
    assert [row[3] for row in grid_rows(page, 3)] == ["Bitcoin (BTC)", "Ethereum (ETH)", "Tether (USDT)"]
    full_screenshot(page, screenshots / "coins.png")

    # the Price header sorts by the number (the cells show '$0.000000773', the order is numeric)
    click_cell(page, PRICE_X, None)
    page.wait_for_timeout(800)
    ascending = [float(row[4]) for row in grid_rows(page, 5)]
    assert ascending == sorted(ascending) and ascending[0] < 1e-6
    click_cell(page, PRICE_X, None)
    page.wait_for_timeout(800)
    descending = [float(row[4]) for row in grid_rows(page, 5)]
    assert descending == sorted(descending, reverse=True) and descending[0] > 19_000
    page.goto(f"{coins_dashboard}/")  # back to rank order
    settle(page)

    for row in (0, 1):  # Bitcoin, Ethereum
        click_cell(page, STAR_X, row)
        settle(page)
    page.wait_for_function("() => window.location.search.includes('watch=')", timeout=TIMEOUT_MS)
    assert unquote(page.url).endswith("?watch=bitcoin,ethereum")
    assert "2 starred" in main.inner_text()
    assert "Only my watchlist (2 coins)" in page.locator('[data-testid="stSidebar"]').inner_text()

    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=re.compile("Watchlist")).click()
    page.wait_for_url(re.compile(r"/watchlist"), timeout=TIMEOUT_MS)
    settle(page)
    page.wait_for_function(f"() => document.querySelectorAll('{CHART}').length >= 1", timeout=TIMEOUT_MS)
    assert "watch=bitcoin" in unquote(page.url)  # the list follows to every page
    assert metric_value(page, "Coins") == "2"
    assert [row[2] for row in grid_rows(page, 5)] == ["Bitcoin (BTC)", "Ethereum (ETH)"]
    assert page.locator(f"{CHART} .scatterlayer .trace").count() == 2  # a line per starred coin

    name_box = page.get_by_placeholder("e.g. my layer 1s")
    name_box.fill(LIST_NAME)
    name_box.press("Enter")
    settle(page)
    page.get_by_role("button", name=re.compile("Save watchlist")).click()
    settle(page)
    page.wait_for_function("() => window.location.search.includes('watchlist=')", timeout=TIMEOUT_MS)
    assert f"watchlist={LIST_NAME}" in unquote(page.url.replace("+", " "))
    # The rerun after saving redraws the page: wait for the saved state rather than read it mid-draw.
    main.get_by_text("This list is saved as").first.wait_for(timeout=TIMEOUT_MS)
    full_screenshot(page, screenshots / "watchlist.png")
    assert page.locator(EXCEPTION).count() == 0

    # a new visitor with only the name in the link gets the saved list
    fresh = page.context.browser.new_page(viewport={"width": 1440, "height": 900})
    fresh.goto(f"{coins_dashboard}/watchlist?watchlist={LIST_NAME.replace('&', '%26').replace(' ', '%20')}")
    settle(fresh)
    fresh.wait_for_function(f"() => document.querySelectorAll('{CHART}').length >= 1", timeout=TIMEOUT_MS)
    assert metric_value(fresh, "Coins") == "2"
    assert "watch=bitcoin,ethereum" in unquote(fresh.url)
    # and "Only my watchlist" narrows another page to those two coins
    fresh.locator('[data-testid="stSidebar"]').get_by_text("Only my watchlist").click()
    settle(fresh, grid=False)
    fresh.locator('[data-testid="stSidebar"]').get_by_role("link", name=re.compile("Coins")).first.click()
    settle(fresh)
    assert "Coins 1–2 of 2" in fresh.locator('[data-testid="stMain"]').inner_text()
    assert "watch_only=1" in fresh.url
    assert fresh.locator(EXCEPTION).count() == 0
    fresh.close()
    assert not page.js_errors, page.js_errors
