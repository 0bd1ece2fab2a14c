"""The sidebar's Refresh button: the real pipeline, against a local fake CoinGecko."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from dashboard import refresh
from pipeline import run_requests
from pipeline.db import make_engine
from pipeline.runs import RunLease, RunLog, recent_runs
from pipeline.schema import sidecar_heartbeats
from tests.dashboard.helpers import PAGES, REPO_ROOT, metric
from tests.fakes.coingecko import FakeCoinGecko, load_fixture
from tests.helpers import wait_for

NEW_MARKETS = "markets/markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json"


def runs_of(warehouse) -> list[dict]:
    return recent_runs(make_engine(warehouse.settings().database_url), 20)


def sidebar_text(at) -> str:
    parts = (
        [e.value for e in at.sidebar.error]
        + [i.value for i in at.sidebar.info]
        + [s.value for s in at.sidebar.success]
        + [m.value for m in at.sidebar.markdown]
    )
    return "\n".join(parts)


@pytest.fixture
def fake_api(monkeypatch):
    """CoinGecko serving the 2024-12-19 top 250 (the seed is 2022-10-16, so every figure changes)."""
    with FakeCoinGecko(markets=load_fixture(NEW_MARKETS)) as fake:
        fake.set_global(None)  # the recorded /global is from 2022: without it dominance uses the tracked coins
        monkeypatch.setenv("COINGECKO_BASE_URL", fake.base_url)
        yield fake


def test_refresh_runs_the_pipeline_with_trigger_button_and_shows_the_new_figures(
    fresh_warehouse, use_warehouse, open_app, fake_api, monkeypatch
):
    use_warehouse(fresh_warehouse)
    monkeypatch.setenv("PIPELINE_REFRESH_COOLDOWN_SECONDS", "60")
    at = open_app()
    # the sample's /global is 5.5 h older than its coins: the figure is the top 250 coins' (labelled so)
    assert metric(at, "Market cap (top 250 coins)").value == "$933.32B"
    assert any("sample data" in w.value for w in at.warning)

    at.sidebar.button(key="refresh_button").click().run()

    assert not at.exception and not at.error
    newest = runs_of(fresh_warehouse)[0]
    assert (newest["trigger"], newest["source"], newest["status"]) == ("button", "api", "success")
    assert fake_api.calls_to("markets") == 1
    # the same run shows at once: new figures, live data, no sample warning
    assert metric(at, "Market cap (top 250 coins)").value != "$933.32B"
    assert metric(at, "BTC share of top 250 coins").value != "39.4%"
    assert not any("sample data" in w.value for w in at.warning)
    assert any("live CoinGecko API" in c.value for c in at.caption)
    # progress per stage, then a note of what was loaded
    assert [s.label for s in at.sidebar.status] == ["Data refreshed"]
    stages = sidebar_text(at)
    for stage in ("fetch", "bronze", "silver", "gold"):
        assert f"✅ {stage}" in stages
    assert "Refreshed: data as of" in stages

    # other pages read the new data too (caches were invalidated)
    at.switch_page(PAGES["coin"]).run()
    assert metric(at, "Price").value == "$102,496.22"

    # a second click within the cooldown does not call the API again
    at.sidebar.button(key="refresh_button").click().run()
    assert "next refresh is possible in" in sidebar_text(at)
    assert fake_api.calls_to("markets") == 1
    assert [r["trigger"] for r in runs_of(fresh_warehouse)].count("button") == 1


def test_refresh_with_the_api_unreachable_says_so_once_and_keeps_the_last_good_data(
    fresh_warehouse, use_warehouse, open_app
):
    use_warehouse(fresh_warehouse)  # COINGECKO_BASE_URL points at a closed port (conftest)
    at = open_app(page="segments")
    before = at.dataframe[0].value

    at.sidebar.button(key="refresh_button").click().run()

    assert not at.exception
    assert len(at.sidebar.error) == 1
    assert "CoinGecko could not be reached" in at.sidebar.error[0].value
    assert "last good data" in at.sidebar.error[0].value
    assert not at.main.error  # the page itself is fine
    assert at.dataframe[0].value.equals(before)
    newest = runs_of(fresh_warehouse)[0]
    assert (newest["trigger"], newest["source"], newest["status"]) == ("button", "api", "failed")


def test_refresh_while_the_scheduler_runs_waits_for_that_run_instead_of_starting_another(
    fresh_warehouse, use_warehouse, open_app, fake_api
):
    use_warehouse(fresh_warehouse)
    engine = make_engine(fresh_warehouse.settings().database_url)
    lease = RunLease(engine, "20991231T000000Z-sched0", ttl_seconds=60).acquire()
    scheduled = RunLog(engine, lease.run_id, trigger="schedule", source="api")
    scheduled.start()
    scheduled.stage("silver")

    def finish_soon():
        time.sleep(1.5)
        scheduled.succeed(silver_rows=250)
        lease.release()

    finisher = threading.Thread(target=finish_soon)
    finisher.start()
    try:
        at = open_app()
        at.sidebar.button(key="refresh_button").click().run()
    finally:
        finisher.join()

    assert not at.exception
    text = sidebar_text(at)
    assert "20991231T000000Z-sched0 is already in progress" in text
    assert "finished; showing its data" in text
    assert [s.label for s in at.sidebar.status] == ["Run 20991231T000000Z-sched0 finished"]
    assert fake_api.calls_to("markets") == 0
    assert "button" not in [r["trigger"] for r in runs_of(fresh_warehouse)]


def test_a_second_request_follows_the_running_job(fresh_warehouse, monkeypatch, fake_api):
    """Two sessions clicking together: one run, both follow it."""
    settings = fresh_warehouse.settings()
    monkeypatch.setenv("COINGECKO_BASE_URL", fake_api.base_url)
    from pipeline.config import Settings

    settings = Settings.from_env(
        {
            "DATABASE_URL": settings.database_url,
            "DATA_DIR": str(settings.data_dir),
            "COINGECKO_BASE_URL": fake_api.base_url,
            "COINGECKO_CALLS_PER_MINUTE": "0",
            "COINGECKO_MAX_RETRIES": "0",
        }
    )
    fake_api.add_fault("hang", hang_seconds=1.0)  # keep the first run busy for a moment
    first = refresh.request_refresh(settings)
    second = refresh.request_refresh(settings)
    assert first.kind == "started"
    assert second.kind == "attached" and second.job is first.job
    assert first.job.wait(30)
    assert first.job.state in ("success", "source_error")
    assert [r["trigger"] for r in runs_of(fresh_warehouse)].count("button") == 1


def test_stage_lines_mark_progress():
    assert refresh.stage_lines("silver", finished=False) == [
        ("fetch", "✅"),
        ("bronze", "✅"),
        ("silver", "⏳"),
        ("gold", "▫️"),
    ]
    assert refresh.stage_lines("gold", finished=True) == [(s, "✅") for s in ("fetch", "bronze", "silver", "gold")]
    assert refresh.stage_lines("fetch", finished=True, failed=True)[0] == ("fetch", "❌")


# -- the run queue: the button asks, the sidecar does ------------------------------------------------


def requests_of(warehouse) -> list:
    return run_requests.recent_requests(make_engine(warehouse.settings().database_url))


@pytest.mark.slow
def test_with_a_live_sidecar_the_button_only_asks_and_the_page_shows_the_sidecars_run(
    fresh_warehouse, use_warehouse, open_app, fake_api, monkeypatch
):
    use_warehouse(fresh_warehouse)
    monkeypatch.setenv("PIPELINE_SIDECAR_HEARTBEAT_SECONDS", "1")
    env = {**os.environ, "PIPELINE_SIDECAR_HEARTBEAT_SECONDS": "1", "PYTHONPATH": str(REPO_ROOT)}
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "schedule", "--interval", "60"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: any(r["trigger"] == "schedule" and r["status"] != "running" for r in runs_of(fresh_warehouse)),
            timeout=60,
            what="the sidecar's first scheduled run",
        )
        monkeypatch.setenv("PIPELINE_REFRESH_COOLDOWN_SECONDS", "0")  # the scheduled run just called the API
        at = open_app()
        at.sidebar.button(key="refresh_button").click().run()
    finally:
        sidecar.send_signal(signal.SIGTERM)
        sidecar.wait(timeout=15)

    assert not at.exception and not at.error
    [request] = requests_of(fresh_warehouse)
    assert (request.state, request.outcome) == ("done", "success")
    assert request.claimed_by == run_requests.heartbeat_name(run_requests.ROLE_SIDECAR).replace(
        f"pid {os.getpid()}", f"pid {sidecar.pid}"
    )
    newest = runs_of(fresh_warehouse)[0]
    assert newest["run_id"] == request.run_id
    assert (newest["trigger"], newest["source"], newest["status"], newest["pid"]) == (
        "button",
        "api",
        "success",
        sidecar.pid,
    )
    assert [s.label for s in at.sidebar.status] == ["Data refreshed"]
    stages = sidebar_text(at)
    for stage in ("fetch", "bronze", "silver", "gold"):
        assert f"✅ {stage}" in stages
    assert "Refreshed: data as of" in stages
    assert metric(at, "Market cap (top 250 coins)").value != "$933.32B"


def quick(settings, fake_api, **overrides):
    """The warehouse's settings against the fake CoinGecko, without pacing or retries."""
    return settings.with_overrides(
        coingecko_base_url=fake_api.base_url, calls_per_minute=0.0, max_retries=0, **overrides
    )


