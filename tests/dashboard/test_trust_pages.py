"""Numbers an analyst can trust, on the pages: each card's delta is the change of its own figure,
deltas compare like with like (the snapshot 24 h earlier, same coin universe) or are not shown, and
an empty view says the real reason. Warehouses are loaded by the real pipeline (bundled real sample),
then one gold figure is set to the case under test."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from sqlalchemy import insert, select, update

from dashboard import charts, state
from pipeline.db import make_engine
from pipeline.schema import crypto_analytics_mart, market_history
from tests.dashboard.test_app_pages import assert_clean


def metric_like(at, *words: str):
    """The metric whose label holds every word (labels are reworded elsewhere; the figure is what counts)."""
    found = [m for m in at.metric if all(w.lower() in m.label.lower() for w in words)]
    assert found, f"no metric with {words}; have {[m.label for m in at.metric]}"
    return found[0]


def set_mart(warehouse, coin_id: str | None = None, **values) -> None:
    m = crypto_analytics_mart
    statement = update(m).values(**values)
    with make_engine(warehouse.database_url).begin() as conn:
        conn.execute(statement.where(m.c.id == coin_id) if coin_id else statement)


def newest_history(warehouse) -> dict:
    h = market_history
    with make_engine(warehouse.database_url).connect() as conn:
        return dict(conn.execute(select(h).order_by(h.c.snapshot_at.desc()).limit(1)).mappings().one())


def add_history(warehouse, latest: dict, before: timedelta, **changes) -> None:
    with make_engine(warehouse.database_url).begin() as conn:
        conn.execute(
            insert(market_history).values({**latest, "snapshot_at": latest["snapshot_at"] - before, **changes})
        )


# ---- Coin: the market-cap card's delta is the market cap's change ---------------------------


def test_coin_market_cap_card_shows_the_market_cap_change_not_the_price_change(
    fresh_warehouse, use_warehouse, open_app
):
    use_warehouse(fresh_warehouse)
    set_mart(fresh_warehouse, "bitcoin", market_cap_change_percentage_24h=1.234, price_change_percentage_7d=-9.87)
    at = open_app({"coin": "bitcoin"}, page="coin", page_query={"coin": "bitcoin"})
    assert_clean(at)
    card = metric_like(at, "market cap")
    assert "+1.23" in card.delta and "24h" in card.delta
    assert "9.87" not in (card.delta or "") and "7d" not in (card.delta or "")
    # The 7-day price change is still on the page: on the 7-day sparkline, which it colours.
    from tests.dashboard.helpers import chart_specs

    (spark,) = [s for s in chart_specs(at) if "last 7 days" in str(s["layout"]["title"])]
    assert "-9.9%" in str(spark["layout"]["title"]) and spark["data"][0]["line"]["color"] == charts.LOSS


def test_coin_market_cap_card_has_no_delta_when_the_api_sent_none(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    set_mart(fresh_warehouse, "bitcoin", market_cap_change_percentage_24h=None, price_change_percentage_7d=-9.87)
    at = open_app({"coin": "bitcoin"}, page="coin", page_query={"coin": "bitcoin"})
    assert_clean(at)
    assert not metric_like(at, "market cap").delta


# ---- Overview: 24h deltas only against the snapshot 24 h earlier -------------------------------


def test_overview_shows_no_delta_without_a_comparable_snapshot(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    latest = newest_history(fresh_warehouse)
    # 214 days earlier, 68 s earlier, and 24 h earlier but over another coin universe: none is comparable.
    add_history(fresh_warehouse, latest, timedelta(days=214), total_volume=latest["total_volume"] / 2.675)
    add_history(fresh_warehouse, latest, timedelta(seconds=68))
    add_history(fresh_warehouse, latest, timedelta(hours=24), coin_count=100, total_volume=1.0)
    at = open_app()
    assert_clean(at)
    assert not metric_like(at, "volume").delta
    assert not metric_like(at, "btc").delta and not metric_like(at, "eth").delta
    text = " ".join(str(m.delta) for m in at.metric)
    assert "days earlier" not in text and " s earlier" not in text


def test_overview_compares_with_the_snapshot_24h_earlier(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    latest = newest_history(fresh_warehouse)
    add_history(fresh_warehouse, latest, timedelta(seconds=68), total_volume=latest["total_volume"] * 0.999)
    add_history(
        fresh_warehouse,
        latest,
        timedelta(hours=23, minutes=30),
        total_volume=latest["total_volume"] / 2,
        btc_dominance_pct=latest["btc_dominance_pct"] - 1.5,
    )
    at = open_app()
    assert_clean(at)
    volume = metric_like(at, "volume").delta
    assert "+100.0" in volume and "23 h earlier" in volume
    btc = metric_like(at, "btc").delta
    assert "1.5" in btc and "23 h earlier" in btc


# ---- Trends: an empty list says the real reason -------------------------------------------------


def test_trends_says_the_data_has_no_7d_change(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    set_mart(fresh_warehouse, price_change_percentage_7d=None)
    at = open_app(page="trends")
    at.session_state[state.page_key("trends", "period")] = "7d"
    at.session_state[state.page_key("trends", "min_volume")] = 0
    at.run()
    assert_clean(at)
    infos = " ".join(i.value for i in at.info)
    assert "This data has no 7d change" in infos
    assert "Lower the minimum volume" not in infos and "match the current filter" not in infos
    # The 24h lists are still there: the reason is the data, not the filter.
    at.session_state[state.page_key("trends", "period")] = "24h"
    at.run()
    assert "This data has no" not in " ".join(i.value for i in at.info)


def test_sparkline_colours_follow_the_7d_change_in_their_titles(fresh_warehouse, use_warehouse, open_app):
    from tests.dashboard.helpers import chart_specs

    use_warehouse(fresh_warehouse)
    mart = pd.read_sql(
        "SELECT id, price_change_percentage_7d FROM crypto_analytics_mart", make_engine(fresh_warehouse.database_url)
    )
    set_mart(fresh_warehouse, price_change_percentage_7d=-0.4)  # every title says "-0.4 %"
    at = open_app(page="trends")
    assert_clean(at)
    (grid,) = [s for s in chart_specs(at) if "7-day price" in str(s.get("layout", {}).get("title", ""))]
    colours = {t["line"]["color"] for t in grid["data"]}
    assert len(colours) == 1 and len(mart) > 0
    assert all("-0.4" in a["text"] for a in grid["layout"]["annotations"] if "%" in a["text"])
