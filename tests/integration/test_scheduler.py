"""The scheduler sidecar as a real process: runs at start, on the interval, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from pipeline.db import make_engine
from tests.conftest import REPO_ROOT, settings_env
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def scheduled_runs(settings) -> list[dict]:
    try:
        with make_engine(settings.database_url).connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    text(
                        "SELECT run_id, status, trigger, source FROM pipeline_runs WHERE trigger = 'schedule' "
                        "ORDER BY started_at"
                    )
                ).mappings()
            ]
    except Exception:  # tables not created yet
        return []


def test_scheduler_runs_on_interval_and_stops_cleanly_on_sigterm(settings, fake_coingecko):
    # 0.03 minutes = 1.8 s between runs.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "schedule", "--interval", "0.03"],
        env=settings_env(settings),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        runs = wait_for(
            lambda: (
                [r for r in scheduled_runs(settings) if r["status"] == "success"][:2]
                if len([r for r in scheduled_runs(settings) if r["status"] == "success"]) >= 2
                else None
            ),
            timeout=60,
        )
        assert all(r["source"] == "api" for r in runs)
        assert fake_coingecko.calls_to("markets") >= 2
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "stopped" in output
    assert all(r["status"] != "running" for r in scheduled_runs(settings))


def test_sigterm_during_a_run_records_it_failed_and_keeps_gold(settings, fake_coingecko):
    fake_coingecko.add_fault("hang", hang_seconds=1.5, times=20)  # every attempt times out slowly
    env = settings_env(settings)
    env["COINGECKO_TIMEOUT_SECONDS"] = "1"
    env["COINGECKO_MAX_RETRIES"] = "20"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "schedule", "--interval", "10"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: fake_coingecko.calls_to("markets") >= 1, timeout=30)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    runs = scheduled_runs(settings)
    assert [r["status"] for r in runs] == ["failed"]
    with make_engine(settings.database_url).connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM pipeline_lock")).scalar() == 0
