"""Comparing coins from our own price history: pure functions, frames in, frames or numbers out.

No Streamlit and no SQL here (``dashboard.data`` loads, ``app_pages/compare.py`` draws), so each
figure is checked by hand-computed unit tests (tests/unit/test_analytics.py).

The steps, in order:

1. :func:`price_grid` - the points of every coin (snapshots and backfill) as one price per coin and
   period (the last one in the period), on one common time index. A gap of up to ``max_fill``
   periods is bridged with the last price; a longer gap stays a gap (no invented flat line).
2. :func:`normalised` - each coin = 100 at the first period where every coin has a price.
3. :func:`log_returns` - ln(p_t / p_{t-1}) per period; no return across a gap.
4. :func:`correlation_matrix`, :func:`beta_to` - pairwise over the periods both coins have a return,
   and only with at least ``min_overlap`` of them (else NaN: "not enough data", never a guess).
5. :func:`rolling_volatility` - the standard deviation of daily log returns over a rolling
   30-day window, annualised by sqrt(365): crypto trades every day of the year (stock markets use
   sqrt(252) trading days).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: Pairs (and betas) need at least this many returns in common to be shown.
MIN_OVERLAP = 10
#: Gaps of up to this many periods are bridged with the last price; longer gaps stay gaps.
MAX_FILL = 3
#: Rolling volatility: the window in days, the fewest daily returns in it for a value, and the
#: annualisation (calendar days: crypto trades every day).
VOLATILITY_WINDOW = 30
VOLATILITY_MIN_RETURNS = 20
PERIODS_PER_YEAR = 365


def price_grid(points: pd.DataFrame, freq: str, max_fill: int = MAX_FILL) -> pd.DataFrame:
    """One column per coin, one row per period (``freq``: "h" or "D"), the last price in each period.

    ``points`` has columns id, ts, price (any order, duplicates allowed). Non-positive and missing
    prices are dropped (a log return needs a positive price). The index runs from the first to the
    last period any coin has; inside a coin's own span, runs of at most ``max_fill`` missing periods
    take the last price, longer runs stay NaN; nothing is filled before a coin's first or after its
    last point.
    """
    if points.empty:
        return pd.DataFrame(dtype="float64")
    clean = points.loc[points["price"].notna() & (points["price"] > 0), ["id", "ts", "price"]].copy()
    if clean.empty:
        return pd.DataFrame(dtype="float64")
    clean["period"] = pd.to_datetime(clean["ts"]).dt.floor(freq)
    clean = clean.sort_values(["id", "ts"], kind="stable")
    last = clean.groupby(["period", "id"], sort=True)["price"].last().unstack("id")
    index = pd.date_range(last.index.min(), last.index.max(), freq=freq, name="ts")
    grid = last.reindex(index)
    grid.columns.name = None
    return grid.apply(_fill_short_gaps, max_fill=max_fill).astype("float64")


def _fill_short_gaps(series: pd.Series, max_fill: int) -> pd.Series:
    """Forward-fill runs of NaN no longer than ``max_fill`` that lie between two prices."""
    missing = series.isna()
    if not missing.any() or max_fill <= 0:
        return series
    run_id = (missing != missing.shift()).cumsum()
    run_length = missing.groupby(run_id).transform("sum")
    inside = series.ffill().notna() & series.bfill().notna()
    fillable = missing & inside & (run_length <= max_fill)
    return series.where(~fillable, series.ffill())


def common_start(grid: pd.DataFrame) -> pd.Timestamp | None:
    """The first period where every coin has a price, or None when there is none."""
    if grid.empty or grid.shape[1] == 0:
        return None
    complete = grid.notna().all(axis=1)
    return complete.idxmax() if complete.any() else None


def normalised(grid: pd.DataFrame) -> tuple[pd.DataFrame, pd.Timestamp | None]:
    """Performance: every coin = 100 at the first common period, from that period on.

    Returns (frame, base). With no period where all coins have a price, each coin is set to 100
    at its own first price instead and ``base`` is None (the page says so).
    """
    base = common_start(grid)
    if base is not None:
        since = grid.loc[base:]
        return since / since.loc[base] * 100.0, base
    firsts = grid.apply(lambda s: s.loc[s.first_valid_index()] if s.first_valid_index() is not None else np.nan)
    return grid / firsts * 100.0, None


def log_returns(grid: pd.DataFrame) -> pd.DataFrame:
    """ln(p_t / p_{t-1}) per period: NaN where either price is missing (no return across a gap)."""
    return np.log(grid / grid.shift(1)).iloc[1:]


def overlap_counts(returns: pd.DataFrame) -> pd.DataFrame:
    """How many periods each pair of coins both have a return."""
    present = returns.notna().astype("int64")
    return present.T @ present


def correlation_matrix(returns: pd.DataFrame, min_overlap: int = MIN_OVERLAP) -> pd.DataFrame:
    """Pearson correlation of returns, pairwise over the periods both coins have one.

    NaN where a pair has fewer than ``min_overlap`` returns in common, or where either coin's
    returns do not vary there (a constant price: correlation is undefined, not zero).
    """
    ids = list(returns.columns)
    matrix = pd.DataFrame(np.nan, index=ids, columns=ids, dtype="float64")
    for i, a in enumerate(ids):
        for b in ids[i:]:
            value = _pair_correlation(returns[a], returns[b], min_overlap)
            matrix.loc[a, b] = matrix.loc[b, a] = value
    return matrix


def _pair(x: pd.Series, y: pd.Series, min_overlap: int) -> tuple[np.ndarray, np.ndarray] | None:
    both = x.notna() & y.notna()
    if int(both.sum()) < min_overlap:
        return None
    return x[both].to_numpy(dtype="float64"), y[both].to_numpy(dtype="float64")


def _pair_correlation(x: pd.Series, y: pd.Series, min_overlap: int) -> float:
    pair = _pair(x, y, min_overlap)
    if pair is None:
        return math.nan
    a, b = pair[0] - pair[0].mean(), pair[1] - pair[1].mean()
    spread = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if spread <= 0.0 or not math.isfinite(spread):
        return math.nan
    return max(-1.0, min(1.0, float((a * b).sum()) / spread))


def beta_to(returns: pd.DataFrame, benchmark: str, min_overlap: int = MIN_OVERLAP) -> pd.Series:
    """Each coin's beta to ``benchmark``: cov(coin, benchmark) / var(benchmark) over the periods both
    have a return.

    The benchmark's own beta is 1 (when it has ``min_overlap`` returns and they vary). NaN where the
    benchmark is absent, a pair has fewer than ``min_overlap`` common returns, or the benchmark does
    not move over them (zero variance). A coin whose price does not move has beta 0.
    """
    result = pd.Series(np.nan, index=list(returns.columns), dtype="float64", name="beta")
    if benchmark not in returns.columns:
        return result
    for coin in returns.columns:
        pair = _pair(returns[coin], returns[benchmark], min_overlap)
        if pair is None:
            continue
        x, m = pair
        m_centred = m - m.mean()
        variance = float((m_centred * m_centred).sum())
        if variance <= 0.0:
            continue
        result[coin] = 1.0 if coin == benchmark else float(((x - x.mean()) * m_centred).sum()) / variance
    return result


def daily_grid(points: pd.DataFrame, max_fill: int = MAX_FILL) -> pd.DataFrame:
    """The daily price grid (for volatility, whatever the chart's granularity)."""
    return price_grid(points, "D", max_fill=max_fill)


def rolling_volatility(
    daily_prices: pd.DataFrame,
    window: int = VOLATILITY_WINDOW,
    min_returns: int = VOLATILITY_MIN_RETURNS,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> pd.DataFrame:
    """Annualised volatility: std (ddof 1) of the daily log returns in the last ``window`` days,
    times sqrt(``periods_per_year``), in percent. NaN until a window holds ``min_returns`` returns."""
    returns = log_returns(daily_prices)
    if returns.empty:
        return returns
    return returns.rolling(window, min_periods=min_returns).std(ddof=1) * math.sqrt(periods_per_year) * 100.0


def coverage(points: pd.DataFrame) -> pd.DataFrame:
    """Per coin: the first and last point and how many points, from snapshots and backfill together."""
    if points.empty:
        return pd.DataFrame(columns=["id", "first", "last", "points"])
    valid = points.loc[points["price"].notna() & (points["price"] > 0)]
    grouped = valid.groupby("id")["ts"]
    return (
        pd.DataFrame({"first": grouped.min(), "last": grouped.max(), "points": grouped.size()})
        .rename_axis("id")
        .reset_index()
    )
