"""Range buttons and the log switch on the Overview (market over time), Dominance and Coin pages, on
SQLite and PostgreSQL warehouses with history: loaded by the real pipeline from real recorded bodies
served by the fake CoinGecko (the bundled 2022-10-16 sample, a year of bitcoin's daily history to
2022-11-27 by backfill, then the 2024-12-19 top 250 fetched now), plus 45 days of 15-minute market_history points before the newest
snapshot (a dense series to thin; gold rows shaped like the newest one)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import insert, select, text

from pipeline import rollups
from pipeline.backfill import run_backfill
from pipeline.db import make_engine
from pipeline.flow import run_pipeline
from pipeline.schema import market_history
from tests.conftest import ADMIN_URL, _admin_connect, make_settings, postgres_available
from tests.dashboard.helpers import Warehouse, chart_specs, plain, plotly_values
from tests.dashboard.test_app_pages import assert_clean
from tests.fakes.coingecko import FakeCoinGecko, load_fixture

NEW_MARKETS = "markets/markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json"
DENSE_DAYS, STEP = 45, timedelta(minutes=15)


def _build(database_url: str, data_dir) -> Warehouse:
    with FakeCoinGecko() as fake:
        settings = make_settings(database_url, data_dir, fake.base_url)
        assert run_pipeline(settings, source="sample").status == "success"  # 2022-10-16 09:28:53, top 250
        run_backfill(settings, days=365, top=1, now=datetime(2022, 11, 27, 10, 0))  # bitcoin, daily
        fake.set_markets(load_fixture(NEW_MARKETS))
        assert run_pipeline(settings, source="api").status == "success"  # 2024-12-19's top 250, fetched now
    engine = make_engine(database_url)
    with engine.begin() as conn:
        newest = dict(
            conn.execute(select(market_history).order_by(market_history.c.snapshot_at.desc()).limit(1)).mappings().one()
        )
        steps = int(timedelta(days=DENSE_DAYS) / STEP)
        rows = [
            {
                **newest,
                "snapshot_at": newest["snapshot_at"] - STEP * i,
                "total_market_cap": newest["total_market_cap"] * (1 - i / (steps * 4)),
            }
            for i in range(1, steps + 1)
        ]
        conn.execute(insert(market_history), rows)
        rollups.refresh(conn, None)  # what a run does after gold: the dense points reach the rollups
    return Warehouse(database_url, data_dir)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def history_warehouse(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"ranges-{request.param}")
    if request.param == "sqlite":
        yield _build(f"sqlite:///{data_dir / 'warehouse.db'}", data_dir)
        return
    problem = postgres_available()
    if problem:
        pytest.skip(problem)
    name = f"test_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _build(f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}", data_dir)
    finally:
        make_engine.cache_clear()
        with _admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def newest_snapshot(warehouse: Warehouse) -> pd.Timestamp:
    with make_engine(warehouse.database_url).connect() as conn:
        return pd.Timestamp(conn.execute(text("SELECT max(snapshot_at) FROM market_history")).scalar())


def chart(at, title_part: str) -> dict:
    found = [spec for spec in chart_specs(at) if title_part in spec["layout"]["title"]["text"]]
    assert found, [spec["layout"]["title"]["text"] for spec in chart_specs(at)]
    return found[0]


def times_of(trace: dict) -> pd.Series:
    return pd.to_datetime(pd.Series(plotly_values(trace["x"])), format="ISO8601").dropna()


def captions(at) -> str:
    return " ".join(plain(c.value) for c in at.caption)


def test_overview_market_over_time_follows_the_range_buttons_and_the_log_switch(
    history_warehouse, use_warehouse, open_app
):
    use_warehouse(history_warehouse)
    newest = newest_snapshot(history_warehouse)
    at = open_app()
    assert_clean(at)
    assert at.segmented_control(key="overview_range").value == "30d"  # the default, not in the URL
    assert "range" not in at.query_params
    spec = chart(at, "Market cap and 24h volume, last 30 days")
    names = [t["name"] for t in spec["data"]]
    assert names[0].startswith("Market cap") and any(n.startswith("24h volume") for n in names)
    times = times_of(spec["data"][0])
    assert times.max() == newest and times.min() >= newest - timedelta(days=30)
    assert len(times) <= 2000  # 30 days of 15-minute points (2,880) thinned
    assert "thinned" in captions(at)
    assert spec["layout"]["yaxis"]["type"] == "linear"

    at.segmented_control(key="overview_range").set_value("7d").run()
    assert_clean(at)
    assert at.query_params["range"] == "7d"
    spec = chart(at, "last 7 days")
    times = times_of(spec["data"][0])
    assert times.min() >= newest - timedelta(days=7) and len(times) == 7 * 96 + 1  # every point: no thinning

    at.toggle(key="overview_log").set_value(True).run()
    assert_clean(at)
    assert at.query_params["log"] == "1"
    spec = chart(at, "last 7 days")
    assert spec["layout"]["yaxis"]["type"] == spec["layout"]["yaxis2"]["type"] == "log"


def test_overview_all_from_the_link_reaches_the_first_snapshot(history_warehouse, use_warehouse, open_app):
    use_warehouse(history_warehouse)
    at = open_app(page_query={"range": "all", "log": "1"})
    assert_clean(at)
    assert at.segmented_control(key="overview_range").value == "all"
    assert at.toggle(key="overview_log").value is True
    spec = chart(at, "all history")
    times = pd.concat([times_of(t) for t in spec["data"] if t["name"].startswith("Market cap")])
    assert times.min() == pd.Timestamp("2022-10-16 09:28:53")  # the first pipeline snapshot
    assert at.query_params["range"] == "all" and at.query_params["log"] == "1"


def test_dominance_history_gets_the_same_ranges(history_warehouse, use_warehouse, open_app):
    use_warehouse(history_warehouse)
    newest = newest_snapshot(history_warehouse)
    at = open_app(page="dominance", page_query={"range": "24h"})
    assert_clean(at)
    assert at.segmented_control(key="dominance_range").value == "24h"
    assert "dominance_log" not in [t.key for t in at.toggle]  # shares need no log scale
    spec = chart(at, "Dominance over time, last 24 hours")
    times = times_of(spec["data"][0])
    assert times.min() >= newest - timedelta(hours=24) and times.max() == newest
    assert at.query_params["range"] == "24h"

    at.segmented_control(key="dominance_range").set_value("1y").run()
    assert_clean(at)
    spec = chart(at, "last year")
    assert times_of(spec["data"][0]).min() < newest - timedelta(days=DENSE_DAYS - 1)


def test_coin_page_price_volume_market_cap_and_rank_over_the_range(history_warehouse, use_warehouse, open_app):
    use_warehouse(history_warehouse)
    at = open_app(page="coin", page_query={"coin": "bitcoin", "range": "max"})
    assert_clean(at)
    assert at.segmented_control(key="coin_range").value == "max"
    spec = chart(at, "price, volume, market cap and rank (max)")
    assert [t["name"] for t in spec["data"]] == ["Price", "24h volume", "Market cap", "Rank"]
    price_times = times_of(spec["data"][0])
    assert len(price_times) == 366 + 2  # a year of backfilled days and the two snapshots
    ranks = [r for r in plotly_values(spec["data"][3]["y"]) if r is not None and r == r]
    assert ranks == [1.0, 1.0]  # rank from the two snapshots only
    low, high = spec["layout"]["yaxis4"]["range"]
    assert low > high  # the rank axis reversed: #1 on top
    assert at.query_params["range"] == "max"

    at.segmented_control(key="coin_range").set_value("30d").run()
    assert_clean(at)
    spec = chart(at, "(30d)")
    assert len(times_of(spec["data"][0])) == 1  # only the newest snapshot within 30 days of it
    at.toggle(key="coin_log").set_value(True).run()
    assert chart(at, "(30d)")["layout"]["yaxis"]["type"] == "log"
    assert at.query_params["log"] == "1" and at.query_params["coin"] == "bitcoin"


def test_a_coin_that_left_the_top_list_stays_reachable(history_warehouse, use_warehouse, open_app):
    use_warehouse(history_warehouse)
    with make_engine(history_warehouse.database_url).connect() as conn:
        gone = conn.execute(
            text(
                "SELECT id, name FROM staging_crypto_market WHERE snapshot_at = "
                "(SELECT min(snapshot_at) FROM staging_crypto_market) "
                "AND id NOT IN (SELECT id FROM crypto_analytics_mart) ORDER BY market_cap_rank LIMIT 1"
            )
        ).one()
    at = open_app(page="coin")
    labels = at.selectbox(key="coin_id").options  # the picker lists every coin ever seen
    assert any(label.startswith(gone.name) and "last seen 2022-10-16" in label for label in labels)

    at = open_app(page="coin", page_query={"coin": gone.id})
    assert_clean(at)
    assert at.selectbox(key="coin_id").value == gone.id
    note = next(plain(i.value) for i in at.info if "Not in the latest top" in i.value)
    assert "Not in the latest top 250 (last seen 2022-10-16 09:28 UTC at rank #" in note
    assert not at.metric  # no current figures
    spec = chart(at, "price, volume, market cap and rank")
    assert len(times_of(spec["data"][0])) == 1  # its one snapshot, drawn
    assert at.query_params["coin"] == gone.id


def test_a_range_longer_than_the_data_says_what_it_covers(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    at = open_app(page_query={"range": "90d"})
    assert_clean(at)
    assert "Only one point so far (2022-10-16 09:28 UTC)" in captions(at)

    with make_engine(fresh_warehouse.database_url).begin() as conn:
        newest = dict(conn.execute(select(market_history)).mappings().one())
        conn.execute(
            insert(market_history),
            [{**newest, "snapshot_at": newest["snapshot_at"] - timedelta(days=d)} for d in range(1, 42)],
        )
    st.cache_data.clear()  # rows written behind the pipeline's back: no run changed the data version
    at = open_app(page_query={"range": "90d"})
    assert_clean(at)
    assert "History starts 2022-09-05: showing 41 days." in captions(at)


def test_long_ranges_read_a_rollup_whose_rows_are_each_buckets_newest_point(history_warehouse):
    """A range holding more than MAX_POINTS snapshots is read from the hourly or daily rollup
    (ranges.pick_grain), so 35,000 rows never cross the driver: each row is the newest market_history
    point of its bucket, and the window still says how many raw points it stands for."""
    from dashboard import data, ranges

    url = history_warehouse.database_url
    everything = data._frame(url, data._market_window_statement(None))
    times = pd.to_datetime(everything["snapshot_at"])
    for key, freq in (("30d", "h"), ("all", "D")):
        window = data.load_market_history_range.__wrapped__(url, "v", key)
        inside = everything if window.since is None else everything[times >= pd.Timestamp(window.since)]
        assert window.points == len(inside) > ranges.MAX_POINTS
        buckets = pd.to_datetime(inside["snapshot_at"]).dt.floor(freq)
        newest = inside[~buckets.duplicated(keep="last").to_numpy()]
        assert list(window.frame["snapshot_at"]) == list(newest["snapshot_at"]), key
        assert list(window.frame.columns) == list(everything.columns)
        assert len(window.frame) <= ranges.MAX_POINTS
    short = data.load_market_history_range.__wrapped__(url, "v", "7d")  # 673 points: raw snapshots
    assert short.points == len(short.frame) == 7 * 96 + 1
