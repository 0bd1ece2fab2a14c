"""The Compose topology as plain processes (no Docker engine here).

The same three roles docker-compose.yml starts, with the environment it gives
them: the real PostgreSQL as the database, ``python -m pipeline schedule`` as
the sidecar (against the fake CoinGecko), and ``streamlit run`` for the
dashboard, driven by Chromium.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from sqlalchemy import text

from pipeline.db import make_engine
from tests.conftest import REPO_ROOT, make_settings, settings_env
from tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.postgres]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def runs(settings) -> list[dict]:
    try:
        with make_engine(settings.database_url).connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    text(
                        "SELECT run_id, trigger, status, snapshot_at, started_at, finished_at FROM pipeline_runs "
                        "ORDER BY started_at"
                    )
                ).mappings()
            ]
    except Exception:  # schema not created yet
        return []


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def stack(postgres_url, tmp_path, fake_coingecko):
    """Sidecar + dashboard processes sharing DATABASE_URL and the bronze folder, as in Compose."""
    settings = make_settings(postgres_url, tmp_path / "data", fake_coingecko.base_url)
    env = settings_env(settings)
    env.update(
        {
            "PIPELINE_INTERVAL_MINUTES": "15",
            "PIPELINE_REFRESH_COOLDOWN_SECONDS": "60",
            "COINGECKO_TIMEOUT_SECONDS": "1",
            "COINGECKO_MAX_RETRIES": "14",
        }
    )
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "schedule", "--interval", "0.1"],
        env=env,
        cwd=REPO_ROOT,
        stdout=open(logs / "sidecar.log", "w"),
        stderr=subprocess.STDOUT,
    )
    dashboard = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "dashboard/app.py",
            f"--server.port={port}",
            "--server.address=127.0.0.1",
            "--server.headless=true",
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=open(logs / "dashboard.log", "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield settings, sidecar, dashboard, port, logs
    finally:
        for proc in (sidecar, dashboard):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_compose_topology_as_processes(stack, fake_coingecko, browser):
    settings, sidecar, dashboard, port, logs = stack
    # 1. The sidecar's first run lands in pipeline_runs.
    first = wait_for(
        lambda: [r for r in runs(settings) if r["trigger"] == "schedule" and r["status"] == "success"],
        timeout=60,
        what="first scheduled run",
    )[0]
    # 2. The dashboard answers its health check and shows that run's data as of its snapshot time.
    wait_for(lambda: healthy(port), timeout=60, what="dashboard health")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
    stamp = f"{first['snapshot_at']:%Y-%m-%d %H:%M} UTC"
    page.get_by_text("Data as of").first.wait_for(timeout=60_000)
    assert stamp in page.get_by_text("Data as of").first.inner_text()
    assert page.locator('[data-testid="stException"]').count() == 0

    # 3. Make the sidecar's next run slow (twelve attempts hang past the 1 s timeout: ~12 s), wait until it
    #    holds the lock, then click Refresh: the dashboard follows that run instead of starting one.
    #    The holder is a run started after the fault: one already going may have fetched its bodies and end
    #    at once, before the click is answered (seen on a loaded machine).
    before = {r["run_id"] for r in runs(settings)}
    fake_coingecko.add_fault("hang", hang_seconds=1.5, times=12)
    holder = wait_for(
        lambda: [r for r in runs(settings) if r["status"] == "running" and r["run_id"] not in before],
        timeout=30,
        what="a running scheduled run",
    )[0]
    assert holder["trigger"] == "schedule"
    page.get_by_role("button", name=re.compile("Refresh data")).click()
    page.get_by_text(
        re.compile(f"{holder['run_id']}.*already in progress|Waiting for run {holder['run_id']}")
    ).first.wait_for(timeout=30_000)
    wait_for(
        lambda: next(r for r in runs(settings) if r["run_id"] == holder["run_id"])["status"] != "running",
        timeout=60,
        what="the scheduled run to finish",
    )
    page.get_by_text(
        re.compile(f"{holder['run_id']} (finished|ended)|pipeline run {holder['run_id']} finished")
    ).first.wait_for(timeout=30_000)
    page.screenshot(path=str(logs / "topology-refresh.png"), full_page=True)
    page.close()

    all_runs = runs(settings)
    assert all(r["trigger"] == "schedule" for r in all_runs), all_runs  # the click started no run
    # Never two runs at once: no run started while another was still going.
    finished = sorted(all_runs, key=lambda r: r["started_at"])
    for earlier, later in zip(finished, finished[1:]):
        assert earlier["finished_at"] is not None and later["started_at"] >= earlier["finished_at"]

    # 4. SIGTERM stops the sidecar cleanly within a few seconds.
    started = time.monotonic()
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert "stopped" in (logs / "sidecar.log").read_text()
    assert healthy(port)  # the dashboard does not depend on the sidecar being up
