"""The Watchlist page's chart: each starred coin's last 7 days, as % change from the first point.

Pure: a frame of coins in (the Coins table loader's rows), a Plotly figure out.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard import charts, frames
from dashboard import formatting as fmt

TITLE = "Your watchlist over the last 7 days (% change)"


def performance_frame(coins: pd.DataFrame) -> pd.DataFrame:
    """One row per coin and sparkline point: id, label, ts, price, change_pct (from the coin's first point).

    A coin without a sparkline, or whose first price is not positive, is left out (no baseline)."""
    parts = []
    for _, coin in coins.iterrows():
        points = frames.sparkline_frame(coin.get("sparkline_7d"), coin.get("snapshot_at")).dropna()
        if points.empty or not points["price"].iloc[0] > 0:
            continue
        points["change_pct"] = (points["price"] / points["price"].iloc[0] - 1.0) * 100.0
        points["id"] = coin["id"]
        points["label"] = fmt.coin_label(coin.get("name"), coin.get("symbol"), limit=fmt.DISPLAY_LIMIT)
        parts.append(points)
    if not parts:
        return pd.DataFrame(columns=["id", "label", "ts", "price", "change_pct"])
    return pd.concat(parts, ignore_index=True)[["id", "label", "ts", "price", "change_pct"]]


def create_watchlist_performance_chart(coins: pd.DataFrame, title: str = TITLE) -> go.Figure:
    """Lines of % change over the 7-day sparkline, one per starred coin, with the price in the hover."""
    points = performance_frame(coins)
    if points.empty:
        return charts._empty(title, "No 7-day sparkline for these coins")
    fig = go.Figure()
    for position, (_, coin) in enumerate(points.groupby("id", sort=False)):
        label = fmt.escape_plotly(coin["label"].iloc[0])
        fig.add_trace(
            go.Scatter(
                x=coin["ts"],
                y=coin["change_pct"],
                mode="lines",
                name=label,
                line={"color": charts.COIN_PALETTE[position % len(charts.COIN_PALETTE)], "width": 2},
                customdata=[fmt.format_price(p) for p in coin["price"]],
                hovertemplate=f"<b>{label}</b><br>%{{x|%Y-%m-%d %H:%M}} UTC<br>%{{y:+.2f}}%"
                "<br>%{customdata}<extra></extra>",
            )
        )
    fig.add_hline(y=0, line={"color": charts.FLAT, "width": 1, "dash": "dot"})
    fig.update_yaxes(ticksuffix="%")
    return charts._layout(fig, title, "Time (UTC)", "Change since 7 days ago")
