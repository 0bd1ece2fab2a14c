"""Dominance: how the market cap is shared between coins and categories, and over time."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data, frames, ranges, state, ui

view = state.view()
ui.page_header(
    "🥧 Dominance",
    "Each coin's and each market-cap category's share of the total crypto market cap, "
    "and how Bitcoin, Ethereum and stablecoins' shares moved over time.",
)

all_coins = data.load_mart(view.database_url, view.version)
coins = view.filter_coins(all_coins)
segments = frames.complete_segments(  # a category without coins shows as 0, never disappears
    frames.filter_by_category(data.load_segments(view.database_url, view.version), view.categories), view.categories
)

if not ui.nothing_to_show(coins):
    top_n = st.columns([1, 2])[0].slider("Coins shown separately", 3, 20, 10, key=state.page_key("dominance", "top_n"))
    # Shares are of the mart's basis: the whole market (/global) or, without a usable /global, the top-N coins.
    basis = frames.frame_basis(all_coins)
    scope = frames.basis_scope(basis, len(all_coins))
    top_n_basis = frames.is_top_n(basis)
    if top_n_basis:
        st.warning(
            f"**Shares are of the {scope}, not the whole market**: {frames.basis_reason(all_coins)}. "
            "Wrapped, liquid-staking and bridged tokens are left out of the total.",
            icon="ℹ️",
        )
    left, right = st.columns(2)
    with left:
        ui.render_chart(
            charts.create_dominance_donut(
                coins,
                top_n,
                f"Share of the {scope}' market cap" if top_n_basis else "Share of the total crypto market cap",
                f"{scope}' market cap" if top_n_basis else "total market cap",
            ),
            key="dominance_donut",
        )
    with right:
        ui.render_chart(
            charts.create_category_dominance_chart(
                segments,
                f"Share of the {scope}' market cap by market-cap category"
                if top_n_basis
                else "Share of the total market cap by market-cap category",
                f"{scope}' market cap" if top_n_basis else "total market cap",
            ),
            key="dominance_categories",
        )

    st.subheader("Dominance over time")
    range_key, _ = ui.render_range_controls("dominance", log_switch=False)
    window = data.load_market_history_range(view.database_url, view.version, range_key)
    history = window.frame
    ui.render_chart(
        charts.create_dominance_history_chart(history, f"Dominance over time, {ranges.range_title(range_key)}"),
        key="dominance_history",
    )
    bases = set(history["dominance_basis"].map(frames.frame_basis_value)) if "dominance_basis" in history else set()
    if bases == {"top_n"}:
        caption = (
            "Top-N coins (no usable /global for any snapshot), one point per pipeline snapshot; the category "
            "filter does not apply to this chart."
        )
    elif bases == {"global", "top_n"}:
        caption = (
            "Solid lines: whole market (CoinGecko's /global); dotted: top-N coins, where no usable /global "
            "existed. One point per pipeline snapshot; lines break across gaps in the data; the category "
            "filter does not apply to this chart."
        )
    else:
        caption = (
            "Whole market, one point per pipeline snapshot; lines break across gaps in the data; the category "
            "filter does not apply to this chart."
        )
    if len(history) < 2 and window.first == window.last:
        caption += " Only one snapshot so far: the lines grow as the scheduler collects more."
    else:
        note = ranges.window_caption(range_key, window.first, window.last, window.points, len(history))
        caption += f" {note}" if note else ""
    st.caption(caption)

    st.subheader(f"Share of the {scope} by coin" if top_n_basis else "Share of the market by coin")
    table, columns = frames.label_dominance_column(
        coins.sort_values("market_dominance_pct", ascending=False),
        ui.coin_columns(
            "market_cap_rank", "name", "symbol", "market_cap", "market_dominance_pct", "market_cap_category"
        ),
        basis,
        len(all_coins),
        lambda label: st.column_config.NumberColumn(label, format="%.2f%%"),
    )
    ui.render_table(table, "dominance_by_coin", columns, key="dominance_table")
