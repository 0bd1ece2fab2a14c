"""Overview: the whole market at a glance (headline figures, top movers, market map)."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data, frames, ranges, state, ui
from dashboard import formatting as fmt

OVERVIEW_MIN_VOLUME = 1_000_000  # top movers ignore coins that traded less than this in 24h
DELTA_HOURS, DELTA_TOLERANCE_HOURS = 24, 2  # history deltas compare with the snapshot 24 h ± 2 h earlier

view = state.view()
ui.page_header(
    "📊 Market overview",
    "Headline figures, the biggest movers of the last 24 hours and a market map "
    "sized by market cap and coloured by 24h price change.",
)

all_coins = data.load_mart(view.database_url, view.version)
coins = view.filter_coins(all_coins)
history = data.load_market_history(view.database_url, view.version)

if not ui.nothing_to_show(coins):
    latest = history.iloc[-1] if not history.empty else None
    # Like for like: the snapshot nearest to 24 h earlier (± 2 h), over the same coin universe and
    # dominance basis; none, no delta (never "vs 214 days earlier" nor "vs 68 s earlier").
    previous = (
        None
        if latest is None
        else frames.comparable_snapshot(
            history,
            latest["snapshot_at"],
            DELTA_HOURS,
            DELTA_TOLERANCE_HOURS,
            coin_count=latest["coin_count"],
            dominance_basis=latest["dominance_basis"],
        )
    )
    # Whole-market figures are gold's totals of the mart's dominance basis: CoinGecko's /global, or
    # (no usable /global) the top-N coins, labelled so everywhere, with the reason next to the figures.
    basis = frames.frame_basis(all_coins)
    market_scope = frames.basis_scope(basis, len(all_coins))
    if view.categories or state.watch_only():  # figures of the selection, not the whole market
        market_cap, volume = coins["market_cap"].sum(), coins["total_volume"].sum()
        change_24h = frames.implied_change_pct(coins)
        scope = "selection"
    else:
        totals = frames.basis_totals(all_coins)
        market_cap = totals["market_cap"] if totals["market_cap"] is not None else all_coins["market_cap"].sum()
        volume = totals["volume"] if totals["volume"] is not None else all_coins["total_volume"].sum()
        change_24h = totals["change_24h"] if totals["change_24h"] is not None else frames.implied_change_pct(coins)
        scope = market_scope
    dominance_scope = (
        market_scope if latest is None else frames.basis_scope(latest.get("dominance_basis"), latest.get("coin_count"))
    )
    if frames.is_top_n(basis):
        st.warning(
            f"**Figures are for the {market_scope}, not the whole market**: {frames.basis_reason(all_coins)}. "
            f"Market cap, volume, 24h change and dominance below are of the {market_scope} "
            "(wrapped, liquid-staking and bridged tokens left out of the totals, so nothing counts twice).",
            icon="ℹ️",
        )

    gap = (
        ""
        if latest is None or previous is None
        else f"vs {fmt.format_age(latest['snapshot_at'] - previous['snapshot_at'])} earlier"
    )

    def pp_delta(column: str) -> str | None:
        if latest is None or previous is None:
            return None
        return f"{fmt.format_pp(latest[column] - previous[column])} {gap}"

    volume_delta = None
    if not view.categories and latest is not None and previous is not None and previous["total_volume"]:
        volume_delta = f"{fmt.format_pct((latest['total_volume'] / previous['total_volume'] - 1) * 100, 1, True)} {gap}"
    gainers = int((coins["price_change_percentage_24h"] > 0).sum())
    losers = int((coins["price_change_percentage_24h"] < 0).sum())
    median_change = coins["price_change_percentage_24h"].median()

    row = st.columns(3) + st.columns(3)
    change_usd = None if change_24h is None else market_cap - market_cap / (1 + change_24h / 100.0)
    row[0].metric(
        "Total market cap" if scope == "whole market" else f"Market cap ({scope})",
        fmt.format_usd(market_cap),
        f"{'+' if change_usd >= 0 else ''}{fmt.format_usd(change_usd)} in 24h" if change_usd is not None else None,
        help=f"Combined market cap of the {scope}, in USD.",
        border=True,
    )
    row[1].metric(
        "24h volume" if scope == "whole market" else f"24h volume ({scope})",
        fmt.format_usd(volume),
        volume_delta,
        help=f"Trading volume of the {scope} over the last 24 hours, in USD.",
        border=True,
    )
    row[2].metric(
        "24h change" if scope == "whole market" else f"24h change ({scope})",
        fmt.format_pct(change_24h, 2, signed=True),
        f"{fmt.format_pct(median_change, 2, signed=True)} median coin",
        help="Change of the combined market cap over 24 hours; the delta is the median coin's price change.",
        border=True,
    )
    row[3].metric(
        "BTC dominance" if dominance_scope == "whole market" else f"BTC share of {dominance_scope}",
        fmt.format_pct(latest["btc_dominance_pct"], 1) if latest is not None else "—",
        pp_delta("btc_dominance_pct"),
        delta_color="off",
        help=f"Bitcoin's share of the {dominance_scope} market cap (not affected by the category filter).",
        border=True,
    )
    row[4].metric(
        "ETH dominance" if dominance_scope == "whole market" else f"ETH share of {dominance_scope}",
        fmt.format_pct(latest["eth_dominance_pct"], 1) if latest is not None else "—",
        pp_delta("eth_dominance_pct"),
        delta_color="off",
        help=f"Ethereum's share of the {dominance_scope} market cap (not affected by the category filter).",
        border=True,
    )
    row[5].metric(
        "Coins",
        fmt.format_count(len(coins)),
        f"{gainers} up · {losers} down in 24h",
        delta_color="off",
        delta_arrow="off",
        help=f"Coins shown (of {len(all_coins)} tracked), and how many rose or fell over 24 hours.",
        border=True,
    )

    movers_pool = frames.filter_min_volume(coins, OVERVIEW_MIN_VOLUME)
    gainers_frame, losers_frame = frames.top_movers(movers_pool, "price_change_percentage_24h", 8)
    left, right = st.columns([2, 3])
    with left:
        if gainers_frame.empty and losers_frame.empty:
            if not movers_pool.empty and frames.without_stale(movers_pool).empty:
                st.info(
                    "No movers to show: CoinGecko last updated every coin in view more than "
                    f"{view.settings.stale_record_hours:g} h before this snapshot, so none of their changes "
                    "is current (they are marked stale in the table below).",
                    icon="🔍",
                )
            else:
                st.info("No coin with at least $1M of 24h volume moved in the selection.", icon="🔍")
        else:
            ui.render_chart(
                charts.create_movers_chart(
                    gainers_frame, losers_frame, "24h", "Top movers, 24h (coins with ≥ $1M volume)"
                ),
                key="overview_movers",
            )
    with right:
        ui.render_chart(charts.create_market_treemap(coins), key="overview_treemap")

    # The market over time: gold's market_history over the chosen range (the category filter does not apply).
    st.subheader("The market over time")
    range_key, log = ui.render_range_controls("overview")
    window = data.load_market_history_range(view.database_url, view.version, range_key)
    ui.render_chart(
        charts.create_market_over_time_chart(
            window.frame, log=log, title=f"Market cap and 24h volume, {ranges.range_title(range_key)}"
        ),
        key="overview_market_history",
    )
    st.caption(
        " ".join(
            part
            for part in (
                ranges.window_caption(range_key, window.first, window.last, window.points, len(window.frame)),
                f"{dominance_scope.capitalize()} (not affected by the category filter); lines break across gaps "
                "in the data.",
            )
            if part
        )
    )

    with st.expander(f"All {len(coins)} coins in view", expanded=False):
        table, columns = frames.label_dominance_column(
            coins,
            ui.coin_columns(
                "market_cap_rank",
                "name",
                "symbol",
                "current_price",
                "market_cap",
                "total_volume",
                "price_change_percentage_1h",
                "price_change_percentage_24h",
                "price_change_percentage_7d",
                "market_dominance_pct",
                "market_cap_category",
                "liquidity_category",
                "stale_record",
            ),
            basis,
            len(all_coins),
            lambda label: st.column_config.NumberColumn(label, format="%.2f%%"),
        )
        ui.render_table(table, "coins_overview", columns, key="overview_table")