def test_with_no_sidecar_the_dashboard_claims_its_request_and_runs_it_here(fresh_warehouse, use_warehouse, fake_api):
    settings = quick(use_warehouse(fresh_warehouse).settings(), fake_api)
    engine = make_engine(settings.database_url)
    run_requests.beat(engine, "scheduler pid 1 on gone", run_requests.ROLE_SIDECAR)
    with engine.begin() as conn:  # a sidecar that last beat a minute ago: dead
        conn.execute(update(sidecar_heartbeats).values(beat_at=sidecar_heartbeats.c.beat_at - timedelta(minutes=1)))

    decision = refresh.request_refresh(settings)
    assert decision.kind == "started"
    assert decision.job.wait(30) and decision.job.state == "success"
    [request] = requests_of(fresh_warehouse)
    assert request.request_id == decision.job.job_id
    assert (request.state, request.run_id) == ("done", decision.job.run_id)
    assert request.claimed_by == run_requests.heartbeat_name(run_requests.ROLE_DASHBOARD)
    run = runs_of(fresh_warehouse)[0]
    assert (run["run_id"], run["trigger"], run["pid"]) == (request.run_id, "button", os.getpid())
    wait_for(lambda: not run_requests.fresh_heartbeats(engine, 5.0), timeout=5, what="the dashboard to stop beating")


