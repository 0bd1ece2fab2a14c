"""Fixtures for the dashboard's AppTests: databases seeded by the real pipeline, a clean environment.

Self-sufficient on purpose (no dependency on tests/conftest.py):

* ``sample_warehouse`` seeds one SQLite warehouse per session with the real
  pipeline and the bundled 2022-10-16 sample; tests that only read share it.
* ``fresh_warehouse`` seeds a private one per test, for tests that write
  (refresh button, first start).
* every test starts with no pipeline/CoinGecko variables set, CoinGecko pointed
  at a closed local port (nothing can reach the internet), and empty Streamlit
  caches; a refresh still running at the end is waited for.
"""

from __future__ import annotations

import os

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard import navigation, refresh
from pipeline.config import is_setting
from tests.dashboard.helpers import APP, CLOSED_PORT_URL, PAGES, Warehouse, seed_sample

LANDING = next(page.url_path for page in navigation.PAGES if page.default)


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory) -> Warehouse:
    """Shared, read-only: do not refresh against it."""
    return seed_sample(tmp_path_factory.mktemp("sample-warehouse"))


@pytest.fixture
def fresh_warehouse(tmp_path) -> Warehouse:
    return seed_sample(tmp_path / "warehouse")


@pytest.fixture(autouse=True)
def dashboard_environment(monkeypatch):
    """No settings leak in from the shell; CoinGecko unreachable unless a test points it at a fake."""
    for name in list(os.environ):
        if is_setting(name):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COINGECKO_BASE_URL", CLOSED_PORT_URL)
    monkeypatch.setenv("COINGECKO_MAX_RETRIES", "0")
    monkeypatch.setenv("COINGECKO_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("COINGECKO_CALLS_PER_MINUTE", "0")
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    job = refresh.active_job()
    if job is not None:
        job.wait(60)
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def use_warehouse(monkeypatch):
    """Point the app (DATABASE_URL, DATA_DIR) at a warehouse before it runs."""

    def use(warehouse: Warehouse) -> Warehouse:
        monkeypatch.setenv("DATABASE_URL", warehouse.database_url)
        monkeypatch.setenv("DATA_DIR", str(warehouse.data_dir))
        return warehouse

    return use


@pytest.fixture
def open_app():
    """Run the app with optional URL query parameters, then switch to ``page`` (by default Overview,
    whose figures most tests read; ``page=None`` stays on the landing page).

    AppTest's first run is always the default page (``navigation``'s ``default``), whose router
    drops other pages' parameters from the URL, as a browser visit to it would;
    ``page_query`` is set just before switching, like a link straight to that page.
    """

    def open_(
        query: dict[str, str] | None = None, page: str | None = "overview", page_query: dict[str, str] | None = None
    ) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=30)
        for key, value in (query or {}).items():
            at.query_params[key] = value
        at.run()
        if page and page != LANDING:
            for key, value in (page_query or {}).items():
                at.query_params[key] = value
            at.switch_page(PAGES[page]).run()
        return at

    return open_
