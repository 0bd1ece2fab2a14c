"""Every category threshold and its label, in one place.

Each band is ``[lower, upper)``: the lower bound is included, the upper bound is
not; ``None`` means unbounded. A NULL (or NaN) input is ``unknown``, never a
real bucket. The bands were calibrated on real top-250 snapshots
(2022-10-16: every bucket populated).

The silver transform classifies with the bands; the dashboard's labels
(``LABELS``, ``SHORT_LABELS``) and the README's table
(``python -m pipeline.categories readme-table``) are printed from them, so a
threshold changes in one line here and nowhere else.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

UNKNOWN = "unknown"
UNKNOWN_LABEL = "Unknown"


@dataclass(frozen=True)
class Band:
    name: str
    lower: float | None  # inclusive
    upper: float | None  # exclusive
    label: str = ""  # the short human name ("Large cap"); the range is added from the bounds

    def contains(self, value: float) -> bool:
        return (self.lower is None or value >= self.lower) and (self.upper is None or value < self.upper)


#: By dollar market cap (``market_cap`` in the quote currency).
MARKET_CAP_BANDS = (
    Band("large_cap", 10e9, None, "Large cap"),
    Band("mid_cap", 1e9, 10e9, "Mid cap"),
    Band("small_cap", 250e6, 1e9, "Small cap"),
    Band("micro_cap", None, 250e6, "Micro cap"),
)

#: By 24h volume / market cap (turnover of the whole cap in one day).
LIQUIDITY_BANDS = (
    Band("high_liquidity", 0.10, None, "High"),
    Band("medium_liquidity", 0.03, 0.10, "Medium"),
    Band("low_liquidity", None, 0.03, "Low"),
)

#: By 24h price change, in percent.
PRICE_TREND_BANDS = (
    Band("strong_gain", 5.0, None, "Strong gain"),
    Band("moderate_gain", 1.0, 5.0, "Moderate gain"),
    Band("neutral", -1.0, 1.0, "Neutral"),
    Band("moderate_loss", -5.0, -1.0, "Moderate loss"),
    Band("strong_loss", None, -5.0, "Strong loss"),
)

MARKET_CAP_CATEGORIES = [b.name for b in MARKET_CAP_BANDS] + [UNKNOWN]
LIQUIDITY_CATEGORIES = [b.name for b in LIQUIDITY_BANDS] + [UNKNOWN]
PRICE_TREND_CATEGORIES = [b.name for b in PRICE_TREND_BANDS] + [UNKNOWN]


# -- how bounds read -------------------------------------------------------------------


def _usd(bound: float) -> str:
    """10e9 -> '$10B', 250e6 -> '$250M'."""
    return f"${bound / 1e9:g}B" if bound >= 1e9 else f"${bound / 1e6:g}M"


def _share(bound: float) -> str:
    """A ratio as a percentage: 0.03 -> '3%'."""
    return f"{bound * 100:g}%"


def _signed(bound: float) -> str:
    """A change in percent, with its sign (a typographic minus): 5 -> '+5%', -1 -> '−1%'."""
    sign = "+" if bound > 0 else "−" if bound < 0 else ""
    return f"{sign}{abs(bound):g}%"


@dataclass(frozen=True)
class Scale:
    """One family of bands: the silver/gold column it fills and how its bounds read."""

    column: str
    measure: str  # what is measured, for the README ("" when the column name says it)
    bands: tuple[Band, ...]
    unit: Literal["usd", "share", "signed_pct"]
    hint: str = ""  # said once, after the first band's range ("of cap traded")

    def bound_text(self, bound: float) -> str:
        return {"usd": _usd, "share": _share, "signed_pct": _signed}[self.unit](bound)

    def range_text(self, band: Band) -> str:
        """'≥ $10B', '$1B–10B', '< $250M'; '3–10%'; '+1% to +5%'."""
        if band.upper is None:
            text = f"≥ {self.bound_text(band.lower)}" if band.lower is not None else "any value"
        elif band.lower is None:
            text = f"< {self.bound_text(band.upper)}"
        else:
            low, high = self.bound_text(band.lower), self.bound_text(band.upper)
            if self.unit == "usd":
                text = f"{low}–{high.removeprefix('$')}"
            elif self.unit == "share":
                text = f"{low.removesuffix('%')}–{high}"
            else:
                text = f"{low} to {high}"
        if self.hint and band is self.bands[0]:
            text += f" {self.hint}"
        return text

    def label(self, band: Band) -> str:
        """'Large cap (≥ $10B)': the band's name with its range."""
        return f"{band.label} ({self.range_text(band)})"


SCALES = (
    Scale("market_cap_category", "", MARKET_CAP_BANDS, "usd"),
    Scale("liquidity_category", "volume / market cap", LIQUIDITY_BANDS, "share", hint="of cap traded"),
    Scale("price_trend_category", "24h change, %", PRICE_TREND_BANDS, "signed_pct"),
)

_SCALES_BY_COLUMN = {scale.column: scale for scale in SCALES}


def scale_for(column: str) -> Scale:
    """The bands of one category column (``market_cap_category``, ...)."""
    return _SCALES_BY_COLUMN[column]


#: Human labels for every category code, with the range: 'Large cap (≥ $10B)'.
LABELS: dict[str, str] = {
    **{band.name: scale.label(band) for scale in SCALES for band in scale.bands},
    UNKNOWN: f"{UNKNOWN_LABEL} (no data)",
}
#: Short labels, for axes and legends where space is tight: 'Large cap'.
SHORT_LABELS: dict[str, str] = {
    **{band.name: band.label for scale in SCALES for band in scale.bands},
    UNKNOWN: UNKNOWN_LABEL,
}


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
    """The README table of every band (README.md, section Categories, is this text; a test checks)."""

    def fmt(scale: Scale, bound: float | None) -> str:
        if bound is None:
            return "—"
        return _usd(bound) if scale.unit == "usd" else f"{bound:g}"

    lines = [
        "| column | value | from (incl.) | to (excl.) | dashboard label |",
        "|---|---|---|---|---|",
    ]
    for scale in SCALES:
        column = f"{scale.column} ({scale.measure})" if scale.measure else scale.column
        for band in scale.bands:
            lines.append(
                f"| {column} | `{band.name}` | {fmt(scale, band.lower)} | {fmt(scale, band.upper)} "
                f"| {LABELS[band.name]} |"
            )
        lines.append(f"| {column} | `{UNKNOWN}` | input is NULL | | {LABELS[UNKNOWN]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.categories readme-table``: print the README's category table."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["readme-table"]:
        print("usage: python -m pipeline.categories readme-table", file=sys.stderr)
        return 2
    print(thresholds_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
