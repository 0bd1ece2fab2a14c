"""Chart builders: DataFrame in, Plotly figure out. No Streamlit, no I/O.

Every figure has a title, axis titles with units and hover text written for
people (numbers pre-formatted by ``dashboard.formatting``). Coin names and
symbols come from an external API, so they are cut to a display length
(``formatting.shorten``: a name can be 100,000 characters) and pass through
``escape_plotly`` before they reach a label: Plotly renders some HTML in text,
and a name must only ever show as text.

Callers check for empty input and say so instead of drawing; the builders
still return a valid (empty) figure for an empty frame.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard import formatting as fmt
from dashboard.frames import PERIOD_COLUMNS, break_gaps, dominance_shares, is_top_n, parse_sparkline, sparkline_frame
from pipeline.api import LIQUIDITY_BANDS, LIQUIDITY_CATEGORIES, MARKET_CAP_CATEGORIES

GAIN = "#16a34a"
LOSS = "#dc2626"
FLAT = "#9ca3af"
NEUTRAL_GREY = "#cbd5e1"

MARKET_CAP_COLORS = {
    "large_cap": "#1e3a8a",
    "mid_cap": "#3b82f6",
    "small_cap": "#f59e0b",
    "micro_cap": "#a855f7",
    "unknown": FLAT,
}
LIQUIDITY_COLORS = {
    "high_liquidity": "#059669",
    "medium_liquidity": "#eab308",
    "low_liquidity": "#ea580c",
    "unknown": FLAT,
}
TREND_COLORS = {
    "strong_gain": "#15803d",
    "moderate_gain": "#86efac",
    "neutral": NEUTRAL_GREY,
    "moderate_loss": "#fca5a5",
    "strong_loss": "#b91c1c",
    "unknown": FLAT,
}
COIN_PALETTE = [
    "#f7931a",
    "#627eea",
    "#26a17b",
    "#f3ba2f",
    "#2775ca",
    "#23292f",
    "#0033ad",
    "#e84142",
    "#8247e5",
    "#c2a633",
    "#14b8a6",
    "#ec4899",
]

#: Red → grey → green for price changes, centred on 0.
CHANGE_SCALE = [[0.0, "#b91c1c"], [0.3, "#f87171"], [0.5, "#e5e7eb"], [0.7, "#4ade80"], [1.0, "#15803d"]]
CHANGE_CLIP = 10.0  # ±10% gets the strongest colour in the heatmap

PERIOD_LABELS = {"1h": "1 hour", "24h": "24 hours", "7d": "7 days"}
HEIGHT = 420


# -- shared helpers --------------------------------------------------------------


def _layout(
    fig: go.Figure,
    title: str,
    x_title: str | None = None,
    y_title: str | None = None,
    height: int = HEIGHT,
    legend: bool = True,
) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        hoverlabel={"align": "left"},
        showlegend=legend,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
    )
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    return fig


def _money_axis(axis: dict | None = None) -> dict:
    """Axis settings that show dollars as $1B / $10M (Plotly's 'B' format, not SI 'G')."""
    return {"tickprefix": "$", "exponentformat": "B", "showexponent": "all", **(axis or {})}


def _price_axis(prices) -> dict:
    """A price axis: '$19.5k' for big prices; plain decimals ('$0.000011', '$0.000000533') below $1,
    never Plotly's '$11µ' nor d3's '5.33e-7': fixed decimals, two digits past the smallest price's first."""
    known = pd.Series(prices, dtype="float64").dropna()
    if not known.empty and known.abs().max() < 1:
        smallest = known[known > 0].min() if (known > 0).any() else 0.01
        decimals = min(18, max(2, -math.floor(math.log10(smallest)) + 2))
        return {"tickprefix": "$", "tickformat": f",.{decimals}~f"}
    return {"tickprefix": "$", "exponentformat": "B"}


def _log_money_ticks(low: float, high: float) -> dict:
    """Tick values and '$1M'-style labels for a log axis covering [low, high]."""
    if not (low > 0 and high > 0) or math.isnan(low) or math.isnan(high):
        return {}
    start, stop = math.floor(math.log10(low)), math.ceil(math.log10(high))
    values = [10.0**e for e in range(start, stop + 1)]
    return {"tickvals": values, "ticktext": [fmt.format_usd(v, 0) for v in values]}


def _title_label(name, symbol, limit: int = 40) -> str:
    """'Name (SYM)' escaped for a chart title, shortened so a long name cannot push the title off the chart."""
    return fmt.escape_plotly(fmt.shorten(fmt.coin_label(name, symbol), limit))


def coin_names(frame: pd.DataFrame) -> list[str]:
    """Escaped 'Name (SYM)' labels for hover text, cut to the display length."""
    return [
        fmt.escape_plotly(fmt.coin_label(n, s, limit=fmt.DISPLAY_LIMIT)) for n, s in zip(frame["name"], frame["symbol"])
    ]


def coin_axis_labels(frame: pd.DataFrame) -> list[str]:
    """Short, unique, escaped labels for a category axis: the symbol, or 'SYM #rank' when two coins share it."""
    symbols = [
        fmt.escape_plotly("" if fmt.is_missing(s) else fmt.shorten(str(s).upper(), fmt.SYMBOL_LIMIT)) or "?"
        for s in frame["symbol"]
    ]
    ranks = list(frame["market_cap_rank"]) if "market_cap_rank" in frame.columns else [None] * len(frame)
    counts = pd.Series(symbols).value_counts()
    labels = []
    for position, (symbol, rank) in enumerate(zip(symbols, ranks)):
        if counts[symbol] > 1:
            suffix = f"#{int(rank)}" if not fmt.is_missing(rank) else f"{position + 1}"
            symbol = f"{symbol} {suffix}"
        labels.append(symbol)
    return labels


def _empty(title: str, message: str = "No data") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, legend=False)