def test_a_request_left_pending_by_a_sidecar_that_died_is_served_once_its_heartbeat_is_stale(
    fresh_warehouse, use_warehouse, fake_api
):
    settings = quick(use_warehouse(fresh_warehouse).settings(), fake_api, sidecar_heartbeat_seconds=0.5)
    engine = make_engine(settings.database_url)
    run_requests.beat(engine, "scheduler pid 1 on gone", run_requests.ROLE_SIDECAR)  # beat, then died

    first = refresh.request_refresh(settings)
    second = refresh.request_refresh(settings)  # a double click joins the same request
    assert first.kind == "started" and second.kind == "attached" and second.job is first.job
    assert len(requests_of(fresh_warehouse)) == 1
    assert requests_of(fresh_warehouse)[0].state == "pending"  # the sidecar looked alive: the dashboard waits
    wait_for(lambda: first.job.events, timeout=5, interval=0.05, what="the page's first line")
    assert first.job.events[0][1] == refresh.WAITING_MESSAGE

    assert first.job.wait(30) and first.job.state == "success"
    [request] = requests_of(fresh_warehouse)
    assert request.state == "done"
    assert request.claimed_by == run_requests.heartbeat_name(run_requests.ROLE_DASHBOARD)
    assert (request.claimed_at - request.requested_at).total_seconds() >= 1.5  # after 3 missed beats
    assert [r["trigger"] for r in runs_of(fresh_warehouse)].count("button") == 1
