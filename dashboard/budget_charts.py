"""The Pipeline page's API budget panel: this month's CoinGecko calls by endpoint and by day.

Pure: ``api_calls`` rows in (endpoint, day, calls, failures, last_at; one per endpoint and UTC day),
frames and a Plotly figure out.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import plotly.graph_objects as go

from dashboard import charts
from dashboard import formatting as fmt

TITLE = "CoinGecko API calls per day this month"
#: Bar colours: answered calls, failed ones (errors, rate limits, timeouts).
ANSWERED = "#3b82f6"
FAILED = charts.LOSS


def _calls(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["day"] = pd.to_datetime(out["day"]).dt.normalize()
    for column in ("calls", "failures"):
        out[column] = pd.to_numeric(out[column], errors="coerce").fillna(0).astype("int64")
    return out


def by_endpoint(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per endpoint, most calls first: calls, failures, share of the month's calls, last call."""
    if frame.empty:
        return pd.DataFrame(columns=["endpoint", "calls", "failures", "share_pct", "last_at"])
    calls = _calls(frame)
    table = (
        calls.groupby("endpoint", as_index=False)
        .agg(calls=("calls", "sum"), failures=("failures", "sum"), last_at=("last_at", "max"))
        .sort_values(["calls", "endpoint"], ascending=[False, True], ignore_index=True)
    )
    total = table["calls"].sum()
    table["share_pct"] = table["calls"] / total * 100.0 if total else 0.0
    return table[["endpoint", "calls", "failures", "share_pct", "last_at"]]


def by_day(frame: pd.DataFrame, month: date) -> pd.DataFrame:
    """Every day of ``month`` (its first day) up to the last day with calls: day, calls, failures."""
    days_in_month = (pd.Timestamp(month) + pd.offsets.MonthEnd(0)).day
    days = pd.date_range(pd.Timestamp(month), periods=days_in_month, freq="D")
    if frame.empty:
        return pd.DataFrame({"day": days, "calls": 0, "failures": 0})
    calls = _calls(frame)
    daily = calls.groupby("day")[["calls", "failures"]].sum()
    return daily.reindex(days, fill_value=0).rename_axis("day").reset_index()


def counting_since(frame: pd.DataFrame) -> datetime | None:
    """The start of the first day with calls this month: where the month-end projection's rate starts."""
    if frame.empty:
        return None
    return pd.Timestamp(pd.to_datetime(frame["day"]).min()).normalize().to_pydatetime()


def create_daily_calls_chart(frame: pd.DataFrame, month: date, allowance: int, title: str = TITLE) -> go.Figure:
    """Stacked bars per UTC day (answered, failed) and the even daily share of the allowance as a line."""
    daily = by_day(frame, month)
    if int(daily["calls"].sum()) == 0:
        return charts._empty(title, "No API calls recorded this month")
    answered = daily["calls"] - daily["failures"]
    fig = go.Figure()
    for name, values, color in (("Answered", answered, ANSWERED), ("Failed", daily["failures"], FAILED)):
        fig.add_trace(
            go.Bar(
                x=daily["day"],
                y=values,
                name=name,
                marker_color=color,
                customdata=[fmt.format_count(c) for c in daily["calls"]],
                hovertemplate=f"%{{x|%Y-%m-%d}} (UTC)<br>{name}: %{{y:,}} of %{{customdata}} calls<extra></extra>",
            )
        )
    even = allowance / len(daily)
    fig.add_hline(
        y=even,
        line={"color": charts.FLAT, "width": 1, "dash": "dot"},
        annotation_text=f"even share of the allowance: {even:,.0f} a day",
        annotation_position="top left",
    )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(range=[daily["day"].iloc[0] - timedelta(hours=12), daily["day"].iloc[-1] + timedelta(hours=12)])
    fig.update_yaxes(rangemode="tozero", tickformat=",d")
    return charts._layout(fig, title, "Day (UTC)", "Calls")


def cadence_label(minutes: float) -> str:
    """How often a group is fetched, in words: 15 -> 'every 15 min', 60 -> 'hourly', 1440 -> 'daily'."""
    if minutes == 60:
        return "hourly"
    if minutes == 1440:
        return "daily"
    if minutes >= 1440 and minutes % 1440 == 0:
        return f"every {minutes / 1440:g} days"
    if minutes >= 60 and minutes % 60 == 0:
        return f"every {minutes / 60:g} h"
    return f"every {minutes:g} min"
