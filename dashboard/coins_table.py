"""The Coins table: search, sort, pages, the on-screen frame with its formats and the CSV. Pure: no Streamlit.

The frame keeps raw numbers (so sorting and the CSV are exact); what a person sees is the
pandas Styler's display text (``styled``: finance-site prices such as $0.000000533 and
$19,163.45, signed coloured percentages), which Streamlit shows while sorting by the value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd
from pandas.io.formats.style import Styler

from dashboard import formatting as fmt
from dashboard.frames import parse_sparkline

#: Percentage-change columns, coloured green (up) / red (down).
CHANGE_COLUMNS = (
    "price_change_percentage_1h",
    "price_change_percentage_24h",
    "price_change_percentage_7d",
    "price_change_percentage_30d",
)
USD_COLUMNS = ("total_volume", "market_cap", "fully_diluted_valuation")
SUPPLY_COLUMNS = ("circulating_supply", "max_supply")

#: The table's columns, in order (``watched`` is the star; ``id`` stays for lookups, not shown).
TABLE_COLUMNS = (
    "watched",
    "market_cap_rank",
    "image",
    "coin",
    "current_price",
    *CHANGE_COLUMNS,
    "total_volume",
    "market_cap",
    "fully_diluted_valuation",
    "circulating_supply",
    "max_supply",
    "distance_from_ath_pct",
    "sparkline",
    "id",
)

#: What the CSV download has: raw numbers, integer ranks, the snapshot time on every row.
CSV_COLUMNS = (
    "snapshot_at",
    "market_cap_rank",
    "id",
    "symbol",
    "name",
    "current_price",
    *CHANGE_COLUMNS,
    "total_volume",
    "market_cap",
    "fully_diluted_valuation",
    "circulating_supply",
    "total_supply",
    "max_supply",
    "distance_from_ath_pct",
    "market_cap_category",
)

#: Sort choices: label -> (column, descending by default).
SORTS = {
    "Rank": ("market_cap_rank", False),
    "Market cap": ("market_cap", True),
    "24h volume": ("total_volume", True),
    "Price": ("current_price", True),
    "1h change": ("price_change_percentage_1h", True),
    "24h change": ("price_change_percentage_24h", True),
    "7d change": ("price_change_percentage_7d", True),
    "30d change": ("price_change_percentage_30d", True),
    "Distance from ATH": ("distance_from_ath_pct", True),
    "Name": ("name", False),
}

PAGE_SIZES = (25, 50, 100, 250)
#: Points of the 7-day sparkline kept per row (168 hourly points thinned to every 4th: the shape stays).
SPARKLINE_POINTS = 42
UP_COLOUR, DOWN_COLOUR = "#16a34a", "#dc2626"  # readable on light and dark backgrounds


def search(frame: pd.DataFrame, text: str | None) -> pd.DataFrame:
    """Rows whose name, symbol or id contains ``text`` (case-insensitive, literal: no regex)."""
    needle = (text or "").strip().lower()
    if not needle or frame.empty:
        return frame
    hit = pd.Series(False, index=frame.index)
    for column in ("name", "symbol", "id"):
        if column in frame.columns:
            hit |= frame[column].astype("string").str.lower().str.contains(needle, regex=False).fillna(False)
    return frame[hit]


def sort_coins(frame: pd.DataFrame, column: str, descending: bool) -> pd.DataFrame:
    """Sorted by ``column``; missing values last either way, ties by rank then id."""
    if frame.empty or column not in frame.columns:
        return frame
    keys = [column] + [c for c in ("market_cap_rank", "id") if c != column and c in frame.columns]
    ordered = frame.sort_values(keys, ascending=[not descending] + [True] * (len(keys) - 1), na_position="last")
    if column == "name":
        lowered = frame["name"].astype("string").str.lower()
        ordered = frame.loc[lowered.sort_values(ascending=not descending, na_position="last").index]
    return ordered


def page_count(rows: int, size: int) -> int:
    """Pages needed for ``rows`` at ``size`` a page (at least 1, so an empty table has page 1)."""
    return max(1, math.ceil(rows / size)) if size > 0 else 1


def page_slice(frame: pd.DataFrame, page: int, size: int) -> pd.DataFrame:
    """Rows of page ``page`` (1-based; clamped to the pages there are)."""
    page = min(max(1, page), page_count(len(frame), size))
    return frame.iloc[(page - 1) * size : page * size]


def sparkline_points(raw, points: int = SPARKLINE_POINTS) -> list[float]:
    """The 7-day sparkline thinned to about ``points`` values, always keeping the newest; [] when missing."""
    values = [v for v in parse_sparkline(raw) if not math.isnan(v)]
    if len(values) <= points:
        return values
    step = math.ceil(len(values) / points)
    kept = values[::-1][::step][::-1]
    return kept


def table_frame(coins: pd.DataFrame, watched: Iterable[str]) -> pd.DataFrame:
    """The on-screen frame: ``TABLE_COLUMNS`` from the coins loader's rows, raw numbers, a star per watched id."""
    chosen = set(watched)
    out = pd.DataFrame(index=coins.index)
    out["watched"] = coins["id"].isin(chosen).astype(bool)
    out["market_cap_rank"] = coins["market_cap_rank"]
    out["image"] = coins["image"] if "image" in coins.columns else None
    out["coin"] = [fmt.coin_label(n, s, limit=fmt.DISPLAY_LIMIT) for n, s in zip(coins["name"], coins["symbol"])]
    for column in (
        "current_price",
        *CHANGE_COLUMNS,
        *USD_COLUMNS,
        *SUPPLY_COLUMNS,
        "distance_from_ath_pct",
    ):
        out[column] = coins[column].astype("float64") if column in coins.columns else math.nan
    sparklines = coins["sparkline_7d"] if "sparkline_7d" in coins.columns else pd.Series(None, index=coins.index)
    out["sparkline"] = [sparkline_points(raw) for raw in sparklines]
    out["id"] = coins["id"]
    return out[list(TABLE_COLUMNS)]