def _single_time_range(times: pd.Series) -> dict:
    """With a single point in time, show a day either side instead of a microsecond-wide axis."""
    distinct = pd.Series(times).dropna().unique()
    if len(distinct) != 1:
        return {}
    moment = pd.Timestamp(distinct[0])
    return {"range": [moment - pd.Timedelta(hours=12), moment + pd.Timedelta(hours=12)], "tickformat": "%Y-%m-%d %H:%M"}


def note_single_snapshot(fig: go.Figure, times: pd.Series, message: str) -> go.Figure:
    """With fewer than two distinct times a line chart is lone dots on a millisecond-wide axis: give the
    axis a day around the point (``_single_time_range``) and say in the chart why there is no line yet."""
    if pd.Series(times).dropna().nunique() >= 2:
        return fig
    fig.update_xaxes(**_single_time_range(times))
    fig.add_annotation(
        text=message,
        showarrow=False,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.98,
        yanchor="top",
        bgcolor="rgba(127,127,127,0.12)",
    )
    return fig


def _single_value_range(values: pd.Series) -> dict:
    """With one distinct value, a ±5% band around it (Plotly would zoom to the 12th digit)."""
    distinct = pd.Series(values).dropna().unique()
    if len(distinct) != 1 or not distinct[0]:
        return {}
    value = float(distinct[0])
    return {"range": [value * 0.95, value * 1.05]}


def _change_color(value) -> str:
    if fmt.is_missing(value) or value == 0:
        return FLAT
    return GAIN if value > 0 else LOSS


# -- Overview --------------------------------------------------------------------


def create_market_treemap(
    mart: pd.DataFrame, title: str = "Market map: size is market cap, colour is 24h change"
) -> go.Figure:
    """Treemap of coins grouped by market-cap category, sized by market cap, coloured by 24h change."""
    coins = mart[mart["market_cap"].fillna(0) > 0]
    if coins.empty:
        return _empty(title)
    ids, labels, parents, values, colors, texts, hovers = [], [], [], [], [], [], []
    root = "All coins"
    total_cap = float(coins["market_cap"].sum())
    ids.append("root")
    labels.append(root)
    parents.append("")
    values.append(total_cap)
    colors.append(_weighted_change(coins))
    texts.append("")
    hovers.append(
        f"{root}<br>Market cap: {fmt.format_usd(total_cap)}<br>"
        f"24h change (cap-weighted): {fmt.format_pct(_weighted_change(coins), 2, signed=True)}"
    )
    for category in [c for c in MARKET_CAP_CATEGORIES if c in set(coins["market_cap_category"])]:
        group = coins[coins["market_cap_category"] == category]
        cap = float(group["market_cap"].sum())
        weighted = _weighted_change(group)
        ids.append(category)
        labels.append(fmt.category_label(category, short=True))
        parents.append("root")
        values.append(cap)
        colors.append(weighted)
        texts.append("")
        hovers.append(
            f"{fmt.category_label(category)}<br>{len(group)} coins, {fmt.format_usd(cap)}<br>"
            f"24h change (cap-weighted): {fmt.format_pct(weighted, 2, signed=True)}"
        )
    names = coin_names(coins)
    for (_, row), name, symbol in zip(coins.iterrows(), names, coin_axis_labels(coins)):
        value = row["price_change_percentage_24h"]
        ids.append(f"coin:{row['id']}")
        labels.append(symbol)
        parents.append(row["market_cap_category"])
        values.append(float(row["market_cap"]))
        colors.append(0.0 if fmt.is_missing(value) else float(value))
        texts.append(fmt.format_pct(value, 1, signed=True))
        hovers.append(
            f"<b>{name}</b><br>Price: {fmt.format_price(row['current_price'])}<br>"
            f"Market cap: {fmt.format_usd(row['market_cap'])}<br>"
            f"24h change: {fmt.format_pct(value, 2, signed=True)}<br>"
            f"24h volume: {fmt.format_usd(row['total_volume'])}"
        )
    fig = go.Figure(
        go.Treemap(
            ids=ids,
            labels=labels,
            parents=parents,
            values=values,
            branchvalues="total",
            text=texts,
            customdata=hovers,
            texttemplate="<b>%{label}</b><br>%{text}",
            hovertemplate="%{customdata}<extra></extra>",
            marker={
                "colors": colors,
                "colorscale": CHANGE_SCALE,
                "cmin": -CHANGE_CLIP,
                "cmax": CHANGE_CLIP,
                "cmid": 0,
                "showscale": True,
                "colorbar": {"title": {"text": "24h change (%)"}, "ticksuffix": "%", "thickness": 12},
            },
            pathbar={"visible": True},
            maxdepth=3,
            tiling={"pad": 1},
        )
    )
    return _layout(fig, title, height=560, legend=False)


def _weighted_change(frame: pd.DataFrame, column: str = "price_change_percentage_24h") -> float:
    known = frame[frame[column].notna() & frame["market_cap"].notna()]
    if known.empty or not known["market_cap"].sum():
        return 0.0
    return float((known[column] * known["market_cap"]).sum() / known["market_cap"].sum())


