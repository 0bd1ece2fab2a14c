"""The sidebar's Refresh button: the real pipeline, against a local fake CoinGecko."""

from __future__ import annotations

import threading
import time

import pytest

from dashboard import refresh
from pipeline.db import make_engine
from pipeline.runs import RunLease, RunLog, recent_runs
from tests.dashboard.helpers import PAGES, metric
from tests.fakes.coingecko import FakeCoinGecko, load_fixture

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
