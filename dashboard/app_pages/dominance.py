"""Dominance: how the market cap is shared between coins and categories, and over time."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data, frames, state, ui

view = state.view()
ui.page_header("🥧 Dominance", "Each coin's and each market-cap category's share of the total crypto market cap, "
               "and how Bitcoin, Ethereum and stablecoins' shares moved over time.")

coins = frames.filter_by_category(data.load_mart(view.database_url, view.version), view.categories)
segments = frames.complete_segments(  # a category without coins shows as 0, never disappears
    frames.filter_by_category(data.load_segments(view.database_url, view.version), view.categories), view.categories)
history = data.load_market_history(view.database_url, view.version)

if not ui.nothing_to_show(coins):
    top_n = st.columns([1, 2])[0].slider("Coins shown separately", 3, 20, 10,
                                         key=state.page_key("dominance", "top_n"))
    left, right = st.columns(2)
    with left:
        ui.render_chart(charts.create_dominance_donut(coins, top_n), key="dominance_donut")
    with right:
        ui.render_chart(charts.create_category_dominance_chart(segments), key="dominance_categories")
    if coins["dominance_basis"].eq("tracked_universe").any():
        st.caption("CoinGecko's global totals were unavailable for this snapshot: shares are of the tracked coins.")

    ui.render_chart(charts.create_dominance_history_chart(history), key="dominance_history")
    caption = "Whole market, one point per pipeline snapshot; the category filter does not apply to this chart."
    if len(history) < 2:
        caption += " Only one snapshot so far: the lines grow as the scheduler collects more."
    st.caption(caption)

    st.subheader("Share of the market by coin")
    ui.render_table(coins.sort_values("market_dominance_pct", ascending=False), "dominance_by_coin",
                    ui.coin_columns("market_cap_rank", "name", "symbol", "market_cap", "market_dominance_pct",
                                    "market_cap_category"), key="dominance_table")