def create_movers_chart(
    gainers: pd.DataFrame, losers: pd.DataFrame, period: str = "24h", title: str | None = None
) -> go.Figure:
    """Horizontal bars: the biggest gainers (green, top) and losers (red, bottom) over a period."""
    column = PERIOD_COLUMNS[period]
    title = title or f"Top movers over {PERIOD_LABELS[period]}"
    # A category axis draws its first entry at the bottom: worst loser at the bottom, best gainer on top.
    movers = pd.concat([losers.sort_values(column), gainers.sort_values(column)], ignore_index=True)
    if movers.empty:
        return _empty(title, "No coin moved in this period")
    labels = coin_axis_labels(movers)
    values = movers[column].astype("float64")
    hover = [
        f"<b>{name}</b><br>{period} change: {fmt.format_pct(v, 2, signed=True)}<br>"
        f"Price: {fmt.format_price(p)}<br>24h volume: {fmt.format_usd(vol)}"
        for name, v, p, vol in zip(coin_names(movers), values, movers["current_price"], movers["total_volume"])
    ]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=[_change_color(v) for v in values],
            text=[fmt.format_pct(v, 1, signed=True) for v in values],
            textposition="outside",
            cliponaxis=False,
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
        )
    )
    fig.update_yaxes(type="category", automargin=True)
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    pad = (high - low) * 0.18 or 1.0  # room for the value printed beside each bar
    fig.update_xaxes(
        ticksuffix="%",
        zeroline=True,
        zerolinecolor="#6b7280",
        range=[low - (pad if low < 0 else 0), high + (pad if high > 0 else 0)],
    )
    height = max(HEIGHT, 24 * len(movers) + 120)
    return _layout(fig, title, f"Price change over {PERIOD_LABELS[period]} (%)", "Coin", height=height, legend=False)


# -- Market over time ----------------------------------------------------------------


def _basis_masks(points: pd.DataFrame, history: pd.DataFrame):
    """(kind, mask, dash, legend suffix, scope) per dominance basis, as the dominance chart draws them."""
    basis = points["dominance_basis"]
    top_n = basis.map(is_top_n).to_numpy()
    is_global = (basis.notna() & ~basis.map(is_top_n)).to_numpy()
    counts = (
        history.loc[history["dominance_basis"].map(is_top_n), "coin_count"]
        if "coin_count" in history.columns
        else pd.Series(dtype="float64")
    )
    top_label = (
        f"top {int(counts.iloc[-1]):,} coins" if not counts.empty and not pd.isna(counts.iloc[-1]) else "top N coins"
    )
    return top_label, [
        ("global", is_global, "solid", "", "whole market"),
        ("top_n", top_n, "dot", f" ({top_label})", top_label),
    ]


def create_market_over_time_chart(
    history: pd.DataFrame, log: bool = False, title: str = "Market cap and 24h volume over time"
) -> go.Figure:
    """Two panels on one time axis: the total market cap (top) and the 24h volume (below), from
    ``market_history``. Whole-market points (/global) are solid, top-N points dotted (never one line
    across a change of basis); lines break across gaps in the data. ``log``: both on log axes."""
    if history.empty:
        return _empty(title, "No market history yet")
    if "dominance_basis" not in history.columns:
        history = history.assign(dominance_basis="global")
    points = break_gaps(history).reset_index(drop=True)
    top_label, styles = _basis_masks(points, history)
    times = pd.to_datetime(points["snapshot_at"])
    mode = "lines+markers" if len(history) <= 60 else "lines"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.62, 0.38])
    drawn = set()
    for row, column, name, color in (
        (1, "total_market_cap", "Market cap", "#1e3a8a"),
        (2, "total_volume", "24h volume", "#f59e0b"),
    ):
        for kind, mask, dash, suffix, scope in styles:
            values = points[column].where(mask)
            if not values.notna().any():
                continue
            drawn.add(kind)
            fig.add_trace(
                go.Scatter(
                    x=times,
                    y=[None if pd.isna(v) else float(v) for v in values],
                    name=f"{name}{suffix}",
                    mode=mode,
                    connectgaps=False,
                    line={"color": color, "width": 2, "dash": dash},
                    customdata=[f"{fmt.format_usd(v)} ({scope})" for v in values],
                    hovertemplate=f"%{{x|%Y-%m-%d %H:%M}} UTC<br>{name}: %{{customdata}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
    all_times = pd.to_datetime(history["snapshot_at"])
    for row, column, label in ((1, "total_market_cap", "Market cap"), (2, "total_volume", "24h volume")):
        values = pd.to_numeric(history[column], errors="coerce")
        axis = _log_money_ticks(values[values > 0].min(), values.max()) if log and (values > 0).any() else {}
        fig.update_yaxes(
            title_text=f"{label} (USD{', log' if log else ''})",
            row=row,
            col=1,
            **_scale(log),
            **_money_axis({**axis, **_log_range(_single_value_range(values), log)}),
        )
    note_single_snapshot(fig, all_times, "Only one snapshot so far: the market over time appears after the next run")
    fig.update_xaxes(title_text="Snapshot time (UTC)", row=2, col=1)
    if drawn == {"top_n"}:
        title = f"{title} ({top_label})"
    elif drawn == {"global", "top_n"}:
        title = f"{title} (solid: whole market, dotted: {top_label})"
    return _layout(fig, title, height=560)


# -- Dominance --------------------------------------------------------------------


def create_dominance_donut(
    mart: pd.DataFrame,
    top_n: int = 10,
    title: str = "Share of the total crypto market cap",
    scope: str = "total market cap",
) -> go.Figure:
    """Donut of the biggest coins' share of the whole market, plus the other coins and the rest.

    ``scope`` names what the shares are of in the hover text ("top 250 coins' market cap" when
    the mart's dominance_basis is top_n)."""
    shares = dominance_shares(mart, top_n)
    if shares.empty:
        return _empty(title)
    labels, colors = [], []
    coin_index = 0
    for _, row in shares.iterrows():
        if row["kind"] == "coin":
            label = fmt.escape_plotly(fmt.coin_label(row["label"], row["symbol"], limit=fmt.DISPLAY_LIMIT))
            colors.append(COIN_PALETTE[coin_index % len(COIN_PALETTE)])
            coin_index += 1
        else:
            label = fmt.escape_plotly(fmt.shorten(row["label"]))
            colors.append("#94a3b8" if row["kind"] == "others" else "#e2e8f0")
        labels.append(label)
    hover = [
        f"<b>{label}</b><br>{fmt.format_pct(share, 2)} of {scope}"
        + (f"<br>Market cap: {fmt.format_usd(cap)}" if not fmt.is_missing(cap) else "")
        for label, share, cap in zip(labels, shares["share_pct"], shares["market_cap"])
    ]
    fig = go.Figure(
        go.Pie(
            labels=labels,
            values=shares["share_pct"],
            hole=0.5,
            sort=False,
            direction="clockwise",
            marker={"colors": colors, "line": {"color": "white", "width": 1}},
            textinfo="percent",
            texttemplate="%{value:.1f}%",
            textposition="inside",
            insidetextorientation="horizontal",
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
        )
    )
    _layout(fig, title, height=440)
    fig.update_layout(legend={"orientation": "v", "y": 0.5, "yanchor": "middle", "x": 1.02, "xanchor": "left"})
    return fig


def create_category_dominance_chart(
    segments: pd.DataFrame,
    title: str = "Share of the total market cap by market-cap category",
    scope: str = "total market cap",
) -> go.Figure:
    """Bars: each market-cap category's share of the whole market (from market_segment_analysis);
    ``scope`` names what the shares are of ("top 250 coins' market cap" on the top_n basis)."""
    if segments.empty:
        return _empty(title)
    ordered = order_segments(segments)
    labels = [fmt.category_label(c, short=True) for c in ordered["market_cap_category"]]
    hover = [
        f"<b>{fmt.category_label(c)}</b><br>{fmt.format_pct(d, 2)} of {scope}<br>"
        f"{fmt.format_count(n)} coins, {fmt.format_usd(cap)}"
        for c, d, n, cap in zip(
            ordered["market_cap_category"],
            ordered["market_dominance_pct"],
            ordered["coin_count"],
            ordered["total_market_cap"],
        )
    ]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=ordered["market_dominance_pct"],
            marker_color=[MARKET_CAP_COLORS.get(c, FLAT) for c in ordered["market_cap_category"]],
            text=[fmt.format_pct(v, 1) for v in ordered["market_dominance_pct"]],
            textposition="outside",
            cliponaxis=False,
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
        )
    )
    fig.update_yaxes(ticksuffix="%", rangemode="tozero")
    return _layout(fig, title, "Market-cap category", f"Share of {scope} (%)", legend=False)


