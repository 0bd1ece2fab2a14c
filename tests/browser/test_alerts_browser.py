"""The Alerts page in Chromium: a person creates a rule, a pipeline run fires it, and the sidebar badge on
another page says so and leads back to the Alerts page, where the history lists it.

Its own warehouse and server (the shared one is refreshed by other browser tests)."""

from __future__ import annotations

import os
import re

import pytest

from pipeline.config import Settings
from pipeline.flow import run_pipeline
from tests.browser.conftest import serve_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
TIMEOUT_MS = 90_000


@pytest.fixture
def alerts_dashboard(tmp_path):
    data_dir = tmp_path / "alerts-warehouse"
    data_dir.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "DATA_DIR", "COINGECKO_", "PIPELINE_", "STREAMLIT_", "ALERTS_"))
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{data_dir / 'warehouse.db'}",
            "DATA_DIR": str(data_dir),
            "COINGECKO_BASE_URL": "http://127.0.0.1:9/api/v3",
            "PIPELINE_CLASSES_REFRESH_HOURS": "0",
        }
    )
    settings = Settings.from_env(env)
    run_pipeline(settings, trigger="cli", source="sample")
    with serve_dashboard(env, data_dir) as url:
        yield url, settings


def test_create_a_rule_and_see_the_badge_after_a_run(alerts_dashboard, page, screenshots):
    base, settings = alerts_dashboard
    page.goto(f"{base}/alerts")
    page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    page.get_by_role("heading", name="🔔 Alerts").wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_text("No alert rules yet").count() == 1

    # Kind "Price above" and coin Bitcoin are the defaults; the threshold is typed in.
    threshold = page.get_by_label("Price (USD)", exact=True)
    threshold.fill("1000")
    threshold.press("Tab")
    page.get_by_role("button", name=re.compile("Create rule")).click()
    page.get_by_text(re.compile(r"#1")).first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    body = page.inner_text("body")
    assert "Price above" in body and "Bitcoin (BTC)" in body and "threshold 1,000" in body
    assert "No alert has fired yet" in body

    run_pipeline(settings, trigger="schedule", source="sample")  # the scheduler's next run: bitcoin is $19,163.45

    badge = page.locator('[data-testid="stSidebar"]').get_by_role("link", name=re.compile("1 new alert"))
    for _ in range(20):  # the data version is probed every few seconds
        page.goto(f"{base}/trends")
        page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
        if badge.count():
            break
        page.wait_for_timeout(1000)
    assert badge.count() == 1
    page.screenshot(path=str(screenshots / "alerts_badge.png"), full_page=False)

    badge.click()
    page.get_by_role("heading", name="🔔 Alerts").wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("History").first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=TIMEOUT_MS)
    assert badge.count() == 0  # seen
    assert "No alert has fired yet" not in page.inner_text("body")
    page.screenshot(path=str(screenshots / "alerts.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.js_errors == []