def change_colour(value) -> str:
    """CSS for a % change cell: green above zero, red below, nothing for zero or missing."""
    if fmt.is_missing(value) or round(float(value), 2) == 0:
        return ""
    return f"color: {UP_COLOUR if float(value) > 0 else DOWN_COLOUR}"


def _signed_pct(value) -> str:
    return fmt.format_pct(value, 2, signed=True)


def _rank(value) -> str:
    return fmt.MISSING if fmt.is_missing(value) else f"{int(value)}"


def styled(table: pd.DataFrame) -> Styler:
    """The table with display text (prices like a finance site, never 5.33e-7) and coloured changes;
    the cells keep their numbers, so sorting is numeric."""
    formats = {
        "market_cap_rank": _rank,
        "current_price": fmt.format_price,
        **{column: _signed_pct for column in CHANGE_COLUMNS},
        **{column: fmt.format_usd for column in USD_COLUMNS},
        **{column: fmt.format_supply for column in SUPPLY_COLUMNS},
        "distance_from_ath_pct": lambda v: fmt.format_pct(v, 1, signed=True),
    }
    formats = {column: function for column, function in formats.items() if column in table.columns}
    styler = table.style.format(formats)
    changes = [c for c in CHANGE_COLUMNS if c in table.columns]
    return styler.map(change_colour, subset=changes) if changes else styler


def csv_frame(coins: pd.DataFrame, snapshot_at=None) -> pd.DataFrame:
    """The CSV download: raw numbers (no $ or %), ranks as integers (never 1.0), the snapshot time on every row."""
    out = pd.DataFrame(index=coins.index)
    for column in CSV_COLUMNS:
        if column in coins.columns:
            out[column] = coins[column]
        elif column == "snapshot_at":
            out[column] = snapshot_at
        else:
            out[column] = None
    out["market_cap_rank"] = pd.to_numeric(out["market_cap_rank"], errors="coerce").round().astype("Int64")
    if "snapshot_at" in out.columns and out["snapshot_at"].notna().any():
        out["snapshot_at"] = pd.to_datetime(out["snapshot_at"]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out.reset_index(drop=True)


def watched_after_edit(shown_ids: Sequence[str], before: Iterable[str], edited_rows: dict) -> list[str]:
    """The watchlist after ticks in the table: ``edited_rows`` is Streamlit's ``{row position: {"watched":
    bool}}`` over ``shown_ids``; a tick adds the coin at the end, an untick removes it, the rest keeps its order."""
    result = list(before)
    for position, change in sorted(edited_rows.items(), key=lambda item: int(item[0])):
        index = int(position)
        if "watched" not in change or not 0 <= index < len(shown_ids):
            continue
        coin_id = shown_ids[index]
        if change["watched"] and coin_id not in result:
            result.append(coin_id)
        elif not change["watched"] and coin_id in result:
            result.remove(coin_id)
    return result