def create_dominance_history_chart(history: pd.DataFrame, title: str = "Dominance over time") -> go.Figure:
    """Lines: BTC, ETH, stablecoin and other coins' share of the market per snapshot.

    Each dominance basis is its own trace: solid lines are shares of the whole market (/global),
    dotted ones shares of the top-N coins (no usable /global), so the two are never joined into
    one line. A line breaks where points are further apart than 3x the median spacing
    (``frames.break_gaps``) rather than crossing months without data.
    """
    if history.empty:
        return _empty(title)
    series = [
        ("btc_dominance_pct", "Bitcoin", "#f7931a"),
        ("eth_dominance_pct", "Ethereum", "#627eea"),
        ("stablecoin_dominance_pct", "Stablecoins", "#26a17b"),
        ("others_dominance_pct", "All other coins", "#64748b"),
    ]
    mode = "lines+markers" if len(history) <= 60 else "lines"
    if "dominance_basis" not in history.columns:
        history = history.assign(dominance_basis="global")
    points = break_gaps(history).reset_index(drop=True)
    basis = points["dominance_basis"]
    top_n = basis.map(is_top_n).to_numpy()
    is_global = (basis.notna() & ~basis.map(is_top_n)).to_numpy()
    counts = (
        history.loc[history["dominance_basis"].map(is_top_n), "coin_count"]
        if "coin_count" in history.columns
        else pd.Series(dtype="float64")
    )
    top_label = (
        f"top {int(counts.iloc[-1]):,} coins" if not counts.empty and not pd.isna(counts.iloc[-1]) else "top N coins"
    )
    styles = [
        ("global", is_global, "solid", "", "of the whole market"),
        ("top_n", top_n, "dot", f" ({top_label})", f"of the {top_label}"),
    ]
    fig = go.Figure()
    times = pd.to_datetime(points["snapshot_at"])
    drawn = set()
    for column, name, color in series:
        if column not in points.columns:
            continue
        for kind, mask, dash, suffix, scope in styles:
            values = points[column].where(mask)
            if not values.notna().any():
                continue
            drawn.add(kind)
            y = [None if pd.isna(v) else float(v) for v in values]
            fig.add_trace(
                go.Scatter(
                    x=times,
                    y=y,
                    name=f"{name}{suffix}",
                    legendgroup=name,
                    mode=mode,
                    connectgaps=False,
                    line={"color": color, "width": 2, "dash": dash},
                    marker={"size": 8 if kind == "global" else 6},
                    customdata=[f"{fmt.format_pct(v, 2)} {scope}" for v in values],
                    hovertemplate=f"{name}: %{{customdata}}<extra></extra>",
                )
            )
    fig.update_yaxes(ticksuffix="%", rangemode="tozero")
    note_single_snapshot(
        fig,
        pd.to_datetime(history["snapshot_at"]),
        "Only one snapshot so far: the dominance over time appears after the next run",
    )
    fig.update_layout(hovermode="x unified")
    if drawn == {"top_n"}:
        y_title = f"Share of the {top_label}' market cap (%)"
    elif drawn == {"global", "top_n"}:
        y_title = f"Share (%): solid = whole market, dotted = {top_label}"
    else:
        y_title = "Share of total market cap (%)"
    return _layout(fig, title, "Snapshot time (UTC)", y_title)


# -- Liquidity ----------------------------------------------------------------------


