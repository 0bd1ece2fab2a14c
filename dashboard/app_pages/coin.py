"""Coin: one coin's key figures, its price and market-cap history, and its 7-day sparkline."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data, state, ui
from dashboard import formatting as fmt

COIN_KEY = state.page_key("coin", "id")

view = state.view()
ui.page_header(
    "🪙 Coin",
    "Pick a coin (type to search) to see its key figures, its history from every snapshot the "
    "pipeline kept, and its last 7 days. The link keeps the coin (?coin=...).",
)

coins = view.filter_coins(data.load_mart(view.database_url, view.version))

if not ui.nothing_to_show(coins):
    by_id = coins.set_index("id", drop=False)
    options = list(by_id.index)
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
        row = by_id.loc[coin_id]
        rank = "" if fmt.is_missing(row["market_cap_rank"]) else f"#{int(row['market_cap_rank'])} "
        return f"{rank}{fmt.coin_label(row['name'], row['symbol'], limit=fmt.DISPLAY_LIMIT)}"

    coin_id = st.selectbox("Coin", options, key=COIN_KEY, format_func=label, help="Type a name or symbol to search.")
    state.set_query_param("coin", coin_id)
    ui.watch_toggle(coin_id, key="coin_watch_toggle")
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

    history = data.load_coin_history(view.database_url, view.version, coin_id)
    left, right = st.columns([3, 2])
    with left:
        ui.render_chart(charts.create_coin_history_chart(history, coin["name"], coin["symbol"]), key="coin_history")
        if len(history) < 2:
            st.caption("Only one snapshot of this coin so far: the history grows with every pipeline run.")
    with right:
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
            f"history_{coin_id}",
            {
                "ts": st.column_config.DatetimeColumn("Time (UTC)", format="YYYY-MM-DD HH:mm"),
                "price": st.column_config.NumberColumn("Price (USD)", format="$%.6g"),
                "market_cap": st.column_config.NumberColumn("Market cap (USD)", format="compact"),
                "total_volume": st.column_config.NumberColumn("24h volume (USD)", format="compact"),
                "origin": st.column_config.TextColumn("From"),
            },
            key="coin_history_table",
        )
