"""Trends: gainers and losers over 1h / 24h / 7d, trend categories and 7-day sparklines."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data, frames, state, ui
from dashboard import formatting as fmt
from pipeline.api import PRICE_TREND_CATEGORIES

MIN_VOLUME_CHOICES = [0, 100_000, 1_000_000, 10_000_000, 100_000_000]

view = state.view()
ui.page_header(
    "📈 Trends",
    "Who gained and lost the most, how the market splits into price trends, and the last "
    "week's price path of the largest coins.",
)

coins = view.filter_coins(data.load_mart(view.database_url, view.version))

if not ui.nothing_to_show(coins):
    controls = st.columns([2, 2, 3])
    period = (
        controls[0].segmented_control(
            "Period", list(frames.PERIOD_COLUMNS), default="24h", required=True, key=state.page_key("trends", "period")
        )
        or "24h"
    )
    min_volume = controls[1].selectbox(
        "Minimum 24h volume",
        MIN_VOLUME_CHOICES,
        index=2,
        key=state.page_key("trends", "min_volume"),
        format_func=lambda v: "No minimum" if v == 0 else f"≥ {fmt.format_usd(v, 0)}",
        help="Coins that barely trade can swing wildly; this keeps them off the lists.",
    )
    count = controls[2].slider("Coins per list", 5, 25, 10, key=state.page_key("trends", "count"))

    column = frames.PERIOD_COLUMNS[period]
    pool = frames.filter_min_volume(coins, min_volume)
    gainers, losers = frames.top_movers(pool, column, count)
    if gainers.empty and losers.empty:
        st.info(frames.why_no_movers(coins, pool, column, period, fmt.format_usd(min_volume, 0)), icon="🔍")
    else:
        ui.render_chart(charts.create_movers_chart(gainers, losers, period), key="trends_movers")
        table_columns = ui.coin_columns(
            "market_cap_rank", "name", "symbol", column, "current_price", "total_volume", "market_cap"
        )
        left, right = st.columns(2)
        with left:
            st.subheader(f"Top gainers, {period}")
            ui.render_table(gainers, f"gainers_{period}", table_columns, key="trends_gainers")
        with right:
            st.subheader(f"Top losers, {period}")
            ui.render_table(losers, f"losers_{period}", table_columns, key="trends_losers")

    counts = frames.category_counts(coins, "price_trend_category", PRICE_TREND_CATEGORIES)
    ui.render_chart(charts.create_trend_distribution_chart(counts), key="trends_distribution")

    top = coins.sort_values("market_cap", ascending=False).head(12)
    ui.render_chart(
        charts.create_sparkline_grid(top, title=f"7-day price of the {len(top)} largest coins in view"),
        key="trends_sparklines",
    )
