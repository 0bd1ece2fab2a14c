"""The plausibility gate: is a well-formed /coins/markets snapshot what was asked for?

The response contract (``providers/coingecko/contract.py``) rejects bodies of the wrong
*shape*; silver quarantines single malformed *records*. Neither notices a body that is
well-formed record by record but wrong as a whole: priced in another currency, a
partial list, market caps off by a unit, ranks scrambled, a bitcoin price from
nowhere. This module judges a whole snapshot against a few invariants every real
CoinGecko snapshot keeps, before gold may show it.

Pure: no I/O. ``check_snapshot`` takes the new snapshot's silver rows (and the last
published snapshot's) as DataFrames and returns human-readable reasons; an empty list
means plausible. Every threshold is in :class:`Thresholds` (one line of why each), and
README "Plausibility gate" lists them. They were checked against every real recorded
body under /work/shared/data/real/markets (2020-2026): every USD body passes,
alone and each daily body against the day before; the three recorded bodies priced in INR
and EUR are held.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

BITCOIN = "bitcoin"


@dataclass(frozen=True)
class Thresholds:
    """Every limit of the gate, in one place."""

    #: Coins returned below this share of min(requested, previous published count) -> a partial list.
    #: Same 90 % as the fetch contract's PIPELINE_MIN_COVERAGE; the previous count allows the API's own short lists.
    min_coin_share: float = 0.90
    #: Records quarantined by silver above this share of the body -> the body as a whole is broken (real: 0 %).
    max_quarantined_share: float = 0.10
    #: Kept coins with a NULL price above this share -> not a usable price list (real bodies: 0 %).
    max_null_price_share: float = 0.05
    #: Share checks (quarantine, NULL prices, ranks) need this many coins: below it one coin moves a share by > 5 points.
    min_coins_for_shares: int = 20
    #: Median price of the known USD stablecoins outside this band -> not priced in USD (EUR is ~0.92, INR ~83).
    stablecoin_band: tuple[float, float] = (0.97, 1.03)
    #: ... over at least this many of them: the median of fewer is one coin's price, and one de-pegged (or garbage)
    #: stablecoin must not hold a snapshot (top-100 bodies carry 4-8 of them).
    min_stablecoins: int = 3
    #: Median of market_cap / (price x circulating supply) outside this band -> caps or prices in another unit
    #: (real bodies: 0.997-1.006; single coins deviate legitimately, so only the median counts).
    mcap_ratio_band: tuple[float, float] = (0.8, 1.25)
    #: The ratio needs this many coins with price, market cap and circulating supply all > 0.
    min_coins_for_ratio: int = 10
    #: An adjacent pair (rank r, rank r+1) is inverted when rank r+1's market cap exceeds rank r's by more than this
    #: (real bodies have small inversions between near-equal caps while CoinGecko re-ranks).
    rank_inversion_tolerance: float = 0.10
    #: Inverted adjacent pairs above this share -> ranks do not follow market cap (real: <= 1 %; shuffled: ~50 %).
    max_rank_inversion_share: float = 0.20
    #: Bitcoin's price move since the previous published snapshot may reach this share within a day ...
    btc_move_per_day: float = 0.50
    #: ... growing with the square root of the days between the two prices (a random walk), never below this floor.
    btc_move_floor: float = 0.25


DEFAULT_THRESHOLDS = Thresholds()


def _pct(share: float) -> str:
    return f"{100 * share:.1f} %"


def _money(value: float) -> str:
    return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.4g}"


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype="float64")
    return pd.to_numeric(frame[column], errors="coerce").astype("float64")


def _coin_time(frame: pd.DataFrame, coin_id: str) -> datetime | None:
    """When a coin's price was taken: its ``last_updated``, else the snapshot's time."""
    rows = frame[frame["id"] == coin_id]
    for column in ("last_updated", "snapshot_at"):
        if column in rows.columns and not rows.empty:
            value = pd.to_datetime(rows[column].iloc[0], errors="coerce")
            if not pd.isna(value):
                moment: datetime = value.to_pydatetime().replace(tzinfo=None)
                return moment
    return None


def check_count(
    new: pd.DataFrame,
    previous: pd.DataFrame | None,
    *,
    requested: int | None,
    quarantined: int = 0,
    t: Thresholds = DEFAULT_THRESHOLDS,
) -> list[str]:
    """Coins returned (kept or quarantined: garbage records are the quarantine check's) against
    min(requested, previous published count). Needs history: without a previous snapshot a short
    list cannot be told from a partial one (the fetch contract already held the run to 90 % of
    what the API lists)."""
    if previous is None or previous.empty:
        return []
    expected = len(previous) if requested is None else min(requested, len(previous))
    returned = len(new) + quarantined
    if expected <= 0:
        return []
    if returned < math.ceil(t.min_coin_share * expected - 1e-9):
        return [
            f"only {returned} coins, expected about {expected} (requested {requested}, the previous published "
            f"snapshot had {len(previous)}; at least {_pct(t.min_coin_share)} required)"
        ]
    return []


def check_quarantined(new: pd.DataFrame, *, quarantined: int, t: Thresholds = DEFAULT_THRESHOLDS) -> list[str]:
    total = len(new) + quarantined
    if total < t.min_coins_for_shares or quarantined <= 0:
        return []
    share = quarantined / total
    if share > t.max_quarantined_share:
        return [
            f"{quarantined} of {total} records quarantined ({_pct(share)}, at most "
            f"{_pct(t.max_quarantined_share)} plausible)"
        ]
    return []


def check_null_prices(new: pd.DataFrame, t: Thresholds = DEFAULT_THRESHOLDS) -> list[str]:
    if len(new) < t.min_coins_for_shares:
        return []
    nulls = int(_numeric(new, "current_price").isna().sum())
    share = nulls / len(new)
    if share > t.max_null_price_share:
        return [
            f"{nulls} of {len(new)} coins have no price ({_pct(share)}, at most "
            f"{_pct(t.max_null_price_share)} plausible)"
        ]
    return []


def check_stablecoins(
    new: pd.DataFrame, *, vs_currency: str, stablecoins: Iterable[str], t: Thresholds = DEFAULT_THRESHOLDS
) -> list[str]:
    """Known USD stablecoins trade near $1: their median price tells the currency the body is priced in."""
    if vs_currency.lower() != "usd":
        return []
    ids = set(stablecoins)
    prices = _numeric(new, "current_price")[new["id"].isin(ids)].dropna()
    if len(prices) < t.min_stablecoins:
        return []
    median = float(prices.median())
    low, high = t.stablecoin_band
    if not low <= median <= high:
        return [
            f"USD stablecoins ({len(prices)}) have a median price of {median:.4g} {vs_currency.upper()}, "
            f"outside [{low}, {high}]: the body is not priced in {vs_currency.upper()}"
        ]
    return []


def check_market_caps(new: pd.DataFrame, t: Thresholds = DEFAULT_THRESHOLDS) -> list[str]:
    """market_cap ~= price x circulating supply for the bulk of coins (the median, robust to single coins)."""
    price, cap, supply = (_numeric(new, c) for c in ("current_price", "market_cap", "circulating_supply"))
    usable = (price > 0) & (cap > 0) & (supply > 0)
    if int(usable.sum()) < t.min_coins_for_ratio:
        return []
    median = float((cap[usable] / (price[usable] * supply[usable])).median())
    low, high = t.mcap_ratio_band
    if not low <= median <= high:
        return [
            f"market cap / (price x circulating supply) has a median of {median:.4g} over {int(usable.sum())} "
            f"coins, outside [{low}, {high}]"
        ]
    return []


def check_ranks(new: pd.DataFrame, t: Thresholds = DEFAULT_THRESHOLDS) -> list[str]:
    """Ranks follow market cap: few adjacent pairs where the lower rank has the clearly bigger cap."""
    rank, cap = _numeric(new, "market_cap_rank"), _numeric(new, "market_cap")
    ranked = pd.DataFrame({"rank": rank, "cap": cap})
    ranked = ranked[ranked["rank"].notna() & (ranked["cap"] > 0)].sort_values("rank")
    pairs = len(ranked) - 1
    if pairs + 1 < t.min_coins_for_shares:
        return []
    caps = ranked["cap"].to_numpy()
    inverted = int((caps[1:] > caps[:-1] * (1 + t.rank_inversion_tolerance)).sum())
    share = inverted / pairs
    if share > t.max_rank_inversion_share:
        return [
            f"market_cap_rank does not follow market cap: {inverted} of {pairs} adjacent ranks inverted "
            f"({_pct(share)}, at most {_pct(t.max_rank_inversion_share)} plausible)"
        ]
    return []


def btc_move_bound(elapsed: timedelta, t: Thresholds = DEFAULT_THRESHOLDS) -> float:
    """The largest plausible relative move of bitcoin's price over ``elapsed``."""
    days = abs(elapsed.total_seconds()) / 86_400
    return max(t.btc_move_floor, t.btc_move_per_day * math.sqrt(days))


def check_bitcoin(
    new: pd.DataFrame,
    previous: pd.DataFrame | None,
    *,
    elapsed: timedelta | None = None,
    t: Thresholds = DEFAULT_THRESHOLDS,
) -> list[str]:
    """Bitcoin's price since the previous published snapshot, within a bound scaled by the time between
    the two prices (their ``last_updated``, so a recorded body replayed later is judged by its own time)."""
    if previous is None or previous.empty:
        return []
    old = _numeric(previous, "current_price")[previous["id"] == BITCOIN].dropna()
    now = _numeric(new, "current_price")[new["id"] == BITCOIN].dropna()
    if old.empty or now.empty or float(old.iloc[0]) <= 0:
        return []
    before, after = float(old.iloc[0]), float(now.iloc[0])
    if elapsed is None:
        t_old, t_new = _coin_time(previous, BITCOIN), _coin_time(new, BITCOIN)
        elapsed = (t_new - t_old) if t_old and t_new else timedelta(days=1)
    move = abs(after / before - 1)
    bound = btc_move_bound(elapsed, t)
    if move > bound:
        hours = abs(elapsed.total_seconds()) / 3600
        span = f"{hours:.1f} h" if hours < 72 else f"{hours / 24:.0f} days"
        return [
            f"bitcoin moved {_pct(move)} ({_money(before)} -> {_money(after)}) in {span}, more than the "
            f"plausible {_pct(bound)}"
        ]
    return []


def check_snapshot(
    new: pd.DataFrame,
    previous: pd.DataFrame | None,
    *,
    requested: int | None,
    vs_currency: str,
    quarantined: int = 0,
    stablecoins: Iterable[str] = (),
    elapsed: timedelta | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[str]:
    """Reasons the ``new`` snapshot is implausible; an empty list means it may be published.

    ``new``/``previous``: silver rows of the new and of the last published snapshot (columns id,
    market_cap_rank, current_price, market_cap, circulating_supply, last_updated/snapshot_at);
    ``previous=None`` for the first snapshot: only the checks that need no history run.
    ``requested``: coins asked for (None: unknown). ``quarantined``: the new snapshot's records that
    silver quarantined. ``stablecoins``: ids of USD-pegged stablecoins (ref_stablecoins).
    ``elapsed``: time between the two bitcoin prices (default: from their last_updated).
    """
    t = thresholds
    if previous is not None and previous.empty:
        previous = None
    return [
        *check_count(new, previous, requested=requested, quarantined=quarantined, t=t),
        *check_quarantined(new, quarantined=quarantined, t=t),
        *check_null_prices(new, t),
        *check_stablecoins(new, vs_currency=vs_currency, stablecoins=stablecoins, t=t),
        *check_market_caps(new, t),
        *check_ranks(new, t),
        *check_bitcoin(new, previous, elapsed=elapsed, t=t),
    ]
