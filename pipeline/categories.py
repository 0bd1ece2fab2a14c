"""Every category threshold, in one place (the README's table is printed from here).

Each band is ``[lower, upper)``: the lower bound is included, the upper bound is
not; ``None`` means unbounded. A NULL (or NaN) input is ``unknown``, never a
real bucket. The bands were calibrated on real top-250 snapshots
(2022-10-16: every bucket populated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Band:
    name: str
    lower: float | None  # inclusive
    upper: float | None  # exclusive

    def contains(self, value: float) -> bool:
        return (self.lower is None or value >= self.lower) and (self.upper is None or value < self.upper)


#: By dollar market cap (``market_cap`` in the quote currency).
MARKET_CAP_BANDS = (
    Band("large_cap", 10e9, None),
    Band("mid_cap", 1e9, 10e9),
    Band("small_cap", 250e6, 1e9),
    Band("micro_cap", None, 250e6),
)

#: By 24h volume / market cap (turnover of the whole cap in one day).
LIQUIDITY_BANDS = (
    Band("high_liquidity", 0.10, None),
    Band("medium_liquidity", 0.03, 0.10),
    Band("low_liquidity", None, 0.03),
)

#: By 24h price change, in percent.
PRICE_TREND_BANDS = (
    Band("strong_gain", 5.0, None),
    Band("moderate_gain", 1.0, 5.0),
    Band("neutral", -1.0, 1.0),
    Band("moderate_loss", -5.0, -1.0),
    Band("strong_loss", None, -5.0),
)

MARKET_CAP_CATEGORIES = [b.name for b in MARKET_CAP_BANDS] + [UNKNOWN]
LIQUIDITY_CATEGORIES = [b.name for b in LIQUIDITY_BANDS] + [UNKNOWN]
PRICE_TREND_CATEGORIES = [b.name for b in PRICE_TREND_BANDS] + [UNKNOWN]


def classify(value: float | None, bands: tuple[Band, ...]) -> str:
    """Scalar version: the band a value falls in, or ``unknown`` for NULL/NaN."""
    if value is None or pd.isna(value):
        return UNKNOWN
    for band in bands:
        if band.contains(value):
            return band.name
    return UNKNOWN


def classify_series(values: pd.Series, bands: tuple[Band, ...]) -> pd.Series:
    """Vectorised ``classify`` for a whole column."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    conditions = []
    for band in bands:
        cond = np.ones(len(numbers), dtype=bool)
        if band.lower is not None:
            cond &= numbers >= band.lower
        if band.upper is not None:
            cond &= numbers < band.upper
        conditions.append(cond & ~np.isnan(numbers))
    labels = np.select(conditions, [b.name for b in bands], default=UNKNOWN)
    return pd.Series(labels, index=values.index, dtype=object)


def thresholds_markdown() -> str:
    """The README table of every band."""

    def fmt(bound, money):
        if bound is None:
            return "—"
        if money:
            return f"${bound / 1e9:g}B" if bound >= 1e9 else f"${bound / 1e6:g}M"
        return f"{bound:g}"

    lines = ["| column | value | from (incl.) | to (excl.) |", "|---|---|---|---|"]
    for column, bands, money in (
        ("market_cap_category", MARKET_CAP_BANDS, True),
        ("liquidity_category (volume / market cap)", LIQUIDITY_BANDS, False),
        ("price_trend_category (24h change, %)", PRICE_TREND_BANDS, False),
    ):
        for band in bands:
            lines.append(f"| {column} | `{band.name}` | {fmt(band.lower, money)} | {fmt(band.upper, money)} |")
        lines.append(f"| {column} | `unknown` | input is NULL | |")
    return "\n".join(lines)
