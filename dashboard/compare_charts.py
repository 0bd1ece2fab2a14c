"""The Compare page's figures: frames from ``dashboard.analytics`` in, Plotly figures out. No Streamlit, no I/O.

Frames have one column per coin id; ``labels`` maps an id to the text shown for it (e.g. 'Bitcoin (BTC)'),
escaped here before it reaches Plotly (a coin name is external text). A NaN is a gap in a line and
"—" in the heatmap, never a number.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from dashboard import formatting as fmt
from dashboard.charts import COIN_PALETTE, _empty, _layout, note_single_snapshot

#: Diverging, centred on 0: -1 red, 0 light grey, +1 blue (colour-blind safe pair).
CORRELATION_SCALE = [[0.0, "#b2182b"], [0.25, "#ef8a62"], [0.5, "#f7f7f7"], [0.75, "#67a9cf"], [1.0, "#2166ac"]]
MISSING = "—"


def _label(labels: dict[str, str], coin_id: str) -> str:
    return fmt.escape_plotly(fmt.shorten(labels.get(coin_id, coin_id), fmt.DISPLAY_LIMIT))


def _unique(names: list[str], ids: list[str]) -> list[str]:
    """Category-axis labels must differ (Plotly merges equal ones): a repeated label gets its coin id."""
    return [
        f"{name} · {fmt.escape_plotly(coin_id)}" if names.count(name) > 1 else name for name, coin_id in zip(names, ids)
    ]


def _color(position: int) -> str:
    return COIN_PALETTE[position % len(COIN_PALETTE)]


def _hover_time(freq: str) -> str:
    return "%{x|%Y-%m-%d %H:%M} UTC" if freq == "h" else "%{x|%Y-%m-%d}"


def create_performance_chart(
    performance: pd.DataFrame, labels: dict[str, str], freq: str = "D", title: str = "Performance (100 = start)"
) -> go.Figure:
    """One line per coin, 100 at the common start: 150 means +50 % since then."""
    if performance.empty or performance.notna().sum().sum() == 0:
        return _empty(title, "No prices in this range")
    fig = go.Figure()
    for position, coin_id in enumerate(performance.columns):
        values = performance[coin_id]
        change = [None if pd.isna(v) else fmt.format_pct(v - 100.0, 1, signed=True) for v in values]
        fig.add_trace(
            go.Scatter(
                x=performance.index,
                y=values,
                mode="lines",
                name=_label(labels, coin_id),
                line={"color": _color(position), "width": 2},
                customdata=change,
                hovertemplate="%{fullData.name}<br>"
                + _hover_time(freq)
                + "<br>%{y:.1f} (%{customdata})<extra></extra>",
            )
        )
    fig.add_hline(y=100, line={"color": "#9ca3af", "dash": "dot", "width": 1})
    priced = pd.Series(performance.index[performance.notna().any(axis=1)])
    note_single_snapshot(fig, priced, "Only one price in this range so far: the lines appear with the next one")
    return _layout(fig, title, "Time (UTC)" if freq == "h" else "Date (UTC)", "Indexed price (start = 100)")


def create_correlation_heatmap(
    matrix: pd.DataFrame, labels: dict[str, str], title: str = "Correlation of returns"
) -> go.Figure:
    """An annotated coin x coin matrix on a fixed -1..1 diverging scale; undefined pairs show "—"."""
    if matrix.empty:
        return _empty(title, "No coins to compare")
    names = _unique([_label(labels, coin_id) for coin_id in matrix.columns], list(matrix.columns))
    values = matrix.to_numpy(dtype="float64")
    text = [[MISSING if math.isnan(v) else f"{v:.2f}" for v in row] for row in values]
    fig = go.Figure(
        go.Heatmap(
            z=[[None if math.isnan(v) else v for v in row] for row in values],
            x=names,
            y=names,
            zmin=-1,
            zmax=1,
            zmid=0,
            colorscale=CORRELATION_SCALE,
            text=text,
            texttemplate="%{text}",
            customdata=text,
            hovertemplate="%{y} / %{x}<br>correlation %{customdata}<extra></extra>",
            colorbar={"title": {"text": "r"}, "tickvals": [-1, -0.5, 0, 0.5, 1]},
            xgap=2,
            ygap=2,
        )
    )
    fig.update_yaxes(autorange="reversed")
    side = max(320, 80 + 48 * len(names))
    return _layout(fig, title, "Coin", "Coin", height=min(side, 640), legend=False)


def create_volatility_chart(
    volatility: pd.DataFrame, labels: dict[str, str], title: str = "Rolling 30-day volatility (annualised)"
) -> go.Figure:
    """One line per coin: the annualised standard deviation of daily log returns over the last 30 days, in %."""
    if volatility.empty or volatility.notna().sum().sum() == 0:
        return _empty(title, "Not enough daily history for a 30-day window")
    fig = go.Figure()
    for position, coin_id in enumerate(volatility.columns):
        fig.add_trace(
            go.Scatter(
                x=volatility.index,
                y=volatility[coin_id],
                mode="lines",
                name=_label(labels, coin_id),
                line={"color": _color(position), "width": 2},
                hovertemplate="%{fullData.name}<br>%{x|%Y-%m-%d}<br>%{y:.1f} %<extra></extra>",
            )
        )
    fig.update_yaxes(ticksuffix=" %", rangemode="tozero")
    return _layout(fig, title, "Date (UTC)", "Volatility (annualised, %)")
