"""The running dashboard in chromium: every page draws its charts, the URL filter, the refresh button.

Full-page screenshots of every page go to test-artifacts/screenshots/<page>.png.
The refresh test changes the data, so it runs last (tests run in file order).
"""

from __future__ import annotations

import re

import pytest

from dashboard import navigation
from tests.browser.conftest import HOSTILE_NAME
from tests.dashboard.helpers import EXPECTED_CHARTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHART = '[data-testid="stPlotlyChart"] .js-plotly-plot'
EXCEPTION = '[data-testid="stException"]'
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
TIMEOUT_MS = 90_000  # the machine is small and shared; Plotly's bundle alone takes seconds to parse

PAGES = {  # name -> (url path, charts on the page), for every page of dashboard.navigation
    page.url_path: ("" if page.default else page.url_path, EXPECTED_CHARTS[page.url_path]) for page in navigation.PAGES
}


def wait_for_page(tab, charts: int) -> None:
    """Until the script is idle and ``charts`` Plotly charts have drawn."""
    tab.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    if charts:
        tab.wait_for_function(f"() => document.querySelectorAll('{CHART}').length >= {charts}", timeout=TIMEOUT_MS)
    tab.wait_for_timeout(500)


def visit(tab, base: str, path: str, charts: int, query: str = "") -> None:
    tab.goto(f"{base}/{path}{query}")
    wait_for_page(tab, charts)


def metric_value(tab, label) -> str:
    """The value of the metric card whose label is exactly ``label`` (a string or a compiled pattern):
    "Coins" must not match "Market cap (top 250 coins)"."""
    exact = label if isinstance(label, re.Pattern) else re.compile(f"^{re.escape(label)}$")
    card = (
        tab.locator('[data-testid="stMetric"]')
        .filter(has=tab.locator('[data-testid="stMetricLabel"]', has_text=exact))
        .first
    )
    return card.locator('[data-testid="stMetricValue"]').inner_text().strip()


def full_screenshot(tab, path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it first."""
    tab.mouse.move(1439, 1)  # no tooltip left hovering over the content
    height = tab.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
        " return Math.max(m ? m.scrollHeight : 0, document.body.scrollHeight, 900); }"
    )
    tab.set_viewport_size({"width": 1440, "height": int(height)})
    tab.wait_for_timeout(1200)  # Plotly redraws at the new size
    tab.screenshot(path=str(path), full_page=True)
    tab.set_viewport_size({"width": 1440, "height": 900})


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_draws_its_charts_without_errors(name, dashboard_url, page, screenshots):
    path, charts = PAGES[name]
    visit(page, dashboard_url, path, charts)
    assert page.locator(CHART).count() == charts
    assert page.locator(EXCEPTION).count() == 0
    assert "Data as of" in page.locator('[data-testid="stMain"]').inner_text()
    sidebar = page.locator('[data-testid="stSidebar"]')
    for listed in navigation.PAGES:
        assert sidebar.get_by_role("link", name=re.compile(re.escape(listed.title))).count() >= 1
    assert sidebar.get_by_role("link", name="CoinGecko").get_attribute("href") == "https://www.coingecko.com/en/api"
    full_screenshot(page, screenshots / f"{name}.png")
    assert not page.js_errors, page.js_errors


def test_the_category_in_the_url_narrows_every_page_and_survives_navigation(dashboard_url, page, screenshots):
    visit(page, dashboard_url, "overview", 2)  # the landing page is the Coins table
    assert metric_value(page, "Coins") == "250"

    visit(page, dashboard_url, "overview", 2, "?category=large_cap,mid_cap")
    assert metric_value(page, "Coins") == "51"
    assert metric_value(page, "Market cap (selection)") == "$874.50B"
    chosen = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]').inner_text()
    assert "Large cap" in chosen and "Mid cap" in chosen

    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=re.compile("Segments")).click()
    page.wait_for_url(re.compile(r"/segments"), timeout=TIMEOUT_MS)
    wait_for_page(page, 4)
    page.wait_for_function("() => window.location.search.includes('category=')", timeout=TIMEOUT_MS)
    assert re.search(r"category=large_cap(,|%2C)mid_cap", page.url)
    grid = page.locator('[data-testid="stDataFrame"]').first
    assert "Small cap" not in grid.inner_text() and "Micro cap" not in grid.inner_text()
    full_screenshot(page, screenshots / "segments-filtered.png")

    visit(page, dashboard_url, "trends", 0, "?category=unknown")
    assert page.locator(CHART).count() == 0
    assert "No coins match the current filter" in page.locator('[data-testid="stMain"]').inner_text()
    assert page.locator(EXCEPTION).count() == 0


def test_refresh_button_completes_and_shows_new_figures(dashboard_url, page, screenshots, fake_api):
    visit(page, dashboard_url, "overview", 2)
    before = metric_value(page, "Market cap (top 250 coins)")  # the sample's /global is 5.5 h too old
    assert before == "$933.32B"
    page.locator('[data-testid="stSidebar"]').get_by_role("button", name=re.compile("Refresh data")).click()
    page.locator('[data-testid="stSidebar"]').get_by_text("Data refreshed").wait_for(timeout=TIMEOUT_MS)
    wait_for_page(page, 2)
    assert page.locator(EXCEPTION).count() == 0
    # the refresh quarantines one record: the new figures are of the top 249 coins
    assert metric_value(page, re.compile(r"^Market cap \(top \d+ coins\)$")) != before
    assert "live CoinGecko API" in page.locator('[data-testid="stMain"]').inner_text()
    assert fake_api.calls_to("markets") == 1
    full_screenshot(page, screenshots / "overview-after-refresh.png")

    # the refreshed top coin carries a hostile name: it must show as text, never as markup
    visit(page, dashboard_url, "coin", 2)
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator('a[href="http://evil.example"]').count() == 0
    assert HOSTILE_NAME.split(">")[0] in page.locator('[data-testid="stMain"]').inner_text()
    full_screenshot(page, screenshots / "coin-after-refresh.png")

    # the refresh run and its quarantined record are on the Pipeline page
    visit(page, dashboard_url, "pipeline", 2)
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "non-numeric total_volume" in main
    full_screenshot(page, screenshots / "pipeline-after-refresh.png")
    assert not page.js_errors, page.js_errors
