"""Watchlist: the starred coins' figures, and saving, loading or deleting the list under a name."""

from __future__ import annotations

import streamlit as st

from dashboard import coins_table, data, state, ui, watchlist_charts
from dashboard import formatting as fmt
from pipeline.api import WatchlistError

PICKER_KEY = state.page_key("watchlist", "coins")
NAME_KEY = state.page_key("watchlist", "name")
SAVED_KEY = state.page_key("watchlist", "saved")

COLUMNS = {
    "market_cap_rank": st.column_config.NumberColumn("#", width="small"),
    "image": st.column_config.ImageColumn("", width="small"),
    "coin": st.column_config.TextColumn("Coin", width="medium"),
    "current_price": st.column_config.NumberColumn("Price"),
    "price_change_percentage_1h": st.column_config.NumberColumn("1h"),
    "price_change_percentage_24h": st.column_config.NumberColumn("24h"),
    "price_change_percentage_7d": st.column_config.NumberColumn("7d"),
    "price_change_percentage_30d": st.column_config.NumberColumn("30d"),
    "total_volume": st.column_config.NumberColumn("24h volume"),
    "market_cap": st.column_config.NumberColumn("Market cap"),
    "distance_from_ath_pct": st.column_config.NumberColumn("From ATH"),
    "sparkline": st.column_config.LineChartColumn("Last 7 days", width="medium"),
}


def _picked() -> None:
    state.set_watched(st.session_state.get(PICKER_KEY, []))


view = state.view()
ui.page_header(
    "⭐ Watchlist",
    "The coins you starred (on the Coins table or a Coin page): their figures and last 7 days. The list is "
    "kept in the link (?watch=...); save it under a name to load it again anywhere. There are no accounts: "
    "anyone who knows a name can load, change or delete that list.",
)

all_coins = data.load_coins(view.database_url, view.version)
watched = state.watched()
labels = {
    row.id: fmt.coin_label(row.name, row.symbol, limit=fmt.DISPLAY_LIMIT)
    for row in all_coins[["id", "name", "symbol"]].itertuples()
}
st.session_state[PICKER_KEY] = watched  # the list may have changed elsewhere (the table, a Coin page)
st.multiselect(
    "Coins on the watchlist",
    list(dict.fromkeys([*watched, *all_coins["id"]])),
    key=PICKER_KEY,
    format_func=lambda coin_id: labels.get(coin_id, fmt.shorten(coin_id)),
    on_change=_picked,
    placeholder="Star coins on the Coins table, or pick them here",
)

listed = all_coins.set_index("id", drop=False).reindex([c for c in watched if c in labels])
shown = view.filter_coins(listed)
missing = [c for c in watched if c not in labels]
if missing:
    st.caption(
        f"Not in the newest snapshot (left the top coins, or not a CoinGecko id): "
        f"{fmt.escape_markdown(', '.join(fmt.shorten(c, 30) for c in missing[:10]))}"
        + (f" and {len(missing) - 10:,} more" if len(missing) > 10 else "")
    )

if not watched:
    st.info("Your watchlist is empty: tick ★ next to coins on the **Coins** page, or pick them above.", icon="⭐")
elif not ui.nothing_to_show(shown, reason=None if view.categories else "None of your starred coins is tracked now."):
    row = st.columns(3)
    row[0].metric("Coins", fmt.format_count(len(shown)), border=True)
    row[1].metric(
        "Combined market cap",
        fmt.format_usd(shown["market_cap"].sum()),
        help="The starred coins' market caps added up, in USD.",
        border=True,
    )
    row[2].metric(
        "Median 24h change",
        fmt.format_pct(shown["price_change_percentage_24h"].median(), 2, signed=True),
        help="The middle coin's 24-hour price change (each coin counts once, whatever its size).",
        border=True,
    )
    table = coins_table.table_frame(shown, watched).reset_index(drop=True)
    table = table[[c for c in COLUMNS if c in table.columns]]
    st.dataframe(
        coins_table.styled(table),
        column_config=COLUMNS,
        hide_index=True,
        width="stretch",
        key="watch_table",
        placeholder=ui.MISSING_CELL,
    )
    ui.render_chart(watchlist_charts.create_watchlist_performance_chart(shown), key="watchlist_performance")

st.subheader("Save or load by name")
current = state.watchlist_name()
left, right = st.columns(2)
with left:
    name = st.text_input(
        "Name",
        value=current or "",
        key=NAME_KEY,
        max_chars=60,
        placeholder="e.g. my layer 1s",
        help="Saving under an existing name replaces that list.",
    )
    if st.button("Save watchlist", icon="💾", key="watchlist_save", disabled=not watched):
        try:
            saved = data.store_watchlist(view.database_url, name, watched)
        except WatchlistError as exc:
            st.error(ui.error_markdown(exc), icon="✋")
        else:
            state.set_watchlist_name(saved.name)
            state.flash("success", f"Saved {len(saved.coin_ids):,} coins as “{fmt.escape_markdown(saved.name)}”.")
            st.rerun()
with right:
    saved_lists = data.load_watchlists(view.database_url)
    names = [w.name for w in saved_lists]
    counts = {w.name: len(w.coin_ids) for w in saved_lists}
    if not names:
        st.caption("No watchlist has been saved yet.")
    else:
        chosen = st.selectbox(
            "Saved watchlists",
            names,
            index=names.index(current) if current in names else 0,
            key=SAVED_KEY,
            format_func=lambda n: f"{fmt.shorten(n)} ({counts[n]:,} coins)",
        )
        load_col, delete_col = st.columns(2)
        if load_col.button("Load", icon="📂", key="watchlist_load", width="stretch"):
            loaded = data.find_watchlist(view.database_url, chosen)
            if loaded is None:
                st.warning("That watchlist was deleted meanwhile.")
            else:
                state.set_watched(loaded.coin_ids)
                state.set_watchlist_name(loaded.name)
                st.rerun()
        if delete_col.button("Delete", icon="🗑️", key="watchlist_delete", width="stretch"):
            data.remove_watchlist(view.database_url, chosen)
            if current == chosen:
                state.set_watchlist_name(None)
            state.flash("info", f"Deleted the watchlist “{fmt.escape_markdown(fmt.shorten(chosen))}”.")
            st.rerun()
if current:
    st.caption(
        f"This list is saved as “{fmt.escape_markdown(fmt.shorten(current))}”: the link (?watchlist=...) loads it "
        "again; changes since the last save are only in the link until you save."
    )
