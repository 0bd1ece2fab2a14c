"""Pure DataFrame helpers shared by the pages: filters and small derived tables.

DataFrame in, DataFrame out; no Streamlit and no I/O, so they are unit-tested
on tiny frames (``tests/dashboard/test_frames.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import pandas as pd

from pipeline.api import MARKET_CAP_CATEGORIES

PERIOD_COLUMNS = {
    "1h": "price_change_percentage_1h",
    "24h": "price_change_percentage_24h",
    "7d": "price_change_percentage_7d",
}


def parse_categories(values: Sequence[str] | str | None) -> tuple[list[str], list[str]]:
    """``['large_cap,mid_cap']`` or ``'large_cap,mid_cap'`` -> (valid in canonical order, invalid).

    Accepts comma-separated values and repeated parameters alike, ignores case,
    blanks and duplicates.
    """
    if values is None:
        return [], []
    if isinstance(values, str):
        values = [values]
    seen: dict[str, None] = {}  # ordered and O(1): a link can carry any number of values
    for value in values:
        for part in str(value).split(","):
            part = part.strip().lower()
            if part:
                seen.setdefault(part)
    valid = [c for c in MARKET_CAP_CATEGORIES if c in seen]
    invalid = [c for c in seen if c not in MARKET_CAP_CATEGORIES]
    return valid, invalid


def filter_by_category(
    frame: pd.DataFrame, categories: Sequence[str], column: str = "market_cap_category"
) -> pd.DataFrame:
    """Rows whose market-cap category is selected; an empty selection means every category."""
    if not categories or frame.empty:
        return frame
    return frame[frame[column].isin(list(categories))]


def filter_min_volume(frame: pd.DataFrame, min_volume: float) -> pd.DataFrame:
    """Coins that traded at least ``min_volume`` (USD) in 24h, so dust coins do not top the lists."""
    if not min_volume:
        return frame
    return frame[frame["total_volume"].fillna(0) >= min_volume]


def without_stale(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose data is current: a ``stale_record`` (its last_updated far older than the
    snapshot) is shown in tables but is no mover and no part of a trend. NULL counts as current."""
    if "stale_record" not in frame.columns or frame.empty:
        return frame
    stale = frame["stale_record"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    return frame[~stale]


def top_movers(frame: pd.DataFrame, column: str, n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``n`` biggest gainers (change > 0, best first) and losers (change < 0, worst first);
    stale records are left out (``without_stale``)."""
    frame = without_stale(frame)
    known = frame[frame[column].notna()]
    gainers = known[known[column] > 0].nlargest(n, column)
    losers = known[known[column] < 0].nsmallest(n, column)
    return gainers, losers


def liquidity_extremes(frame: pd.DataFrame, n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Most and least liquid coins by 24h volume / market cap."""
    known = frame[frame["volume_to_mcap_ratio"].notna()]
    return known.nlargest(n, "volume_to_mcap_ratio"), known.nsmallest(n, "volume_to_mcap_ratio")


def category_counts(frame: pd.DataFrame, column: str, order: Sequence[str]) -> pd.DataFrame:
    """Coins per category, every category of ``order`` present (0 when none), in that order."""
    counts = frame[column].value_counts() if not frame.empty else pd.Series(dtype="int64")
    extra = [c for c in counts.index if c not in order]
    index = list(order) + extra
    result = pd.DataFrame({"category": index, "coins": [int(counts.get(c, 0)) for c in index]})
    total = result["coins"].sum()
    result["share_pct"] = result["coins"] * 100.0 / total if total else 0.0
    return result


#: market_segment_analysis columns that count or add up coins: 0 for a category without coins.
SEGMENT_ZERO_COLUMNS = (
    "coin_count",
    "gainers_count",
    "losers_count",
    "total_market_cap",
    "market_cap_share_pct",
    "market_dominance_pct",
    "total_volume",
)


def complete_segments(segments: pd.DataFrame, categories: Sequence[str] = ()) -> pd.DataFrame:
    """One row per market-cap category, every one present, in the categories' own order.

    ``market_segment_analysis`` has a row only for categories that hold coins; a
    category nobody falls in would silently disappear. Here it is a row with
    zero coins (counts and sums 0, averages NULL: the mean of no coins is
    unknown). ``categories`` is the filter's selection (empty = all of
    ``MARKET_CAP_CATEGORIES``; rows outside it are dropped); without a selection
    a category the gold table has but the dashboard does not know is kept, last.
    """
    wanted = [c for c in MARKET_CAP_CATEGORIES if not categories or c in categories]
    present = list(segments["market_cap_category"]) if "market_cap_category" in segments.columns else []
    order = wanted + [c for c in present if c not in MARKET_CAP_CATEGORIES and not categories]
    missing = [c for c in wanted if c not in present]
    segments = segments[segments["market_cap_category"].isin(order)] if present else segments
    if not missing:
        return segments.set_index("market_cap_category", drop=False).loc[order].reset_index(drop=True)
    snapshot = segments["snapshot_at"].max() if "snapshot_at" in segments.columns and not segments.empty else pd.NaT
    filler = pd.DataFrame({"market_cap_category": missing})
    for column in segments.columns:
        if column == "market_cap_category":
            continue
        if column in SEGMENT_ZERO_COLUMNS:
            filler[column] = 0
        elif column == "snapshot_at":
            filler[column] = snapshot
        else:
            filler[column] = float("nan")
    parts = [part for part in (segments, filler) if not part.empty]
    full = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].copy()
    for column in SEGMENT_ZERO_COLUMNS:
        if column in segments.columns and pd.api.types.is_integer_dtype(segments[column].dtype):
            full[column] = full[column].astype(segments[column].dtype)
        elif column in full.columns and column.endswith("_count"):
            full[column] = pd.to_numeric(full[column]).fillna(0).astype("int64")
    return full.set_index("market_cap_category", drop=False).loc[order].reset_index(drop=True)


def dominance_shares(frame: pd.DataFrame, top_n: int = 10) -> pd.DataFrame:
    """Share of the whole market for the top ``n`` coins, the other listed coins, and the rest.

    ``market_dominance_pct`` is each coin's share of the whole market; whatever the
    listed coins do not cover is the rest of the market (coins outside the
    selection or outside the tracked top list).
    Columns: label, symbol, share_pct, market_cap, kind ('coin' | 'others' | 'rest').
    """
    known = frame[frame["market_dominance_pct"].notna()].sort_values("market_dominance_pct", ascending=False)
    top = known.head(top_n)
    rows = [
        {
            "label": r["name"],
            "symbol": r["symbol"],
            "share_pct": float(r["market_dominance_pct"]),
            "market_cap": r["market_cap"],
            "kind": "coin",
        }
        for _, r in top.iterrows()
    ]
    rest_of_list = known.iloc[top_n:]
    if not rest_of_list.empty:
        rows.append(
            {
                "label": f"Other {len(rest_of_list)} coins",
                "symbol": "",
                "share_pct": float(rest_of_list["market_dominance_pct"].sum()),
                "market_cap": float(rest_of_list["market_cap"].sum()),
                "kind": "others",
            }
        )
    listed = float(known["market_dominance_pct"].sum())
    if listed < 99.95:
        rows.append(
            {
                "label": "Rest of the market",
                "symbol": "",
                "share_pct": 100.0 - listed,
                "market_cap": math.nan,
                "kind": "rest",
            }
        )
    return pd.DataFrame(rows, columns=["label", "symbol", "share_pct", "market_cap", "kind"])


def implied_change_pct(frame: pd.DataFrame, column: str = "price_change_percentage_24h") -> float | None:
    """Change of the coins' combined market cap implied by their price changes (percent).

    Each cap ``c`` with change ``p`` was ``c / (1 + p/100)`` a period ago. Stale records are left out.
    """
    frame = without_stale(frame)
    known = frame[frame[column].notna() & frame["market_cap"].notna() & (frame[column] > -100)]
    if known.empty:
        return None
    now = known["market_cap"].sum()
    before = (known["market_cap"] / (1 + known[column] / 100.0)).sum()
    if not before:
        return None
    return float((now / before - 1) * 100.0)


#: dominance_basis values meaning "the tracked top-N coins, not the whole market"
#: ('tracked_universe' is the old name, still in stored history until the next gold rebuild).
TOP_N_BASES = frozenset({"top_n", "tracked_universe"})
GLOBAL_FAILED = "the /global call failed"


def is_top_n(basis) -> bool:
    """True when a figure with this dominance_basis is of the top-N coins, not the whole market."""
    return isinstance(basis, str) and basis in TOP_N_BASES


def frame_basis_value(basis) -> str:
    """One stored dominance_basis value as 'top_n' or 'global' (the old 'tracked_universe' is 'top_n')."""
    return "top_n" if is_top_n(basis) else "global"


def frame_basis(frame: pd.DataFrame) -> str:
    """'top_n' when any row of a mart/segments/history frame is on the top-N basis, else 'global'."""
    if frame is None or frame.empty or "dominance_basis" not in frame.columns:
        return "global"
    return "top_n" if frame["dominance_basis"].map(is_top_n).any() else "global"


def basis_scope(basis, coin_count) -> str:
    """What a "whole market" figure covers: 'whole market' or 'top 250 coins'."""
    if not is_top_n(basis):
        return "whole market"
    count = 0 if coin_count is None or pd.isna(coin_count) else int(coin_count)
    return f"top {count:,} coins"


def basis_reason(frame: pd.DataFrame) -> str | None:
    """Why the figures are of the top-N coins (gold's basis_note), or None on the global basis."""
    if frame_basis(frame) != "top_n":
        return None
    if "basis_note" in frame.columns:
        notes = frame["basis_note"].dropna()
        notes = notes[notes.astype(str).str.strip() != ""]
        if not notes.empty:
            return str(notes.iloc[-1])
    return GLOBAL_FAILED


def label_dominance_column(
    frame: pd.DataFrame, columns: dict, basis, coin_count, label_of: Callable[[str], object] | None = None
) -> tuple[pd.DataFrame, dict]:
    """On the top-N basis, ``market_dominance_pct`` becomes ``share_of_top_<n>_coins_pct`` (table
    header and CSV header both say what it is a share of); on the global basis, nothing changes.
    ``columns``: the table's column config (name -> config), in order; ``label_of(label)`` builds the
    config of the renamed column."""
    if not is_top_n(basis) or "market_dominance_pct" not in columns:
        return frame, columns
    count = 0 if coin_count is None or pd.isna(coin_count) else int(coin_count)
    name = f"share_of_top_{count}_coins_pct"
    renamed = {
        (name if key == "market_dominance_pct" else key): (
            label_of(f"Share of top {count:,} coins") if key == "market_dominance_pct" and label_of else value
        )
        for key, value in columns.items()
    }
    return frame.rename(columns={"market_dominance_pct": name}), renamed


def basis_totals(mart: pd.DataFrame) -> dict:
    """The mart's totals of its basis: market_cap, volume, change_24h (None where unknown)."""
    columns = {
        "market_cap": "basis_total_market_cap",
        "volume": "basis_total_volume",
        "change_24h": "basis_market_cap_change_percentage_24h",
    }
    result = {}
    for key, column in columns.items():
        values = mart[column].dropna() if column in mart.columns else pd.Series(dtype="float64")
        result[key] = float(values.iloc[0]) if not values.empty else None
    return result


def break_gaps(frame: pd.DataFrame, time_column: str = "snapshot_at", factor: float = 3.0) -> pd.DataFrame:
    """The frame with an empty row (NaN values) inserted between two points further apart than
    ``factor`` times the median spacing, so a line chart breaks there instead of drawing a straight
    line across weeks without data. Fewer than three points: unchanged."""
    if frame is None or len(frame) < 3:
        return frame
    ordered = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
    times = pd.to_datetime(ordered[time_column])
    steps = times.diff()
    median = steps.iloc[1:].median()
    if pd.isna(median) or median <= pd.Timedelta(0):
        return ordered
    gaps = steps > median * factor
    if not gaps.any():
        return ordered
    parts = []
    for position in range(len(ordered)):
        if gaps.iloc[position]:
            filler = {column: None for column in ordered.columns}
            filler[time_column] = times.iloc[position - 1] + (times.iloc[position] - times.iloc[position - 1]) / 2
            parts.append(filler)
        parts.append(ordered.iloc[position].to_dict())
    result = pd.DataFrame(parts, columns=ordered.columns)
    result[time_column] = pd.to_datetime(result[time_column])
    for column in ordered.columns:
        if column != time_column and pd.api.types.is_numeric_dtype(ordered[column].dtype):
            result[column] = pd.to_numeric(result[column], errors="coerce").astype("float64")
    return result


def parse_sparkline(raw) -> list[float]:
    """The mart's ``sparkline_7d`` JSON text -> list of floats ([] when missing or broken)."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return []
    try:
        values = json.loads(raw) if isinstance(raw, str) else list(raw)
    except (TypeError, ValueError):
        return []
    return [float(v) if v is not None else math.nan for v in values if isinstance(v, (int, float)) or v is None]


def sparkline_frame(raw, end: datetime | None) -> pd.DataFrame:
    """A 7-day sparkline as (ts, price): evenly spaced points ending at ``end`` (hourly for 168 points)."""
    values = parse_sparkline(raw)
    if not values:
        return pd.DataFrame({"ts": pd.Series(dtype="datetime64[ns]"), "price": pd.Series(dtype="float64")})
    end = pd.Timestamp(end) if end is not None and not pd.isna(end) else pd.Timestamp("1970-01-08")
    step = timedelta(days=7) / max(len(values) - 1, 1)
    times = [end - step * (len(values) - 1 - i) for i in range(len(values))]
    return pd.DataFrame({"ts": pd.to_datetime(times), "price": values})


def runs_table(runs: pd.DataFrame, live_run_id: str | None = None) -> pd.DataFrame:
    """The run log with a duration column (seconds), ready to show.

    ``live_run_id``: the run holding a live lease (``pipeline.runs.current_holder``). Any other
    row still marked ``running`` belongs to a process that is gone and is shown as ``abandoned``
    (the liveness rule of ``pipeline.runs``), even before a writer has recorded it so.
    """
    table = runs.copy()
    if table.empty:
        table["duration_s"] = pd.Series(dtype="float64")
        return table
    if "status" in table.columns and "run_id" in table.columns:
        dead = (table["status"] == "running") & (table["run_id"] != live_run_id)
        table.loc[dead, "status"] = "abandoned"
    started = pd.to_datetime(table["started_at"])
    finished = pd.to_datetime(table["finished_at"])
    table["duration_s"] = (finished - started).dt.total_seconds()
    return table


def quarantine_reasons(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined records per kind of reason, most frequent first.

    A reason such as ``"negative market_cap: -5.0; missing id"`` counts once for
    ``negative market_cap`` and once for ``missing id`` (the values are dropped).
    """
    if quarantine.empty:
        return pd.DataFrame({"reason": pd.Series(dtype="str"), "records": pd.Series(dtype="int64")})
    kinds = quarantine["reason"].astype("str").str.split("; ").explode().str.split(":", n=1).str[0].str.strip()
    counts = kinds[kinds != ""].value_counts()
    return pd.DataFrame({"reason": counts.index.astype("str"), "records": counts.to_numpy().astype("int64")})


#: Two market_history points count as the same coin universe when their coin counts differ by at
#: most this share (a record or two quarantined is the same top-N; 100 coins against 250 is not).
COMPARABLE_COUNT_TOLERANCE = 0.02


def comparable_snapshot(
    history: pd.DataFrame,
    now,
    hours: float = 24,
    tolerance_hours: float = 2,
    *,
    coin_count=None,
    dominance_basis: str | None = None,
    count_tolerance: float = COMPARABLE_COUNT_TOLERANCE,
) -> pd.Series | None:
    """The ``market_history`` row a "24h" delta may compare ``now`` with, or None.

    Like for like: the row nearest to ``now - hours`` within ``± tolerance_hours``, over the
    same coin universe (``coin_count`` within ``count_tolerance`` of the given one, when given)
    and with the same ``dominance_basis`` (``global`` totals are never compared with tracked-coin
    totals). With no such row there is no delta: a change "vs 214 days earlier" or
    "vs 68 s earlier" is not a 24h change. Ties go to the earlier row.
    """
    if history is None or history.empty or now is None or pd.isna(now):
        return None
    now = pd.Timestamp(now)
    target = now - pd.Timedelta(hours=hours)
    history = history.sort_values("snapshot_at", kind="stable")
    times = pd.to_datetime(history["snapshot_at"])
    distance = (times - target).abs()
    keep = (distance <= pd.Timedelta(hours=tolerance_hours)) & (times < now)
    if dominance_basis is not None and "dominance_basis" in history.columns:
        keep &= history["dominance_basis"] == dominance_basis
    if coin_count is not None and not pd.isna(coin_count) and "coin_count" in history.columns:
        counts = pd.to_numeric(history["coin_count"], errors="coerce")
        keep &= (counts - float(coin_count)).abs() <= float(coin_count) * count_tolerance
    candidates = history[keep.to_numpy()]
    if candidates.empty:
        return None
    order = distance[keep.to_numpy()].to_numpy().argsort(kind="stable")
    return candidates.iloc[order[0]]


def why_no_movers(coins: pd.DataFrame, pool: pd.DataFrame, column: str, period: str, min_volume_label: str) -> str:
    """Why a movers list is empty, the real reason first: the data lacks the change, nothing
    moved, the data lacks 24h volume, and only then the minimum-volume filter.

    ``coins``: the coins in view; ``pool``: those left by the minimum-volume filter.
    """
    changes = coins[column] if column in coins.columns else pd.Series(dtype="float64")
    if not changes.notna().any():
        return (
            f"This data has no {period} change: CoinGecko sent no {period} price change for any coin "
            f"in this snapshot. Choose another period."
        )
    if not (changes.fillna(0) != 0).any():
        return f"No coin in the selection moved over {period} (every {period} change is 0 %)."
    volumes = coins["total_volume"] if "total_volume" in coins.columns else pd.Series(dtype="float64")
    if pool.empty and not volumes.notna().any():
        return 'This data has no 24h volume, so no coin passes the minimum volume. Choose "No minimum".'
    return (
        f"No coin with at least {min_volume_label} of 24h volume has a {period} change in the selection. "
        "Lower the minimum volume."
    )
