"""In chromium: /compare?compare=bitcoin,ethereum draws the performance overlay with a line per coin and the
annotated correlation heatmap with a number in it. The warehouse holds the bundled sample plus a year of
daily history backfilled over real HTTP from the fake CoinGecko serving the real recorded 2025-03-05
market_chart bodies (/work/shared/data/real)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from pipeline.backfill import run_backfill
from pipeline.config import Settings
from pipeline.flow import run_pipeline
from tests.browser.conftest import CHROMIUM, REPO_ROOT, serve_dashboard
from tests.browser.test_dashboard_browser import CHART, EXCEPTION, full_screenshot, visit
from tests.fakes.coingecko import FakeCoinGecko

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REAL_CHARTS = REPO_ROOT.parent / "shared" / "data" / "real" / "market_chart"
CHART_FILE = "market_chart_{}_usd_365d_2025-03-05_jpwnoise-Cripto-Brain.json"
COINS = ["bitcoin", "ethereum"]


@pytest.fixture(scope="module")
def backfilled_dashboard(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    if not REAL_CHARTS.is_dir():
        pytest.skip("the shared real recordings are not next to the repo")
    pytest.importorskip("playwright.sync_api")
    data_dir = tmp_path_factory.mktemp("compare-warehouse")
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
        }
    )
    charts = {coin: json.loads((REAL_CHARTS / CHART_FILE.format(coin)).read_text()) for coin in COINS}
    with FakeCoinGecko(market_charts=charts) as fake:
        settings = Settings.from_env({**env, "COINGECKO_BASE_URL": fake.base_url})
        assert run_pipeline(settings, trigger="cli", source="sample").status == "success"
        result = run_backfill(settings, days=365, coin_ids=COINS, now=datetime(2025, 3, 5, 16, 0))
        assert sorted(result.fetched) == COINS
    env["COINGECKO_BASE_URL"] = "http://127.0.0.1:9/api/v3"  # nothing else to reach
    with serve_dashboard(env, data_dir) as url:
        yield url


def test_compare_link_draws_the_overlay_and_the_heatmap(backfilled_dashboard, page, screenshots):
    visit(page, backfilled_dashboard, "compare", 3, "?compare=bitcoin,ethereum")
    main = page.locator('[data-testid="stMain"]')
    assert page.locator(EXCEPTION).count() == 0
    assert page.locator(CHART).count() == 3
    assert "compare=bitcoin%2Cethereum" in page.url or "compare=bitcoin,ethereum" in page.url
    assert "range=90d" in page.url

    overlay = page.locator(CHART).nth(0)
    assert "Performance over 90d" in overlay.inner_text()
    assert overlay.locator("g.trace.scatter").count() == 2  # one line per coin
    legend = overlay.locator("g.legend").text_content() or ""
    assert "Bitcoin (BTC)" in legend and "Ethereum (ETH)" in legend

    heatmap = page.locator(CHART).nth(1)
    assert "Correlation of daily log returns" in heatmap.inner_text()
    cells = heatmap.locator(".heatmaplayer text").all_text_contents()
    numbers = [c for c in cells if c not in ("", "—")]
    assert numbers.count("1.00") == 2 and len(numbers) == 4, cells  # the diagonal and the pair, both ways
    assert "Beta to bitcoin" in main.inner_text()
    full_screenshot(page, screenshots / "compare.png")
