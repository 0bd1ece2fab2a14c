"""In chromium: with CoinGecko's /global missing, the Overview says so next to its figures and labels
them "top N coins". The warehouse is loaded by the real pipeline from the real 2022-11-27 markets body
(/work/shared/data/real) served by the fake CoinGecko, whose /global answers 500."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.config import Settings
from pipeline.flow import run_pipeline
from tests.browser.conftest import CHROMIUM, REPO_ROOT, serve_dashboard
from tests.browser.test_dashboard_browser import EXCEPTION, full_screenshot, metric_value, visit
from tests.fakes.coingecko import FakeCoinGecko

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REAL_MARKETS = (
    REPO_ROOT.parent
    / "shared"
    / "data"
    / "real"
    / "markets"
    / "markets_100_sparkline_2022-11-27_mrmendoza-dev-cryptotracker.json"
)


@pytest.fixture(scope="module")
def no_global_dashboard(tmp_path_factory):
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    if not REAL_MARKETS.exists():
        pytest.skip("the shared real recordings are not next to the repo")
    pytest.importorskip("playwright.sync_api")
    data_dir = tmp_path_factory.mktemp("no-global-warehouse")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "DATA_DIR", "COINGECKO_", "PIPELINE_", "STREAMLIT_"))
    }
    with FakeCoinGecko(markets=json.loads(REAL_MARKETS.read_text())) as fake:
        fake.set_global(None)  # /global answers 500 every time
        env.update(
            {
                "DATABASE_URL": f"sqlite:///{data_dir / 'warehouse.db'}",
                "DATA_DIR": str(data_dir),
                "COINGECKO_BASE_URL": fake.base_url,
                "COINGECKO_CALLS_PER_MINUTE": "0",
                "COINGECKO_MAX_RETRIES": "0",
                "COINGECKO_BACKOFF_SECONDS": "0",
            }
        )
        assert run_pipeline(Settings.from_env(env), trigger="cli", source="api", top_n=100).status == "success"
    env["COINGECKO_BASE_URL"] = "http://127.0.0.1:9/api/v3"  # nothing else to reach
    with serve_dashboard(env, data_dir) as url:
        yield url


def test_overview_without_global_explains_its_top_n_figures(no_global_dashboard, page, screenshots):
    visit(page, no_global_dashboard, "overview", 1)  # the market map at least
    assert page.locator(EXCEPTION).count() == 0
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "Figures are for the top 100 coins, not the whole market" in main
    assert "the /global call failed" in main
    assert metric_value(page, "Market cap (top 100 coins)").startswith("$")
    assert metric_value(page, "BTC share of top 100 coins").endswith("%")
    assert "Total market cap" not in main and "BTC dominance" not in main
    # The explanation sits right above the figures it explains.
    alert = page.locator('[data-testid="stAlert"]', has_text="the /global call failed").first
    card = page.locator('[data-testid="stMetric"]', has_text="Market cap (top 100 coins)").first
    assert alert.bounding_box()["y"] < card.bounding_box()["y"]
    assert card.bounding_box()["y"] - alert.bounding_box()["y"] < 300
    full_screenshot(page, screenshots / "overview-without-global.png")
    # The dashboard's CoinGecko credit and data time are still there.
    text = page.inner_text("body")
    assert "CoinGecko" in text and "Data as of" in text
