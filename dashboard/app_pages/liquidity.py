"""Liquidity: how much of each coin's market cap trades in a day."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data, frames, state, ui
from pipeline.api import LIQUIDITY_CATEGORIES

view = state.view()
ui.page_header(
    "💧 Liquidity",
    "24h trading volume against market cap. A coin whose daily volume is a large share "
    "of its market cap is easy to trade; a low share means thin markets and bigger price impact.",
)

coins = view.filter_coins(data.load_mart(view.database_url, view.version))

if not ui.nothing_to_show(coins):
    left, right = st.columns([3, 2])
    with left:
        ui.render_chart(charts.create_liquidity_scatter(coins), key="liquidity_scatter")
    with right:
        counts = frames.category_counts(coins, "liquidity_category", LIQUIDITY_CATEGORIES)
        ui.render_chart(charts.create_liquidity_distribution_chart(counts), key="liquidity_distribution")

    count = st.columns([1, 2])[0].slider("Coins per list", 5, 25, 10, key=state.page_key("liquidity", "count"))
    most, least = frames.liquidity_extremes(coins, count)
    columns = ui.coin_columns(
        "market_cap_rank", "name", "symbol", "volume_to_mcap_ratio", "total_volume", "market_cap", "liquidity_category"
    )
    left, right = st.columns(2)
    with left:
        st.subheader("Most liquid")
        ui.render_table(most, "most_liquid", columns, key="liquidity_most")
    with right:
        st.subheader("Least liquid")
        ui.render_table(least, "least_liquid", columns, key="liquidity_least")
