"""Chart ranges (24h, 7d, 30d, 90d, 1y, all): the one list of range buttons, and the pure time-window
and resampling logic behind them. No Streamlit, no I/O.

A range ends at the newest point of the series it is applied to (the newest snapshot, or a coin's
newest point), not at the wall clock: a warehouse loaded from a replay or a coin that left the top N
still shows its last 30 days. Times are naive UTC throughout (no DST: a day is always 24 hours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

#: At most this many points per series on a chart: a year of 15-minute snapshots (35,000) is
#: thinned to one point per bucket so the browser draws it fast.
MAX_POINTS = 2000


@dataclass(frozen=True)
class Range:
    """One range button: its URL value, its label and how far back it reaches (None: everything)."""

    key: str
    label: str
    span: timedelta | None


#: The range buttons, in order; the last one is "all" (the Coin page labels it "max", like CoinGecko).
RANGES = (
    Range("24h", "24h", timedelta(hours=24)),
    Range("7d", "7d", timedelta(days=7)),
    Range("30d", "30d", timedelta(days=30)),
    Range("90d", "90d", timedelta(days=90)),
    Range("1y", "1y", timedelta(days=365)),
    Range("all", "all", None),
)
BY_KEY = {r.key: r for r in RANGES}
ALIASES = {"max": "all"}  # the Coin page's name for "all"
DEFAULT_RANGE = "30d"

#: Bucket widths the resampler picks from (the smallest that keeps a series under MAX_POINTS).
STEPS = tuple(
    pd.Timedelta(s)
    for s in ("1min", "5min", "15min", "30min", "1h", "2h", "4h", "6h", "12h", "1D", "2D", "7D", "14D", "30D")
)


def range_keys(all_label: str = "all") -> list[str]:
    """The buttons' values in order, the last one named ``all_label`` ("all" or "max")."""
    return [r.key if r.span is not None else all_label for r in RANGES]


def parse_range(value: str | None, default: str = DEFAULT_RANGE) -> str:
    """The canonical range key for a URL value ("max" is "all"); unknown or missing: ``default``."""
    if value is None:
        return default
    key = ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    return key if key in BY_KEY else default


def window_start(range_key: str, newest: datetime | pd.Timestamp | None) -> datetime | None:
    """The oldest time a range shows, counted back from ``newest``; None for "all" or no data."""
    span = BY_KEY[parse_range(range_key)].span
    if span is None or newest is None or pd.isna(newest):
        return None
    return pd.Timestamp(newest).to_pydatetime() - span


def _span_text(span: pd.Timedelta) -> str:
    if span >= pd.Timedelta(days=2):
        days = int(span / pd.Timedelta(days=1))
        return f"{days} days"
    if span >= pd.Timedelta(hours=2):
        return f"{int(span / pd.Timedelta(hours=1))} hours"
    minutes = int(span / pd.Timedelta(minutes=1))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def coverage_note(range_key: str, first, last, what: str = "history") -> str | None:
    """What the data covers when the range asks for more than exists, e.g.
    "History starts 2024-03-01: showing 41 days."; None when the range is covered (or for "all")."""
    if first is None or last is None or pd.isna(first) or pd.isna(last):
        return None
    first, last = pd.Timestamp(first), pd.Timestamp(last)
    if first == last:
        return f"Only one point so far ({first:%Y-%m-%d %H:%M} UTC): the {what} grows with every pipeline run."
    span = BY_KEY[parse_range(range_key)].span
    if span is None or last - first >= span:
        return None
    return f"{what.capitalize()} starts {first:%Y-%m-%d}: showing {_span_text(last - first)}."


def bucket_width(start, end, max_points: int = MAX_POINTS) -> pd.Timedelta | None:
    """The smallest bucket from ``STEPS`` that puts [start, end] into at most ``max_points`` buckets;
    None when no thinning is needed (a zero span)."""
    span = pd.Timestamp(end) - pd.Timestamp(start)
    if span <= pd.Timedelta(0):
        return None
    needed = span / max(max_points - 1, 1)
    for step in STEPS:
        if step >= needed:
            return step
    return pd.Timedelta(seconds=math.ceil(needed.total_seconds()))