def create_liquidity_scatter(
    mart: pd.DataFrame, title: str = "24h volume vs market cap (log-log), by liquidity category"
) -> go.Figure:
    """Log-log scatter of volume against market cap, coloured by liquidity category, with band lines."""
    coins = mart[(mart["market_cap"].fillna(0) > 0) & (mart["total_volume"].fillna(0) > 0)]
    if coins.empty:
        return _empty(title)
    fig = go.Figure()
    for category in [c for c in LIQUIDITY_CATEGORIES if c in set(coins["liquidity_category"])]:
        group = coins[coins["liquidity_category"] == category]
        hover = [
            f"<b>{name}</b><br>Market cap: {fmt.format_usd(cap)}<br>24h volume: {fmt.format_usd(vol)}<br>"
            f"Volume / market cap: {fmt.format_ratio(ratio)}<br>Liquidity: {fmt.category_label(category, True)}"
            for name, cap, vol, ratio in zip(
                coin_names(group), group["market_cap"], group["total_volume"], group["volume_to_mcap_ratio"]
            )
        ]
        fig.add_trace(
            go.Scatter(
                x=group["market_cap"],
                y=group["total_volume"],
                mode="markers",
                name=fmt.category_label(category),
                marker={
                    "color": LIQUIDITY_COLORS.get(category, FLAT),
                    "size": 9,
                    "opacity": 0.8,
                    "line": {"width": 0.5, "color": "white"},
                },
                customdata=hover,
                hovertemplate="%{customdata}<extra></extra>",
            )
        )
    low, high = float(coins["market_cap"].min()), float(coins["market_cap"].max())
    ratios = [band.lower for band in LIQUIDITY_BANDS if band.lower is not None]  # one line per band boundary
    for ratio in ratios:
        fig.add_trace(
            go.Scatter(
                x=[low, high],
                y=[low * ratio, high * ratio],
                mode="lines",
                line={"dash": "dot", "width": 1, "color": "#6b7280"},
                showlegend=False,
                hoverinfo="skip",
            )
        )
        above = ratio == max(ratios)  # label the top line above it and the others below them
        fig.add_annotation(
            x=math.log10(high),
            y=math.log10(high * ratio),
            text=f"volume = {ratio:.0%} of cap",
            showarrow=False,
            xanchor="right",
            yanchor="bottom" if above else "top",
            yshift=2 if above else -2,
            font={"size": 11, "color": "#4b5563"},
        )
    volume_low, volume_high = float(coins["total_volume"].min()), float(coins["total_volume"].max())
    fig.update_xaxes(type="log", **_log_money_ticks(low, high))
    fig.update_yaxes(
        type="log", **_log_money_ticks(min(volume_low, low * min(ratios)), max(volume_high, high * max(ratios)))
    )
    return _layout(fig, title, "Market cap (USD, log scale)", "24h trading volume (USD, log scale)", height=520)


def create_category_count_chart(counts: pd.DataFrame, title: str, x_title: str, colors: dict[str, str]) -> go.Figure:
    """Bars: coins per category (the output of ``frames.category_counts``)."""
    if counts.empty or not counts["coins"].sum():
        return _empty(title)
    labels = [fmt.category_label(c, short=True) for c in counts["category"]]
    hover = [
        f"<b>{fmt.category_label(c)}</b><br>{fmt.format_count(n)} coins ({fmt.format_pct(s, 1)})"
        for c, n, s in zip(counts["category"], counts["coins"], counts["share_pct"])
    ]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=counts["coins"],
            marker_color=[colors.get(c, FLAT) for c in counts["category"]],
            text=[fmt.format_count(n) for n in counts["coins"]],
            textposition="outside",
            cliponaxis=False,
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
        )
    )
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, title, x_title, "Number of coins", legend=False)


def create_liquidity_distribution_chart(counts: pd.DataFrame) -> go.Figure:
    return create_category_count_chart(
        counts, "Coins per liquidity category (24h volume / market cap)", "Liquidity category", LIQUIDITY_COLORS
    )


def create_trend_distribution_chart(counts: pd.DataFrame) -> go.Figure:
    return create_category_count_chart(counts, "Coins per 24h price trend", "Price trend over 24 hours", TREND_COLORS)


# -- Trends --------------------------------------------------------------------------


