"""Segments: the market_segment_analysis table and charts comparing market-cap categories."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data, frames, state, ui
from dashboard import formatting as fmt

view = state.view()
ui.page_header("🧩 Segments", "The market split by market-cap category (large ≥ $10B, mid $1B–10B, small "
               "$250M–1B, micro < $250M): size, volume, breadth and risk side by side.")

segments = frames.filter_by_category(data.load_segments(view.database_url, view.version), view.categories)

if not ui.nothing_to_show(segments, "segments"):
    segments = frames.complete_segments(segments, view.categories)  # a category without coins shows as 0
    table = segments.assign(
        segment=lambda f: [fmt.category_label(c) for c in f["market_cap_category"]])
    ui.render_table(table, "market_segments", {
        "segment": st.column_config.TextColumn("Segment"),
        "coin_count": st.column_config.NumberColumn("Coins", format="%d"),
        "total_market_cap": st.column_config.NumberColumn("Market cap (USD)", format="compact"),
        "market_cap_share_pct": st.column_config.NumberColumn("Share of tracked cap", format="%.1f%%"),
        "market_dominance_pct": st.column_config.NumberColumn("Share of whole market", format="%.1f%%"),
        "total_volume": st.column_config.NumberColumn("24h volume (USD)", format="compact"),
        "avg_price_change_24h": st.column_config.NumberColumn("Avg 24h change", format="%+.2f%%"),
        "median_price_change_24h": st.column_config.NumberColumn("Median 24h change", format="%+.2f%%"),
        "avg_volatility_24h": st.column_config.NumberColumn("Avg 24h volatility", format="%.2f%%"),
        "avg_volume_to_mcap_ratio": st.column_config.NumberColumn("Avg volume / cap", format="%.3f"),
        "gainers_count": st.column_config.NumberColumn("Gainers", format="%d"),
        "losers_count": st.column_config.NumberColumn("Losers", format="%d"),
    }, key="segments_table")

    left, right = st.columns(2)
    with left:
        ui.render_chart(charts.create_segment_share_chart(segments), key="segments_share")
        ui.render_chart(charts.create_segment_breadth_chart(segments), key="segments_breadth")
    with right:
        ui.render_chart(charts.create_segment_change_chart(segments), key="segments_change")
        ui.render_chart(charts.create_segment_risk_chart(segments), key="segments_risk")
