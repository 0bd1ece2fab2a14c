"""Segments: the market_segment_analysis table and charts comparing market-cap categories."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, data, frames, state, ui
from dashboard import formatting as fmt

view = state.view()
ui.page_header(
    "🧩 Segments",
    f"The market split by market-cap category ({fmt.category_ranges('market_cap_category')}): size, volume, "
    "breadth and risk side by side.",
)

all_segments = data.load_segments(view.database_url, view.version)
segments = frames.filter_by_category(all_segments, view.categories)

if not ui.nothing_to_show(segments, "segments"):
    segments = frames.complete_segments(segments, view.categories)  # a category without coins shows as 0
    table = segments.assign(segment=lambda f: [fmt.category_label(c) for c in f["market_cap_category"]])
    # "Share of whole market" only when gold had CoinGecko's /global; otherwise it is a share of the
    # top-N coins (derivative tokens left out of the total) and is labelled so, never passed off as the market.
    basis = frames.frame_basis(all_segments)
    tracked = int(all_segments["coin_count"].sum()) if "coin_count" in all_segments else 0
    scope = frames.basis_scope(basis, tracked)
    if frames.is_top_n(basis):
        st.warning(
            f"**No whole-market figures for this snapshot** (no usable CoinGecko /global): "
            f'"Share of {scope}" is each segment\'s share of the {scope}, derivative tokens left out of the '
            'total; "Share of tracked cap" counts every tracked coin.',
            icon="ℹ️",
        )
        table = table.rename(columns={"market_dominance_pct": f"share_of_top_{tracked}_coins_pct"})
    ui.render_table(
        table,
        "market_segments",
        {
            "segment": st.column_config.TextColumn("Segment"),
            "coin_count": st.column_config.NumberColumn("Coins", format="%d"),
            "total_market_cap": st.column_config.NumberColumn("Market cap (USD)", format="compact"),
            "market_cap_share_pct": st.column_config.NumberColumn("Share of tracked cap", format="%.1f%%"),
            **(
                {
                    f"share_of_top_{tracked}_coins_pct": st.column_config.NumberColumn(
                        f"Share of {scope}", format="%.1f%%"
                    )
                }
                if frames.is_top_n(basis)
                else {"market_dominance_pct": st.column_config.NumberColumn("Share of whole market", format="%.1f%%")}
            ),
            "total_volume": st.column_config.NumberColumn("24h volume (USD)", format="compact"),
            "avg_price_change_24h": st.column_config.NumberColumn("Avg 24h change", format="%+.2f%%"),
            "median_price_change_24h": st.column_config.NumberColumn("Median 24h change", format="%+.2f%%"),
            "avg_volatility_24h": st.column_config.NumberColumn("Avg 24h volatility", format="%.2f%%"),
            "avg_volume_to_mcap_ratio": st.column_config.NumberColumn("Avg volume / cap", format="%.3f"),
            "gainers_count": st.column_config.NumberColumn("Gainers", format="%d"),
            "losers_count": st.column_config.NumberColumn("Losers", format="%d"),
        },
        key="segments_table",
    )

    left, right = st.columns(2)
    with left:
        ui.render_chart(charts.create_segment_share_chart(segments), key="segments_share")
        ui.render_chart(charts.create_segment_breadth_chart(segments), key="segments_breadth")
    with right:
        ui.render_chart(charts.create_segment_change_chart(segments), key="segments_change")
        ui.render_chart(charts.create_segment_risk_chart(segments), key="segments_risk")
