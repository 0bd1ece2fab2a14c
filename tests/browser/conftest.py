"""A real `streamlit run dashboard/app.py` in a subprocess, driven by Playwright and Debian's chromium.

Self-sufficient: the session seeds its own warehouse with the real pipeline
(bundled 2022-10-16 sample) and serves "new" data (2024-12-19, with one hostile
coin name) from the local fake CoinGecko for the refresh test. Nothing reaches
the internet: the browser runs with background networking off and the app's
only API is the fake on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.db import utcnow
from pipeline.flow import run_pipeline
from tests.fakes.coingecko import FakeCoinGecko, load_fixture

REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
NEW_MARKETS = "markets/markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json"
HOSTILE_NAME = "<img src=x onerror=alert(1)> **Evil** [click](http://evil.example)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"streamlit did not become healthy in {timeout:.0f}s:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def fake_api():
    markets = load_fixture(NEW_MARKETS)
    markets[0]["name"] = HOSTILE_NAME  # bitcoin, renamed by "the API"
    now = f"{utcnow():%Y-%m-%dT%H:%M:%S}.000Z"  # served as live data: not stale records (PIPELINE_STALE_RECORD_HOURS)
    for record in markets:
        record["last_updated"] = now
    with FakeCoinGecko(markets=markets) as fake:
        fake.set_global(None)  # the recorded /global is from 2022; dominance then uses the tracked coins
        fake.add_fault("numbers_as_strings")  # the refresh quarantines one record ('n/a' volume)
        yield fake


@pytest.fixture(scope="session")
def dashboard_url(tmp_path_factory, fake_api):
    """Base URL of a running dashboard on a warehouse loaded by the real pipeline."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    pytest.importorskip("playwright.sync_api")
    data_dir = tmp_path_factory.mktemp("browser-warehouse")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "DATA_DIR", "COINGECKO_", "PIPELINE_", "STREAMLIT_"))
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{data_dir / 'warehouse.db'}",
            "DATA_DIR": str(data_dir),
            "COINGECKO_BASE_URL": fake_api.base_url,
            "COINGECKO_CALLS_PER_MINUTE": "0",
            "COINGECKO_MAX_RETRIES": "0",
            "COINGECKO_BACKOFF_SECONDS": "0",
            "PIPELINE_REFRESH_COOLDOWN_SECONDS": "0",
        }
    )
    run_pipeline(Settings.from_env(env), trigger="cli", source="sample")

    with serve_dashboard(env, data_dir) as url:
        yield url


@contextlib.contextmanager
def serve_dashboard(env: dict, data_dir: Path):
    """``streamlit run dashboard/app.py`` on a free port with ``env``; yields its URL, stops it after,
    and fails when the server logged a traceback."""
    port = _free_port()
    log_path = data_dir / "streamlit.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "dashboard/app.py",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_text = log_path.read_text(errors="replace")
        assert "Traceback" not in log_text, log_text


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.js_errors = errors
    yield tab
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