def create_sparkline_grid(
    coins: pd.DataFrame, columns: int = 4, title: str = "7-day price of the largest coins"
) -> go.Figure:
    """Small multiples of each coin's 7-day sparkline, green when up over 7 days, red when down.

    The colour follows the 7-day change each panel's title shows (CoinGecko's
    ``price_change_percentage_7d``), not the line's own first-to-last move: the two can
    disagree (the sparkline's first point is not exactly 7 days old), and a green line
    titled "-0.4 %" is a contradiction. Without the API's figure the line is grey.

    The grid's axes are laid out by hand in one layout dict: ``make_subplots`` plus one
    ``add_trace`` per panel costs half a second for twelve panels.
    """
    coins = coins[[bool(parse_sparkline(raw)) for raw in coins["sparkline_7d"]]] if not coins.empty else coins
    if coins.empty:
        return _empty(title, "No 7-day sparklines in this snapshot")
    rows = math.ceil(len(coins) / columns)
    h_gap, v_gap = 0.06, min(0.5 / rows + 0.04, 0.3)
    width = (1 - h_gap * (columns - 1)) / columns
    height = (1 - v_gap * (rows - 1)) / rows
    labels = coin_axis_labels(coins)
    traces, layout, annotations = [], {}, []
    for index, ((_, row), name, label) in enumerate(zip(coins.iterrows(), coin_names(coins), labels)):
        row_no, col_no = divmod(index, columns)
        x0 = col_no * (width + h_gap)
        y1 = 1 - row_no * (height + v_gap)
        suffix = "" if index == 0 else str(index + 1)
        layout[f"xaxis{suffix}"] = {
            "domain": [max(x0, 0.0), min(x0 + width, 1.0)],
            "anchor": f"y{suffix}",
            "showticklabels": False,
            "showgrid": False,
        }
        points = sparkline_frame(row["sparkline_7d"], row.get("last_updated") or row.get("snapshot_at"))
        layout[f"yaxis{suffix}"] = {
            "domain": [max(y1 - height, 0.0), min(y1, 1.0)],
            "anchor": f"x{suffix}",
            "nticks": 3,
            "tickfont": {"size": 9},
            **_price_axis(points["price"]),
        }
        color = _change_color(row.get("price_change_percentage_7d"))
        traces.append(
            {
                "type": "scatter",
                "x": points["ts"],
                "y": points["price"],
                "xaxis": f"x{suffix}",
                "yaxis": f"y{suffix}",
                "mode": "lines",
                "line": {"color": color, "width": 1.6},
                "showlegend": False,
                "name": name,
                "customdata": [fmt.format_price(p) for p in points["price"]],
                "hovertemplate": f"<b>{name}</b><br>%{{x|%b %d %H:%M}} UTC<br>%{{customdata}}<extra></extra>",
            }
        )
        annotations.append(
            {
                "text": f"{label}  {fmt.format_pct(row['price_change_percentage_7d'], 1, signed=True)}",
                "x": x0 + width / 2,
                "y": y1,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 12},
            }
        )
    annotations += [
        {
            "text": "Last 7 days, hourly (UTC)",
            "x": 0.5,
            "y": 0,
            "xref": "paper",
            "yref": "paper",
            "yshift": -30,
            "showarrow": False,
            "font": {"size": 12},
        },
        {
            "text": "Price (USD)",
            "x": 0,
            "y": 0.5,
            "xref": "paper",
            "yref": "paper",
            "xshift": -70,
            "showarrow": False,
            "textangle": -90,
            "font": {"size": 12},
        },
    ]
    fig = go.Figure(data=traces, layout={**layout, "annotations": annotations})
    _layout(fig, title, height=150 * rows + 120, legend=False)
    fig.update_layout(margin={"l": 80, "r": 10, "t": 90, "b": 40})
    return fig


# -- Segments --------------------------------------------------------------------------


def order_segments(segments: pd.DataFrame) -> pd.DataFrame:
    order = {c: i for i, c in enumerate(MARKET_CAP_CATEGORIES)}
    return (
        segments.assign(_o=segments["market_cap_category"].map(order).fillna(len(order)))
        .sort_values("_o")
        .drop(columns="_o")
    )


def create_segment_share_chart(
    segments: pd.DataFrame, title: str = "Market cap, volume and coin count by segment"
) -> go.Figure:
    """Grouped bars: each segment's share (%) of the tracked market cap, 24h volume and coin count."""
    if segments.empty:
        return _empty(title)
    ordered = order_segments(segments)
    labels = [fmt.category_label(c, short=True) for c in ordered["market_cap_category"]]
    volume_total = ordered["total_volume"].sum()
    coin_total = ordered["coin_count"].sum()
    bars = [
        ("Market cap", ordered["market_cap_share_pct"], "#1e3a8a", ordered["total_market_cap"], fmt.format_usd),
        (
            "24h volume",
            ordered["total_volume"] * 100.0 / volume_total if volume_total else ordered["total_volume"] * 0,
            "#f59e0b",
            ordered["total_volume"],
            fmt.format_usd,
        ),
        (
            "Coins",
            ordered["coin_count"] * 100.0 / coin_total if coin_total else ordered["coin_count"] * 0,
            "#94a3b8",
            ordered["coin_count"],
            fmt.format_count,
        ),
    ]
    fig = go.Figure()
    for name, shares, color, absolute, formatter in bars:
        hover = [
            f"<b>{label}</b><br>{name}: {fmt.format_pct(s, 1)} ({formatter(a)})"
            for label, s, a in zip(labels, shares, absolute)
        ]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=shares,
                name=name,
                marker_color=color,
                customdata=hover,
                hovertemplate="%{customdata}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(ticksuffix="%", rangemode="tozero")
    return _layout(fig, title, "Market-cap category", "Share of the tracked coins (%)")


def create_segment_change_chart(
    segments: pd.DataFrame, title: str = "Average and median 24h price change by segment"
) -> go.Figure:
    """Grouped bars: mean and median 24h change per segment (the median resists outliers)."""
    if segments.empty:
        return _empty(title)
    ordered = order_segments(segments)
    labels = [fmt.category_label(c, short=True) for c in ordered["market_cap_category"]]
    fig = go.Figure()
    for column, name, color in (
        ("avg_price_change_24h", "Average", "#3b82f6"),
        ("median_price_change_24h", "Median", "#a855f7"),
    ):
        hover = [
            f"<b>{label}</b><br>{name} 24h change: {fmt.format_pct(v, 2, signed=True)}"
            for label, v in zip(labels, ordered[column])
        ]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=ordered[column],
                name=name,
                marker_color=color,
                customdata=hover,
                hovertemplate="%{customdata}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(ticksuffix="%", zeroline=True, zerolinecolor="#6b7280")
    return _layout(fig, title, "Market-cap category", "Price change over 24 hours (%)")


def create_segment_breadth_chart(
    segments: pd.DataFrame, title: str = "Gainers and losers over 24h by segment"
) -> go.Figure:
    """Stacked bars: how many coins of each segment rose and fell over 24 hours."""
    if segments.empty:
        return _empty(title)
    ordered = order_segments(segments)
    labels = [fmt.category_label(c, short=True) for c in ordered["market_cap_category"]]
    unchanged = (ordered["coin_count"] - ordered["gainers_count"] - ordered["losers_count"]).clip(lower=0)
    fig = go.Figure()
    for values, name, color in (
        (ordered["gainers_count"], "Gainers", GAIN),
        (ordered["losers_count"], "Losers", LOSS),
        (unchanged, "Unchanged or unknown", FLAT),
    ):
        hover = [f"<b>{label}</b><br>{name}: {fmt.format_count(v)} coins" for label, v in zip(labels, values)]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=values,
                name=name,
                marker_color=color,
                customdata=hover,
                hovertemplate="%{customdata}<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack")
    return _layout(fig, title, "Market-cap category", "Number of coins")


