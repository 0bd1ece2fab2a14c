"""Coin: one coin's key figures, its price and market-cap history, and its 7-day sparkline."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data, ranges, state, ui
from dashboard import formatting as fmt

COIN_KEY = state.page_key("coin", "id")

view = state.view()
ui.page_header(
    "🪙 Coin",
    "Pick a coin (type to search) to see its key figures, its history from every snapshot the "
    "pipeline kept, and its last 7 days. The link keeps the coin (?coin=...).",
)

mart = data.load_mart(view.database_url, view.version)
coins = view.filter_coins(mart)
# Every coin ever seen stays reachable: coins of the newest snapshot first (by rank), then the ones that
# have left it (newest first). Those have no current category, so a category filter leaves them out.
directory = data.load_coin_directory(view.database_url, view.version)
former = (
    directory[~directory["id"].isin(mart["id"])].sort_values(["last_seen", "id"], ascending=[False, True])
    if not view.categories
    else directory.iloc[0:0]
)
if state.watch_only():  # "Only my watchlist": former coins too
    former = former[former["id"].isin(state.watched())]
former_by_id = former.set_index("id", drop=False)

if not ui.nothing_to_show(coins):
    by_id = coins.set_index("id", drop=False)
    options = list(by_id.index) + [c for c in former_by_id.index if c not in by_id.index]
    wanted = state.query_param("coin")
    if st.session_state.get(COIN_KEY) not in options:
        if wanted and wanted not in options:
            st.info(
                "The coin in the link is not among the coins in the selected categories; showing the largest "
                "one instead.",
                icon="🔍",
            )
        st.session_state[COIN_KEY] = wanted if wanted in options else options[0]

    def label(coin_id: str) -> str:
        if coin_id not in by_id.index:
            row = former_by_id.loc[coin_id]
            seen = "" if fmt.is_missing(row["last_seen"]) else f" · last seen {row['last_seen']:%Y-%m-%d}"
            name = coin_id if fmt.is_missing(row["name"]) else row["name"]
            return f"{fmt.coin_label(name, row['symbol'], limit=fmt.DISPLAY_LIMIT)}{seen}"
        row = by_id.loc[coin_id]
        rank = "" if fmt.is_missing(row["market_cap_rank"]) else f"#{int(row['market_cap_rank'])} "
        return f"{rank}{fmt.coin_label(row['name'], row['symbol'], limit=fmt.DISPLAY_LIMIT)}"

    coin_id = st.selectbox(
        "Coin",
        options,
        key=COIN_KEY,
        format_func=label,
        help="Type a name or symbol to search: every coin the pipeline ever tracked, including those that "
        "have left the top list.",
    )
    state.set_query_param("coin", coin_id)
    ui.watch_toggle(coin_id, key="coin_watch_toggle")
    current = coin_id in by_id.index

if not coins.empty and not current:
    gone = former_by_id.loc[coin_id]
    name = gone["name"] if not fmt.is_missing(gone["name"]) else coin_id
    st.subheader(fmt.escape_markdown(fmt.coin_label(name, gone["symbol"], limit=fmt.HEADING_LIMIT)))
    last_seen = (
        f"only in backfilled history, to {gone['last_seen']:%Y-%m-%d}"
        if fmt.is_missing(gone.get("market_cap_rank")) and fmt.is_missing(gone["name"])
        else f"last seen {gone['last_seen']:%Y-%m-%d %H:%M} UTC"
        + ("" if fmt.is_missing(gone.get("market_cap_rank")) else f" at rank #{int(gone['market_cap_rank'])}")
    )
    st.info(
        f"Not in the latest top {len(mart):,} ({last_seen}): no current figures, its history below.",
        icon="🕰️",
    )

if not coins.empty and current:
    coin = by_id.loc[coin_id]
    st.subheader(fmt.escape_markdown(fmt.coin_label(coin["name"], coin["symbol"], limit=fmt.HEADING_LIMIT)))
    st.caption(
        f"Rank #{fmt.format_count(coin['market_cap_rank'])} · "
        f"{fmt.escape_markdown(fmt.category_label(coin['market_cap_category']))} · liquidity "
        f"{fmt.escape_markdown(fmt.category_label(coin['liquidity_category'], short=True).lower())} · "
        f"24h trend {fmt.escape_markdown(fmt.category_label(coin['price_trend_category'], short=True).lower())}"
    )

    def change(column: str, period: str) -> str | None:
        value = coin[column]
        return None if fmt.is_missing(value) else f"{fmt.format_pct(value, 2, signed=True)} {period}"

    row = st.columns(4) + st.columns(4)
    row[0].metric(
        "Price", fmt.format_price(coin["current_price"]), change("price_change_percentage_24h", "24h"), border=True
    )
    row[1].metric(
        "Market cap",
        fmt.format_usd(coin["market_cap"]),
        change("market_cap_change_percentage_24h", "24h") if "market_cap_change_percentage_24h" in coin else None,
        help="Delta: market-cap change over 24 hours (CoinGecko's).",
        border=True,
    )
    row[2].metric(
        "24h volume",
        fmt.format_usd(coin["total_volume"]),
        f"{fmt.format_ratio(coin['volume_to_mcap_ratio'])} of market cap",
        delta_color="off",
        delta_arrow="off",
        border=True,
    )
    row[3].metric(
        "Share of market",
        fmt.format_pct(coin["market_dominance_pct"], 3),
        help="This coin's share of the total crypto market cap.",
        border=True,
    )
    row[4].metric(
        "24h volatility",
        fmt.format_pct(coin["price_volatility_24h"], 2),
        f"{fmt.format_price(coin['low_24h'])} – {fmt.format_price(coin['high_24h'])}",
        delta_color="off",
        delta_arrow="off",
        help="24h high minus low, as a percentage of the price; the delta shows the 24h low and high.",
        border=True,
    )
    row[5].metric(
        "All-time high",
        fmt.format_price(coin["ath"]),
        f"{fmt.format_pct(coin['distance_from_ath_pct'], 1, signed=True)} from ATH"
        if not fmt.is_missing(coin["distance_from_ath_pct"])
        else None,
        border=True,
    )
    row[6].metric("Circulating supply", fmt.format_supply(coin["circulating_supply"]), border=True)
    row[7].metric("1h change", fmt.format_pct(coin["price_change_percentage_1h"], 2, signed=True), border=True)


if not coins.empty:
    # History over the chosen range: silver snapshots plus backfilled days, for current and former coins.
    range_key, log = ui.render_range_controls("coin", all_label="max")
    window = data.load_coin_history_range(view.database_url, view.version, coin_id, range_key)
    history = window.frame
    shown = by_id.loc[coin_id] if current else former_by_id.loc[coin_id]
    shown_name = shown["name"] if not fmt.is_missing(shown["name"]) else coin_id
    range_label = "max" if range_key == "all" else range_key
    ui.render_chart(
        charts.create_coin_history_chart(history, shown_name, shown["symbol"], log=log, range_label=range_label),
        key="coin_history",
    )
    note = ranges.window_caption(range_key, window.first, window.last, window.points, len(history))
    st.caption(
        "Price, volume and market cap from every pipeline snapshot plus backfilled daily history; rank from "
        f"the snapshots only.{' ' + note if note else ''}"
    )
    if current:
        coin = by_id.loc[coin_id]
        ui.render_chart(
            charts.create_coin_sparkline_chart(
                coin["sparkline_7d"],
                coin["last_updated"] if not fmt.is_missing(coin["last_updated"]) else coin["snapshot_at"],
                coin["name"],
                coin["symbol"],
                change_7d=coin["price_change_percentage_7d"],
            ),
            key="coin_sparkline",
        )
    with st.expander("History table"):
        ui.render_table(
            history,
            f"history_{coin_id}_{range_label}",
            {
                "ts": st.column_config.DatetimeColumn("Time (UTC)", format="YYYY-MM-DD HH:mm"),
                "price": st.column_config.NumberColumn("Price (USD)", format="$%.6g"),
                "market_cap": st.column_config.NumberColumn("Market cap (USD)", format="compact"),
                "total_volume": st.column_config.NumberColumn("24h volume (USD)", format="compact"),
                "market_cap_rank": st.column_config.NumberColumn("Rank", format="%d"),
                "origin": st.column_config.TextColumn("From"),
            },
            key="coin_history_table",
        )
