"""dashboard.analytics with numbers worked out by hand: the price grid (last per period, short gaps
bridged, long gaps kept), normalised performance, log returns, correlation, beta, rolling volatility."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dashboard import analytics

DAY = pd.Timedelta(days=1)
START = pd.Timestamp("2024-01-01")


def points(**series: list[float | None]) -> pd.DataFrame:
    """Daily points from 2024-01-01 (None: no point that day) as id, ts, price rows."""
    rows = [
        (coin, START + i * DAY + pd.Timedelta(hours=12), price)
        for coin, prices in series.items()
        for i, price in enumerate(prices)
        if price is not None
    ]
    return pd.DataFrame(rows, columns=["id", "ts", "price"])


def returns_of(**series: list[float]) -> pd.DataFrame:
    """A returns frame straight from lists (for correlation and beta)."""
    return pd.DataFrame(series, dtype="float64")


# -- price grid ------------------------------------------------------------------------------


def test_grid_keeps_the_last_price_of_each_period():
    frame = pd.DataFrame(
        {
            "id": ["a", "a", "a", "a"],
            "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 09:00", "2024-01-01 23:59", "2024-01-02 00:00"]),
            "price": [2.0, 1.0, 3.0, 5.0],
        }
    )
    grid = analytics.price_grid(frame, "D")
    assert list(grid.index) == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")]
    assert grid["a"].tolist() == [3.0, 5.0]  # 23:59 is the last of the 1st, whatever the row order


def test_hourly_grid():
    frame = pd.DataFrame(
        {
            "id": ["a"] * 3,
            "ts": pd.to_datetime(["2024-01-01 10:15", "2024-01-01 10:45", "2024-01-01 11:00"]),
            "price": [1.0, 2.0, 4.0],
        }
    )
    grid = analytics.price_grid(frame, "h")
    assert grid["a"].tolist() == [2.0, 4.0]
    assert grid.index[0] == pd.Timestamp("2024-01-01 10:00")


def test_short_gaps_are_bridged_long_gaps_are_not_and_nothing_beyond_the_ends():
    grid = analytics.price_grid(
        points(
            a=[1, None, None, None, 5, None, None, None, None, 10],  # gap of 3: filled; gap of 4: kept
            b=[None, None, 2, 3, None, None, None, None, None, None],  # starts late, ends early
        ),
        "D",
    )
    assert grid["a"].tolist()[:5] == [1, 1, 1, 1, 5]
    assert grid["a"].iloc[5:9].isna().all() and grid["a"].iloc[9] == 10
    assert grid["b"].iloc[:2].isna().all() and grid["b"].iloc[4:].isna().all()
    assert grid["b"].iloc[2:4].tolist() == [2, 3]


def test_non_positive_and_missing_prices_are_dropped():
    grid = analytics.price_grid(points(a=[1, 0, -3, None, 2]), "D", max_fill=0)
    assert grid["a"].iloc[0] == 1 and grid["a"].iloc[1:4].isna().all() and grid["a"].iloc[4] == 2


def test_empty_points():
    assert analytics.price_grid(pd.DataFrame(columns=["id", "ts", "price"]), "D").empty
    assert analytics.normalised(pd.DataFrame())[1] is None


# -- normalised performance and returns -----------------------------------------------------


def test_normalised_is_100_at_the_first_common_period():
    grid = analytics.price_grid(points(a=[10, 20, 40, 30], b=[None, 5, 5, 10]), "D")
    perf, base = analytics.normalised(grid)
    assert base == START + DAY
    assert perf["a"].tolist() == [100.0, 200.0, 150.0]
    assert perf["b"].tolist() == [100.0, 100.0, 200.0]


def test_normalised_without_a_common_period_starts_each_coin_at_its_own_first_price():
    grid = analytics.price_grid(points(a=[10, 20], b=[None, None, None, None, None, 4, 2]), "D")
    perf, base = analytics.normalised(grid)
    assert base is None
    assert perf["a"].dropna().tolist() == [100.0, 200.0]
    assert perf["b"].dropna().tolist() == [100.0, 50.0]


def test_single_coin():
    grid = analytics.price_grid(points(a=[1, 2, 4]), "D")
    perf, base = analytics.normalised(grid)
    assert base == START and perf["a"].tolist() == [100, 200, 400]
    returns = analytics.log_returns(grid)
    assert returns["a"].tolist() == pytest.approx([math.log(2), math.log(2)])
    assert analytics.correlation_matrix(returns).isna().all().all()  # two returns < 10


def test_no_return_across_a_gap():
    grid = analytics.price_grid(points(a=[1, 2, None, None, None, None, 8, 4]), "D")
    returns = analytics.log_returns(grid)["a"]
    assert returns.iloc[0] == pytest.approx(math.log(2))
    assert returns.iloc[1:6].isna().all()
    assert returns.iloc[6] == pytest.approx(math.log(0.5))


# -- correlation and beta ------------------------------------------------------------------------


BASE = [0.01, -0.02, 0.03, 0.0, 0.015, -0.01, 0.02, -0.03, 0.005, 0.01, -0.005, 0.025]


def test_correlation_of_constructed_series():
    x = BASE
    r = returns_of(x=x, double=[2 * v + 0.001 for v in x], inverse=[-v for v in x])
    matrix = analytics.correlation_matrix(r)
    assert matrix.loc["x", "double"] == pytest.approx(1.0)
    assert matrix.loc["x", "inverse"] == pytest.approx(-1.0)
    assert matrix.loc["double", "inverse"] == pytest.approx(-1.0)
    assert np.diag(matrix.to_numpy()) == pytest.approx([1.0, 1.0, 1.0])
    assert (matrix == matrix.T).all().all()


def test_correlation_hand_computed():
    x = [float(v) for v in range(1, 11)]
    y = [1.0, 3.0, 2.0, 5.0, 4.0, 7.0, 6.0, 9.0, 8.0, 10.0]
    # sum((x-5.5)(y-5.5)) = 78.5, sum((x-5.5)^2) = sum((y-5.5)^2) = 82.5 -> r = 78.5 / 82.5
    matrix = analytics.correlation_matrix(returns_of(x=x, y=y))
    assert matrix.loc["x", "y"] == pytest.approx(78.5 / 82.5)
    beta = analytics.beta_to(returns_of(x=x, y=y), "x")
    assert beta["y"] == pytest.approx(78.5 / 82.5)  # same spread on both sides: beta = r


def test_pairs_need_ten_common_returns():
    a = BASE[:12]
    b = [None] * 3 + BASE[3:12]  # 9 in common with a
    r = returns_of(a=a, b=b)
    matrix = analytics.correlation_matrix(r)
    assert math.isnan(matrix.loc["a", "b"])
    assert matrix.loc["a", "a"] == pytest.approx(1.0)
    assert math.isnan(matrix.loc["b", "b"])  # b has only 9 returns at all
    assert analytics.overlap_counts(r).loc["a", "b"] == 9
    assert math.isnan(analytics.beta_to(r, "a")["b"])
    r10 = returns_of(a=a, b=[None] * 2 + BASE[2:12])
    assert matrix.shape == (2, 2) and not math.isnan(analytics.correlation_matrix(r10).loc["a", "b"])


def test_constant_price_correlation_undefined_beta_zero_and_constant_benchmark_undefined():
    flat = [0.0] * 12
    r = returns_of(btc=BASE, flat=flat)
    matrix = analytics.correlation_matrix(r)
    assert math.isnan(matrix.loc["btc", "flat"]) and math.isnan(matrix.loc["flat", "flat"])
    beta = analytics.beta_to(r, "btc")
    assert beta["btc"] == 1.0 and beta["flat"] == 0.0  # a coin that does not move has beta 0
    assert analytics.beta_to(r, "flat").isna().all()  # a benchmark that does not move: undefined


def test_beta_hand_computed_and_missing_benchmark():
    # coin = 1.5 * btc + noise orthogonal to btc -> beta exactly 1.5
    btc = [1.0, -1.0, 1.0, -1.0, 2.0, -2.0, 2.0, -2.0, 0.5, -0.5]
    noise = [1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 0.0, 0.0]  # sum 0, sum(noise*btc) = 0
    assert sum(n * b for n, b in zip(noise, btc, strict=True)) == 0.0
    coin = [1.5 * b + n for b, n in zip(btc, noise, strict=True)]
    r = returns_of(bitcoin=btc, coin=coin)
    beta = analytics.beta_to(r, "bitcoin")
    assert beta["coin"] == pytest.approx(1.5)
    assert beta["bitcoin"] == 1.0
    assert analytics.beta_to(returns_of(coin=coin), "bitcoin").isna().all()


# -- volatility and coverage ---------------------------------------------------------------------------


def test_rolling_volatility_is_annualised_by_sqrt_365():
    # Prices alternating x1.1 and /1.1: returns +-ln(1.1), std (ddof 1) over 30 of them known exactly.
    prices = [100.0 * (1.1 if i % 2 else 1.0) for i in range(41)]
    grid = analytics.daily_grid(points(a=prices))
    vol = analytics.rolling_volatility(grid)["a"]
    step = math.log(1.1)
    std = math.sqrt(30 * step**2 / 29)  # 30 returns of +-step, mean 0
    assert vol.iloc[:19].isna().all()  # fewer than 20 returns in the window
    assert vol.iloc[29] == pytest.approx(std * math.sqrt(365) * 100)
    assert vol.iloc[-1] == pytest.approx(std * math.sqrt(365) * 100)
    flat = analytics.rolling_volatility(analytics.daily_grid(points(a=[5.0] * 40)))["a"]
    assert flat.dropna().eq(0.0).all() and flat.notna().sum() == 20


def test_coverage():
    frame = points(a=[1, 2, None, 3], b=[None, None, 0, 4])
    cov = analytics.coverage(frame).set_index("id")
    assert cov.loc["a", "points"] == 3 and cov.loc["b", "points"] == 1  # b's zero price is no point
    assert cov.loc["a", "first"] == START + pd.Timedelta(hours=12)
    assert cov.loc["b", "first"] == START + 3 * DAY + pd.Timedelta(hours=12)