def create_segment_risk_chart(segments: pd.DataFrame, title: str = "Volatility and turnover by segment") -> go.Figure:
    """Grouped bars: average 24h volatility (%) and average volume / market cap (as %) per segment."""
    if segments.empty:
        return _empty(title)
    ordered = order_segments(segments)
    labels = [fmt.category_label(c, short=True) for c in ordered["market_cap_category"]]
    turnover = ordered["avg_volume_to_mcap_ratio"] * 100.0
    fig = go.Figure()
    for values, name, color in (
        (ordered["avg_volatility_24h"], "Avg 24h volatility (high−low range)", "#ea580c"),
        (turnover, "Avg 24h volume as % of market cap", "#059669"),
    ):
        hover = [f"<b>{label}</b><br>{name}: {fmt.format_pct(v, 2)}" for label, v in zip(labels, values)]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=values,
                name=name,
                marker_color=color,
                customdata=hover,
                hovertemplate="%{customdata}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(ticksuffix="%", rangemode="tozero")
    return _layout(fig, title, "Market-cap category", "Percent (%)")


# -- Coin ---------------------------------------------------------------------------------


def _log_range(value_range: dict, log: bool) -> dict:
    """A ``range`` for a log axis is in powers of ten: convert ``_single_value_range``'s band."""
    if not log or "range" not in value_range:
        return value_range
    low, high = value_range["range"]
    return {"range": [math.log10(low), math.log10(high)]} if low > 0 and high > 0 else {}


def _scale(log: bool) -> dict:
    return {"type": "log"} if log else {"type": "linear"}


COIN_PANELS = (0.46, 0.14, 0.2, 0.2)  # price, volume, market cap, rank: shares of the height, top to bottom


def create_coin_history_chart(
    history: pd.DataFrame, name: str, symbol: str | None = None, log: bool = False, range_label: str | None = None
) -> go.Figure:
    """Four stacked panels over time, one shared time axis: price, 24h volume (bars, below the price),
    market cap and rank (reversed: #1 on top). ``log`` puts price, volume and market cap on log axes.

    Rank comes from the pipeline's snapshots only (backfilled days have none), so the rank panel can
    be shorter than the others."""
    suffix = f" ({range_label})" if range_label else ""
    title = f"{_title_label(name, symbol)}: price, volume, market cap and rank{suffix}"
    if history.empty:
        return _empty(title, "No history for this coin yet")
    times = pd.to_datetime(history["ts"])
    mode = "lines+markers" if len(history) <= 60 else "lines"
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=list(COIN_PANELS))
    hover_time = "%{x|%Y-%m-%d %H:%M} UTC"
    fig.add_trace(
        go.Scatter(
            x=times,
            y=history["price"],
            mode=mode,
            name="Price",
            line={"color": "#2563eb"},
            customdata=[fmt.format_price(v) for v in history["price"]],
            hovertemplate=f"{hover_time}<br>Price: %{{customdata}}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=times,
            y=history["total_volume"],
            name="24h volume",
            marker_color="#94a3b8",
            customdata=[fmt.format_usd(v) for v in history["total_volume"]],
            hovertemplate=f"{hover_time}<br>24h volume: %{{customdata}}<extra></extra>",
        ),
        row=2,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=times,
            y=history["market_cap"],
            mode=mode,
            name="Market cap",
            line={"color": "#7c3aed"},
            customdata=[fmt.format_usd(v) for v in history["market_cap"]],
            hovertemplate=f"{hover_time}<br>Market cap: %{{customdata}}<extra></extra>",
        ),
        row=3,
        col=1,
    )
    ranks = history["market_cap_rank"] if "market_cap_rank" in history.columns else pd.Series([None] * len(history))
    ranks = pd.to_numeric(ranks, errors="coerce")
    fig.add_trace(
        go.Scatter(
            x=times,
            y=ranks,
            mode=mode,
            name="Rank",
            connectgaps=True,  # backfilled days have no rank: join the snapshots' ranks
            line={"color": "#f59e0b", "shape": "hv"},
            customdata=[_rank_text(r) for r in ranks],
            hovertemplate=f"{hover_time}<br>Rank: %{{customdata}}<extra></extra>",
        ),
        row=4,
        col=1,
    )
    fig.update_yaxes(
        title_text="Price (USD)",
        row=1,
        col=1,
        **_scale(log),
        **_price_axis(history["price"]),
        **_log_range(_single_value_range(history["price"]), log),
    )
    fig.update_yaxes(title_text="Volume", row=2, col=1, **_scale(log), **_money_axis())
    fig.update_yaxes(
        title_text="Market cap (USD)",
        row=3,
        col=1,
        **_scale(log),
        **_money_axis(_log_range(_single_value_range(history["market_cap"]), log)),
    )
    fig.update_yaxes(title_text="Rank", row=4, col=1, tickprefix="#", **_rank_axis(ranks))
    note_single_snapshot(fig, times, "Only one point for this coin so far: its history appears after the next run")
    fig.update_xaxes(title_text="Time (UTC)", row=4, col=1)
    fig.update_layout(bargap=0)
    return _layout(fig, title, height=760, legend=False)


