"""Sectors: CoinGecko's categories ranked by market cap, their share of the market over time, the day's
movers, and a tracked sector's coins."""

from __future__ import annotations

import streamlit as st

from dashboard import data, frames, sector_charts, state, ui
from dashboard import formatting as fmt

FOCUS_KEY = state.page_key("sectors", "focus")
#: Sectors smaller than this are left out of the movers (a tiny sector's swing says little).
MOVERS_MIN_MARKET_CAP = 100e6

view = state.view()
ui.page_header(
    "🧭 Sectors",
    "CoinGecko's categories (sectors): market cap, share of the whole market, 24h change and volume, "
    "and the coins of the tracked sectors. Sectors overlap (bitcoin is in several), so shares do not add up.",
)

ranking = data.load_sector_ranking(view.database_url, view.version)
if ranking.empty:
    st.info(
        "No sector data yet: the pipeline fetches CoinGecko's categories on its own cadence "
        "(PIPELINE_SECTORS_EVERY_MINUTES, hourly by default) on scheduled and command-line runs.",
        icon="🧭",
    )
    st.stop()

snapshot = ranking["snapshot_at"].max()
st.caption(
    f"Sector snapshot {snapshot:%Y-%m-%d %H:%M} UTC · {len(ranking):,} sectors · data provided by CoinGecko."
    + ("" if ranking["global_snapshot_at"].notna().any() else " No usable /global for it: no share of the market.")
)

st.subheader("Ranking")
ui.render_chart(sector_charts.create_sector_ranking_chart(sector_charts.top_sectors(ranking)), "sectors_ranking")
names = sector_charts.sector_names(ranking)
table = ranking.assign(sector=[sector_charts.sector_label(c, names) for c in ranking["category_id"]])
ui.render_table(
    table,
    "sector_ranking",
    {
        "sector_rank": st.column_config.NumberColumn("Rank", format="%d"),
        "sector": st.column_config.TextColumn("Sector"),
        "category_id": st.column_config.TextColumn("Id"),
        "market_cap": st.column_config.NumberColumn("Market cap", format="dollar"),
        "share_of_market_pct": st.column_config.NumberColumn("Share of market", format="%.2f%%"),
        "market_cap_change_24h": st.column_config.NumberColumn("24h", format="%+.2f%%"),
        "volume_24h": st.column_config.NumberColumn("Volume 24h", format="dollar"),
        "tracked_coin_count": st.column_config.NumberColumn(
            "Tracked coins", format="%d", help="The sector's coins among the tracked top coins (tracked sectors only)"
        ),
    },
    height=400,
)

st.subheader("Share of the market over time")
history = data.load_sector_history(view.database_url, view.version)
tracked = ranking.loc[ranking["is_tracked"].astype(bool), "category_id"].tolist()
ui.render_chart(sector_charts.create_sector_share_chart(history, tracked), "sectors_share")

st.subheader("Movers (24h)")
top, bottom = sector_charts.sector_movers(ranking, min_market_cap=MOVERS_MIN_MARKET_CAP)
ui.render_chart(sector_charts.create_sector_movers_chart(top, bottom), "sectors_movers")
st.caption(f"Sectors of at least {fmt.format_usd(MOVERS_MIN_MARKET_CAP)} market cap, by CoinGecko's 24h change.")

st.subheader("A sector's coins")
if not tracked:
    st.info("No tracked sector has members yet (PIPELINE_TRACKED_SECTORS, fetched daily).", icon="🧭")
    st.stop()
if FOCUS_KEY not in st.session_state:
    wanted = state.query_param("focus") or state.selected_sector()
    st.session_state[FOCUS_KEY] = wanted if wanted in tracked else tracked[0]
focus = st.selectbox(
    "Sector",
    tracked,
    key=FOCUS_KEY,
    format_func=lambda c: sector_charts.sector_label(c, names),
)
state.set_query_param("focus", focus)
members = data.load_sector_member_ids(view.database_url, view.version, focus)
mart = data.load_mart(view.database_url, view.version)
coins = frames.filter_by_category(mart[mart["id"].isin(members)], view.categories)
if not ui.nothing_to_show(coins, "coins of this sector"):
    ui.render_table(
        coins,
        f"sector_{focus}_coins",
        ui.coin_columns(
            "market_cap_rank", "name", "symbol", "current_price", "market_cap", "price_change_percentage_24h"
        ),
    )
st.caption(
    f"{len(members):,} coins filed under this sector by CoinGecko (the first 250 by market cap); "
    f"{len(coins):,} of them among the tracked coins shown."
)
