"""Sector charts and frames (CoinGecko's categories): DataFrame in, Plotly figure out. No Streamlit, no I/O.

Sector names come from the API: they are cut (``formatting.shorten``) and escaped (``escape_plotly``)
before they reach a label, like coin names in ``dashboard.charts``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from dashboard import formatting as fmt
from dashboard.charts import GAIN, LOSS, _empty, _layout, _money_axis, note_single_snapshot
from dashboard.frames import break_gaps

NAME_LENGTH = 40
ONE_SNAPSHOT = "Only one snapshot so far: the share over time appears after the next run"


def sector_label(category_id: str, names: Mapping[str, str] | None = None) -> str:
    """The one label of a sector on every page: CoinGecko's name for it ('meme-token' -> 'Meme', from
    ``sector_names``), else a readable form of the id ('meme-token' -> 'Meme token'). Plain text, cut."""
    name = (names or {}).get(category_id)
    if isinstance(name, str) and name.strip():
        return fmt.shorten(name)
    text = str(category_id).replace("-", " ").strip()
    return fmt.shorten((text[:1].upper() + text[1:]) or str(category_id))


def sector_names(ranking: pd.DataFrame) -> dict[str, str]:
    """category id -> CoinGecko's name, from a frame with ``category_id`` and ``name`` (the sector ranking)."""
    if ranking.empty or "name" not in ranking.columns:
        return {}
    return {c: n for c, n in zip(ranking["category_id"], ranking["name"]) if isinstance(n, str) and n.strip()}


def _names(frame: pd.DataFrame) -> list[str]:
    names = sector_names(frame) if "name" in frame.columns else {}
    return [fmt.escape_plotly(fmt.shorten(sector_label(c, names), NAME_LENGTH)) for c in frame["category_id"]]


def top_sectors(ranking: pd.DataFrame, n: int = 15) -> pd.DataFrame:
    """The ``n`` largest sectors by market cap (sectors without one left out)."""
    ranked = ranking[ranking["market_cap"].notna()]
    return ranked.sort_values(["market_cap", "category_id"], ascending=[False, True]).head(n)


def sector_movers(ranking: pd.DataFrame, n: int = 5, min_market_cap: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(top, bottom): the ``n`` sectors with the largest and smallest 24h market-cap change, among
    sectors with a change and at least ``min_market_cap`` (a tiny sector's swing says little)."""
    pool = ranking[ranking["market_cap_change_24h"].notna() & (ranking["market_cap"].fillna(0) >= min_market_cap)]
    top = pool.sort_values(["market_cap_change_24h", "category_id"], ascending=[False, True]).head(n)
    bottom = pool.sort_values(["market_cap_change_24h", "category_id"], ascending=[True, True]).head(n)
    return top, bottom[~bottom["category_id"].isin(top["category_id"])]


def create_sector_ranking_chart(ranking: pd.DataFrame, title: str = "Largest sectors by market cap") -> go.Figure:
    """Horizontal bars: the sectors' market caps, largest on top, hover with share and 24h change."""
    if ranking.empty:
        return _empty(title)
    ordered = ranking.iloc[::-1]
    hover = [
        f"<b>{name}</b><br>{fmt.format_usd(cap)}<br>"
        + (f"{fmt.format_pct(share, 2)} of the whole market<br>" if pd.notna(share) else "")
        + f"24h: {fmt.format_pct(change, 2, signed=True) if pd.notna(change) else 'n/a'}"
        for name, cap, share, change in zip(
            _names(ordered),
            ordered["market_cap"],
            ordered.get("share_of_market_pct", pd.Series([None] * len(ordered))),
            ordered["market_cap_change_24h"],
        )
    ]
    fig = go.Figure(
        go.Bar(
            x=ordered["market_cap"],
            y=_names(ordered),
            orientation="h",
            marker_color="#3b82f6",
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
        )
    )
    fig.update_xaxes(**_money_axis())
    return _layout(fig, title, "Market cap (USD)", "Sector", legend=False)


def create_sector_share_chart(
    history: pd.DataFrame, sectors: list[str], title: str = "Share of the whole market over time"
) -> go.Figure:
    """Lines: each chosen sector's share of the whole market per sector snapshot (gaps break the line)."""
    points = history[history["category_id"].isin(sectors) & history["share_of_market_pct"].notna()]
    if points.empty:
        return _empty(title, "No share of the market yet (it needs a usable CoinGecko /global)")
    fig = go.Figure()
    for sector in sectors:
        line = points[points["category_id"] == sector].sort_values("snapshot_at")
        if line.empty:
            continue
        line = break_gaps(line)
        name = _names(line.tail(1))[0]
        fig.add_trace(
            go.Scatter(
                x=line["snapshot_at"],
                y=line["share_of_market_pct"],
                mode="lines+markers" if len(line) < 3 else "lines",
                name=name,
                connectgaps=False,
                hovertemplate=f"<b>{name}</b><br>%{{x|%Y-%m-%d %H:%M}} UTC<br>%{{y:.2f}}% of the market<extra></extra>",
            )
        )
    fig.update_yaxes(ticksuffix="%", rangemode="tozero")
    note_single_snapshot(fig, pd.to_datetime(points["snapshot_at"]), ONE_SNAPSHOT)
    return _layout(fig, title, "Time (UTC)", "Share of the whole market (%)")


def create_sector_movers_chart(
    top: pd.DataFrame, bottom: pd.DataFrame, title: str = "Sector movers (24h)"
) -> go.Figure:
    """Bars: the sectors whose market cap rose and fell most over 24h."""
    movers = pd.concat([top, bottom]).drop_duplicates("category_id")
    if movers.empty:
        return _empty(title)
    movers = movers.sort_values("market_cap_change_24h")
    changes = movers["market_cap_change_24h"]
    fig = go.Figure(
        go.Bar(
            x=changes,
            y=_names(movers),
            orientation="h",
            marker_color=[GAIN if v > 0 else LOSS for v in changes],
            text=[fmt.format_pct(v, 1, signed=True) for v in changes],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="<b>%{y}</b><br>%{text} market cap over 24h<extra></extra>",
        )
    )
    fig.update_xaxes(ticksuffix="%")
    return _layout(fig, title, "24h market-cap change (%)", "Sector", legend=False)
