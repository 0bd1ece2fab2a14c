"""First start, database problems and hostile coin names: clear messages, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from dashboard import data
from pipeline.db import make_engine
from pipeline.flow import run_pipeline
from pipeline.runs import recent_runs
from pipeline.schema import pipeline_runs
from tests.dashboard.helpers import PAGES, Warehouse, chart_specs, metric, plain
from tests.fakes.coingecko import FakeCoinGecko, load_fixture

NEW_MARKETS = "markets/markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json"


def empty_warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(f"sqlite:///{tmp_path / 'empty' / 'warehouse.db'}", tmp_path / "empty")


def all_messages(at) -> str:
    return plain(
        "\n".join(str(e.value) for group in (at.error, at.warning, at.info, at.markdown, at.caption) for e in group)
    )


@pytest.mark.parametrize("api_reachable", [False, True], ids=["offline-sample", "live-api"])
def test_first_start_on_an_empty_database_offers_one_button_that_loads_data(
    tmp_path, use_warehouse, open_app, monkeypatch, api_reachable
):
    warehouse = use_warehouse(empty_warehouse(tmp_path))
    with FakeCoinGecko(markets=load_fixture(NEW_MARKETS)) as fake:
        fake.set_global(None)
        if api_reachable:
            monkeypatch.setenv("COINGECKO_BASE_URL", fake.base_url)
        at = open_app()
        assert not at.exception and not at.error
        assert at.title[0].value.startswith("👋 Welcome")
        assert "no market data yet" in all_messages(at)
        assert [b.label for b in at.main.button] == ["Load data"]
        assert not at.sidebar.button  # one button only: no sidebar refresh before there is data
        for path in PAGES.values():
            at.switch_page(path).run()
            assert not at.exception and not at.error
            assert at.title[0].value.startswith("👋 Welcome")

        at.switch_page(PAGES["overview"]).run()
        at.button(key="first_start_load").click().run()

    assert not at.exception and not at.error
    assert at.title[0].value == "📊 Market overview"
    assert metric(at, "Coins").value == "250"
    runs = recent_runs(make_engine(warehouse.settings().database_url))
    assert {r["trigger"] for r in runs} == {"button"}
    if api_reachable:
        assert [(r["source"], r["status"]) for r in runs] == [("api", "success")]
    else:  # the API attempt is recorded as failed, then the bundled sample is loaded
        assert [(r["source"], r["status"]) for r in runs] == [("sample", "success"), ("api", "failed")]
        assert any("sample data" in w.value for w in at.warning)


@pytest.mark.parametrize("page", list(PAGES))
def test_database_unreachable_names_the_problem_on_every_page(monkeypatch, open_app, page):
    monkeypatch.setenv("DATABASE_URL", "postgresql://dash:s3cret-pw@127.0.0.1:1/warehouse")
    at = open_app(page=page)
    assert not at.exception
    assert len(at.error) == 1
    message = plain(at.error[0].value)
    assert "The database cannot be reached" in message
    assert "127.0.0.1" in message
    assert "s3cret-pw" not in all_messages(at)  # the password is masked
    assert "DATABASE_URL" in all_messages(at)
    assert not chart_specs(at)


def test_missing_tables_are_named_with_what_to_do(tmp_path, use_warehouse, open_app):
    warehouse = use_warehouse(empty_warehouse(tmp_path))
    pipeline_runs.create(make_engine(warehouse.settings().database_url))  # a half-made schema
    at = open_app()
    assert not at.exception
    message = plain(at.error[0].value)
    assert "missing" in message
    assert "crypto_analytics_mart" in message and "market_history" in message
    assert "python -m pipeline run" in all_messages(at)
    assert at.button(key="first_start_load")


def test_invalid_settings_are_reported_not_raised(monkeypatch, open_app):
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    at = open_app()
    assert not at.exception
    assert "DATABASE_URL must start with" in plain(at.error[0].value)


def test_a_table_vanishing_mid_session_gives_a_message_not_a_traceback(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    at = open_app()
    engine = make_engine(fresh_warehouse.settings().database_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE market_segment_analysis"))
    data.load_segments.clear()  # the probe's cached answer still says "ok", as it would for a few seconds
    at.switch_page(PAGES["segments"]).run()
    assert not at.exception
    assert "could not be read" in at.error[0].value
    assert "no such table: market_segment_analysis" in plain(at.error[0].value)


HOSTILE_NAME = "<img src=x onerror=alert(1)> **Evil** [click](http://evil.example) :red[x] $a$"
HOSTILE_SYMBOL = "<b>x</b>"


@pytest.fixture
def hostile_warehouse(tmp_path, monkeypatch) -> Warehouse:
    """A warehouse whose top coin got a hostile name from 'the API' (loaded by the real pipeline)."""
    markets = load_fixture(NEW_MARKETS)
    markets[0]["name"], markets[0]["symbol"] = HOSTILE_NAME, HOSTILE_SYMBOL
    from pipeline.db import utcnow

    now = f"{utcnow():%Y-%m-%dT%H:%M:%S}.000Z"  # served as live data: not stale records (PIPELINE_STALE_RECORD_HOURS)
    for record in markets:
        record["last_updated"] = now
    warehouse = empty_warehouse(tmp_path)
    with FakeCoinGecko(markets=markets) as fake:
        fake.set_global(None)
        settings = Warehouse.settings(warehouse)
        from dataclasses import replace

        run_pipeline(
            replace(
                settings, coingecko_base_url=fake.base_url, calls_per_minute=0, max_retries=0, backoff_base_seconds=0
            ),
            trigger="cli",
            source="api",
        )
    return warehouse


def test_coin_names_are_shown_as_text_never_as_markup(hostile_warehouse, use_warehouse, open_app):
    use_warehouse(hostile_warehouse)
    at = open_app(page="coin")
    assert not at.exception
    coin_id = at.selectbox(key="coin_id").value
    assert coin_id == "bitcoin"
    header = at.subheader[0].value
    # every markdown/HTML character is escaped, links are broken up invisibly
    assert "\\<img src\\=x onerror\\=alert\\(1\\)\\>" in header
    assert "\\*\\*Evil\\*\\*" in header and "\\[click\\]" in header and "\\$a\\$" in header
    assert "http\\:\u2060//" in header
    specs = json.dumps(chart_specs(at))
    assert "<img" not in specs and "<b>x</b>" not in specs
    assert "&lt;img src=x onerror=alert(1)&gt;" in specs
    at.switch_page(PAGES["overview"]).run()
    treemap = json.dumps(chart_specs(at)[1])
    assert "&lt;B&gt;X&lt;/B&gt;" in treemap and "<B>X</B>" not in treemap