def resample(frame: pd.DataFrame, time_column: str, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """At most ``max_points`` rows, oldest first: the newest row of each equal-width time bucket.

    Whole rows are kept (real snapshots, their basis and source too), never averaged across a
    change of basis; a gap in the data stays a gap (empty buckets produce no row). A frame already
    small enough comes back sorted and unchanged.
    """
    if frame.empty:
        return frame.reset_index(drop=True)
    ordered = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
    if len(ordered) <= max_points:
        return ordered
    times = pd.to_datetime(ordered[time_column])
    width = bucket_width(times.iloc[0], times.iloc[-1], max_points)
    if width is None:
        return ordered.tail(max_points).reset_index(drop=True)
    buckets = times.dt.floor(width) if width <= pd.Timedelta(days=1) else _floor_epoch(times, width)
    keep = ~buckets.duplicated(keep="last")
    return ordered[keep.to_numpy()].reset_index(drop=True)


def _floor_epoch(times: pd.Series, width: pd.Timedelta) -> pd.Series:
    """Buckets of ``width`` counted from the Unix epoch (``dt.floor`` refuses non-fixed multi-day widths)."""
    epoch = pd.Timestamp("1970-01-01")
    return (times - epoch) // width


def window(frame: pd.DataFrame, time_column: str, range_key: str) -> pd.DataFrame:
    """The rows of ``frame`` inside the range, counted back from its newest row (pure twin of the SQL
    ``WHERE ts >= :since``, for frames already in memory)."""
    if frame.empty:
        return frame
    times = pd.to_datetime(frame[time_column])
    since = window_start(range_key, times.max())
    return frame if since is None else frame[times >= pd.Timestamp(since)]


def range_title(range_key: str) -> str:
    """How a chart title names the range: 'last 30 days', 'all history'."""
    key = parse_range(range_key)
    return {
        "24h": "last 24 hours",
        "7d": "last 7 days",
        "30d": "last 30 days",
        "90d": "last 90 days",
        "1y": "last year",
        "all": "all history",
    }[key]


def window_caption(range_key: str, first, last, points: int, shown: int, what: str = "history") -> str:
    """One line under a ranged chart: what the data covers when the range asks for more, and how
    many points were thinned to how many (one per bucket)."""
    parts = []
    note = coverage_note(range_key, first, last, what)
    if note:
        parts.append(note)
    if points > shown:
        parts.append(f"{points:,} points thinned to {shown:,} (the newest of each equal time step).")
    return " ".join(parts)


#: The grains a history is kept at: raw snapshots, and the rollups (pipeline.rollups) with their widths.
GRAIN_WIDTHS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}

#: Short ranges are compared hour by hour (a day of 15-minute snapshots is 24 hourly returns), longer
#: ones day by day: the Compare page's step, and the rollup its prices are read from.
COMPARE_HOURLY_RANGES = ("24h", "7d")


def compare_grain(range_key: str) -> str:
    """The Compare page's step for a range: "hourly" for 24h and 7d, else "daily"."""
    return "hourly" if range_key in COMPARE_HOURLY_RANGES else "daily"


def pick_grain(
    span: timedelta | None, raw_points: int, *, raw_covers: bool = True, max_points: int = MAX_POINTS
) -> str:
    """Which table a history window is read from: "raw" snapshots when the window holds at most
    ``max_points`` of them (``raw_points``: counted up to max_points + 1 is enough) and raw data still
    reaches back to the window's start (``raw_covers``; retention may have pruned it); else the finest
    rollup whose buckets over ``span`` number at most ``max_points``: "hourly" up to ~83 days, "daily"
    beyond (a daily series longer than ``max_points`` days is thinned by ``resample``).

    The cost of a chart then follows the range shown, not the history kept.
    """
    if raw_covers and raw_points <= max_points:
        return "raw"
    if span is not None and span <= GRAIN_WIDTHS["hourly"] * max_points:
        return "hourly"
    return "daily"
