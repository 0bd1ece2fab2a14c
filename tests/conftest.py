"""Shared fixtures: a fresh database per test on SQLite and on the real PostgreSQL,
settings pointing at a temporary data folder, and the fake CoinGecko server.

PostgreSQL: each test gets its own database, created on the server in
``TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres)
and dropped afterwards. When the server is missing the test fails in CI
(``CI=true``) and is skipped, saying why, elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.config import Settings, is_setting
from pipeline.db import make_engine
from tests.fakes.coingecko import FakeCoinGecko

REPO_ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No test sees the developer's own settings, and none leaks its settings to the next."""
    for key in [name for name in os.environ if is_setting(name)]:
        monkeypatch.delenv(key, raising=False)
    yield
    make_engine.cache_clear()


def _admin_connect():
    import psycopg

    return psycopg.connect(
        ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=5
    )


def postgres_available() -> str | None:
    """None when the server answers, else the reason it does not."""
    try:
        with _admin_connect():
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"PostgreSQL at {ADMIN_URL} is not reachable: {str(exc).strip().splitlines()[0]}"


@contextmanager
def _fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database's URL; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        make_engine.cache_clear()
        with _admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database for one test."""
    problem = postgres_available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem + " (CI must run the PostgreSQL tests)")
        pytest.skip(problem)
    with _fresh_postgres_database() as url:
        yield url


@pytest.fixture
def second_database_url(database_url, tmp_path):
    """Another empty database on the same engine as ``database_url`` (to compare two loads of the same data)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    with _fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """Every test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def fake_coingecko():
    with FakeCoinGecko() as fake:
        yield fake


def make_settings(
    database_url: str,
    data_dir: Path,
    base_url: str = "http://127.0.0.1:9/api/v3",
    extra_env: dict[str, str] | None = None,
    **overrides,
) -> Settings:
    """Settings for tests: fast retries, no pacing, short timeouts (``extra_env``: more variables, e.g. BRONZE_URL)."""
    env = {
        "DATABASE_URL": database_url,
        "DATA_DIR": str(data_dir),
        "COINGECKO_BASE_URL": base_url,
        "COINGECKO_CALLS_PER_MINUTE": "0",
        "COINGECKO_BACKOFF_SECONDS": "0.01",
        "COINGECKO_TIMEOUT_SECONDS": "2",
        "COINGECKO_DEADLINE_SECONDS": "30",
        "COINGECKO_MAX_RETRIES": "3",
        # Coin classes off: a test about something else sees no category calls and no classes bronze run;
        # tests/integration/test_classes_refresh.py turns them on.
        "PIPELINE_CLASSES_REFRESH_HOURS": "0",
        # Sectors off too (no /coins/categories calls, no sectors bronze run); tests/integration/test_sectors.py
        # turns them on.
        "PIPELINE_SECTORS_EVERY_MINUTES": "0",
        **(extra_env or {}),
    }
    settings = Settings.from_env(env)
    return settings.with_overrides(**overrides) if overrides else settings


@pytest.fixture
def settings(database_url, tmp_path, fake_coingecko):
    """Settings on the parametrized database, talking to the fake CoinGecko."""
    return make_settings(database_url, tmp_path / "data", fake_coingecko.base_url)


def settings_env(settings: Settings) -> dict:
    """The environment a subprocess needs to see the same settings."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": settings.database_url,
            "DATA_DIR": str(settings.data_dir),
            "COINGECKO_BASE_URL": settings.coingecko_base_url,
            "COINGECKO_CALLS_PER_MINUTE": "0",
            "COINGECKO_BACKOFF_SECONDS": "0.01",
            "COINGECKO_TIMEOUT_SECONDS": "2",
            "COINGECKO_MAX_RETRIES": "3",
            "PIPELINE_CLASSES_REFRESH_HOURS": f"{settings.classes_refresh_hours:g}",
            "PIPELINE_SECTORS_EVERY_MINUTES": f"{settings.sectors_every_minutes:g}",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    return env


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser():
    """One Chromium (Debian's) for the whole session: Playwright's sync API allows one running instance."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
