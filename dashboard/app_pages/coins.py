"""Coins: every tracked coin in one searchable, sortable, paged table (the landing page); star coins here."""

from __future__ import annotations

import streamlit as st

from dashboard import coins_table, data, state, ui
from dashboard import formatting as fmt

SEARCH_KEY = state.page_key("coins", "search")
SORT_KEY = state.page_key("coins", "sort")
DESCENDING_KEY = state.page_key("coins", "descending")
SIZE_KEY = state.page_key("coins", "page_size")
PAGE_KEY = state.page_key("coins", "page")
EDITOR_GENERATION = state.page_key("coins", "editor_generation")
SHOWN_IDS = state.page_key("coins", "shown_ids")

COLUMNS = {
    "watched": st.column_config.CheckboxColumn(
        "★", help="Tick to star the coin: it joins your watchlist (kept in the link, ?watch=...)", width="small"
    ),
    "market_cap_rank": st.column_config.NumberColumn("#", help="Market-cap rank", width="small"),
    "image": st.column_config.ImageColumn("", width="small"),
    "coin": st.column_config.TextColumn("Coin", width="medium"),
    "current_price": st.column_config.NumberColumn("Price", width=115),
    "price_change_percentage_1h": st.column_config.NumberColumn("1h"),
    "price_change_percentage_24h": st.column_config.NumberColumn("24h"),
    "price_change_percentage_7d": st.column_config.NumberColumn("7d"),
    "price_change_percentage_30d": st.column_config.NumberColumn("30d"),
    "total_volume": st.column_config.NumberColumn("24h volume"),
    "market_cap": st.column_config.NumberColumn("Market cap"),
    "fully_diluted_valuation": st.column_config.NumberColumn("FDV", help="Fully diluted valuation"),
    "circulating_supply": st.column_config.NumberColumn("Circulating supply"),
    "max_supply": st.column_config.NumberColumn("Max supply", help="— : no maximum (or CoinGecko has none)"),
    "distance_from_ath_pct": st.column_config.NumberColumn("From ATH", help="Percent below the all-time high"),
    "sparkline": st.column_config.LineChartColumn("Last 7 days", width="medium"),
    "id": None,  # kept for the star, not shown
}


def _apply_stars() -> None:
    """The table's ticks -> the watchlist; a fresh table next run (its edits are now in the data)."""
    key = f"coins_editor_{st.session_state.get(EDITOR_GENERATION, 0)}"
    edits = (st.session_state.get(key) or {}).get("edited_rows", {})
    state.set_watched(coins_table.watched_after_edit(st.session_state.get(SHOWN_IDS, []), state.watched(), edits))
    st.session_state[EDITOR_GENERATION] = st.session_state.get(EDITOR_GENERATION, 0) + 1


view = state.view()
ui.page_header(
    "📋 Coins",
    "Every tracked coin of the newest snapshot: search, sort, page through them; tick ★ to star a coin for "
    "your watchlist. Prices in USD; the 7-day line is CoinGecko's sparkline.",
)

all_coins = data.load_coins(view.database_url, view.version)
coins = view.filter_coins(all_coins)

if not ui.nothing_to_show(coins):
    top = st.columns([3, 2, 1, 1, 1], vertical_alignment="bottom")
    query = top[0].text_input(
        "Search", key=SEARCH_KEY, placeholder="Name, symbol or id (e.g. bitcoin, ETH)", max_chars=100
    )
    sort_label = top[1].selectbox("Sort by", list(coins_table.SORTS), key=SORT_KEY)
    column, descending_default = coins_table.SORTS[sort_label]
    descending = top[2].toggle(
        "Largest first" if column != "name" else "Z to A",
        value=descending_default,
        key=f"{DESCENDING_KEY}_{column}",
    )
    size = top[3].selectbox("Rows per page", coins_table.PAGE_SIZES, index=2, key=SIZE_KEY)

    found = coins_table.sort_coins(coins_table.search(coins, query), column, descending)
    if found.empty:
        st.info(f"No coin's name, symbol or id contains “{fmt.escape_markdown(fmt.shorten(query))}”.", icon="🔍")
    else:
        pages = coins_table.page_count(len(found), size)
        page = 1
        if pages > 1:
            page = int(
                top[4].number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1, key=PAGE_KEY)
            )
        page = min(page, pages)
        shown = coins_table.page_slice(found, page, size)
        table = coins_table.table_frame(shown, state.watched()).reset_index(drop=True)
        st.session_state[SHOWN_IDS] = list(table["id"])
        first = (page - 1) * size + 1
        st.caption(
            f"Coins {first:,}–{first + len(table) - 1:,} of {len(found):,}"
            + (f" matching the search (of {len(coins):,})" if query and query.strip() else "")
            + f" · {len(state.watched()):,} starred. Click a column header to sort this page; "
            "“Sort by” orders every coin."
        )
        st.data_editor(
            coins_table.styled(table),
            column_config=COLUMNS,
            disabled=[c for c in table.columns if c != "watched"],
            hide_index=True,
            width="stretch",
            height=min(38 + 35 * len(table), 38 + 35 * 25),
            key=f"coins_editor_{st.session_state.get(EDITOR_GENERATION, 0)}",
            on_change=_apply_stars,
            row_height=35,
            placeholder=ui.MISSING_CELL,
        )
        snapshot_at = all_coins["snapshot_at"].max() if "snapshot_at" in all_coins.columns else None
        rows = f"{len(found):,} coin" + ("" if len(found) == 1 else "s")
        st.download_button(
            f"Download CSV ({rows})",
            data=lambda: ui.csv_bytes(coins_table.csv_frame(found, snapshot_at)),
            file_name=f"coins_{snapshot_at:%Y%m%dT%H%M}Z.csv" if snapshot_at is not None else "coins.csv",
            mime="text/csv",
            on_click="ignore",
            icon="⬇️",
            key="download_coins",
            help="Every coin matching the filters and the search (all pages), raw numbers, with the snapshot time.",
        )