def _rank_axis(ranks: pd.Series) -> dict:
    """A reversed rank axis (#1 on top) that never shows #0 or #1.5: an explicit range from the best
    rank (never above #1) to the worst, a little padded."""
    known = ranks.dropna()
    if known.empty:
        return {"autorange": "reversed"}
    best, worst = float(known.min()), float(known.max())
    pad = max(1.0, (worst - best) * 0.05)
    axis: dict = {"range": [worst + pad, max(0.5, best - pad)], "autorange": False}
    if worst - best < 6:
        axis["dtick"] = 1  # whole ranks, not #1.5
    return axis


def _rank_text(rank) -> str:
    return "—" if fmt.is_missing(rank) else f"#{int(rank):,}"


def create_coin_sparkline_chart(raw_sparkline, end, name: str, symbol: str | None = None, change_7d=None) -> go.Figure:
    """The coin's 7-day price line (hourly), green when up over the week, red when down.

    ``change_7d``: the API's 7-day change shown next to it; when given, it sets the colour
    (like the Trends grid), otherwise the line's own first-to-last move does."""
    title = f"{_title_label(name, symbol, 28)}: last 7 days"
    if not fmt.is_missing(change_7d):  # the 7-day price change (CoinGecko's), which also sets the colour
        title += f", {fmt.format_pct(change_7d, 1, signed=True)}"
    points = sparkline_frame(raw_sparkline, end)
    if points.empty:
        return _empty(title, "No 7-day sparkline for this coin")
    color = _change_color(
        change_7d if not fmt.is_missing(change_7d) else points["price"].iloc[-1] - points["price"].iloc[0]
    )
    fig = go.Figure(
        go.Scatter(
            x=points["ts"],
            y=points["price"],
            mode="lines",
            line={"color": color, "width": 2},
            fill="tozeroy",
            fillcolor="rgba(22,163,74,0.08)" if color == GAIN else "rgba(220,38,38,0.08)",
            customdata=[fmt.format_price(p) for p in points["price"]],
            hovertemplate="%{x|%b %d %H:%M} UTC<br>%{customdata}<extra></extra>",
        )
    )
    low, high = points["price"].min(), points["price"].max()
    pad = (high - low) * 0.1 or abs(high) * 0.01 or 1
    fig.update_yaxes(range=[low - pad, high + pad], **_price_axis(points["price"]))
    return _layout(fig, title, "Time (UTC, hourly points)", "Price (USD)", height=360, legend=False)


# -- Pipeline ---------------------------------------------------------------------------------

RUN_STATUS_COLORS = {"success": GAIN, "failed": LOSS, "running": "#3b82f6", "abandoned": "#f59e0b"}


def create_runs_chart(runs: pd.DataFrame, title: str = "Recent pipeline runs: duration and outcome") -> go.Figure:
    """Bars per run (oldest left): how long it took, coloured by status."""
    if runs.empty:
        return _empty(title, "No runs yet")
    ordered = runs.sort_values("started_at")
    started = pd.to_datetime(ordered["started_at"])
    labels = [f"{t:%m-%d %H:%M:%S}" for t in started]
    fig = go.Figure()
    for status in [s for s in ("success", "failed", "running", "abandoned") if s in set(ordered["status"])] + [
        s for s in sorted(set(ordered["status"])) if s not in RUN_STATUS_COLORS
    ]:
        mask = (ordered["status"] == status).to_numpy()
        group = ordered[mask]
        hover = [
            f"<b>Run {fmt.escape_plotly(fmt.shorten(r))}</b><br>Status: "
            f"{fmt.escape_plotly(fmt.shorten(status))}<br>Trigger: {fmt.escape_plotly(fmt.shorten(t))}, "
            f"source: {fmt.escape_plotly(fmt.shorten(s))}<br>Duration: {fmt.format_duration(d)}<br>"
            f"Silver rows: {fmt.format_count(n)}"
            for r, t, s, d, n in zip(
                group["run_id"], group["trigger"], group["source"], group["duration_s"], group["silver_rows"]
            )
        ]
        fig.add_trace(
            go.Bar(
                x=[label for label, m in zip(labels, mask) if m],
                y=group["duration_s"].fillna(0),
                name=fmt.escape_plotly(fmt.shorten(status)),
                marker_color=RUN_STATUS_COLORS.get(status, FLAT),
                customdata=hover,
                hovertemplate="%{customdata}<extra></extra>",
            )
        )
    fig.update_xaxes(
        type="category", categoryorder="array", categoryarray=labels, range=[-0.5, max(len(labels), 10) - 0.5]
    )  # few runs: normal-width bars, not one slab
    fig.update_yaxes(ticksuffix=" s", rangemode="tozero")
    return _layout(fig, title, "Run start time (UTC)", "Duration (seconds)")


def create_quarantine_chart(reasons: pd.DataFrame, title: str = "Quarantined records by reason") -> go.Figure:
    """Horizontal bars: how many recent quarantined records failed each check."""
    if reasons.empty:
        return _empty(title, "No quarantined records")
    ordered = reasons.sort_values("records")
    labels = [fmt.escape_plotly(fmt.shorten(r)) for r in ordered["reason"]]
    fig = go.Figure(
        go.Bar(
            x=ordered["records"],
            y=labels,
            orientation="h",
            marker_color="#f59e0b",
            text=[fmt.format_count(n) for n in ordered["records"]],
            textposition="outside",
            cliponaxis=False,
            customdata=[
                f"<b>{label}</b><br>{fmt.format_count(n)} records" for label, n in zip(labels, ordered["records"])
            ],
            hovertemplate="%{customdata}<extra></extra>",
        )
    )
    fig.update_yaxes(type="category", automargin=True, range=[-0.5, max(len(ordered), 5) - 0.5])
    if ordered["records"].max() <= 10:
        fig.update_xaxes(dtick=1)  # whole records, not 0.5
    return _layout(fig, title, "Quarantined records", "Reason", height=max(300, 30 * len(ordered) + 120), legend=False)
