"""The pages' pure DataFrame helpers (filters and derived tables), on tiny inline frames."""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import pytest

from dashboard import frames


@pytest.mark.parametrize(
    "raw, valid, invalid",
    [
        (None, [], []),
        ([], [], []),
        (["large_cap,mid_cap"], ["large_cap", "mid_cap"], []),
        ("mid_cap,large_cap", ["large_cap", "mid_cap"], []),  # canonical order
        (["mid_cap", "large_cap"], ["large_cap", "mid_cap"], []),  # repeated parameters work too
        ([" Large_Cap , ,large_cap"], ["large_cap"], []),  # case, blanks and duplicates
        (["large_cap,bogus,<script>"], ["large_cap"], ["bogus", "<script>"]),
        (["unknown"], ["unknown"], []),
    ],
)
def test_parse_categories(raw, valid, invalid):
    assert frames.parse_categories(raw) == (valid, invalid)


def test_parse_categories_of_a_huge_link_is_fast_and_complete():
    import time

    raw = ",".join(f"bogus{i}" for i in range(100_000)) + ",mid_cap,bogus5," + "q" * 100_000
    started = time.perf_counter()
    valid, invalid = frames.parse_categories([raw])
    assert time.perf_counter() - started < 2.0
    assert valid == ["mid_cap"]
    assert len(invalid) == 100_001 and invalid[0] == "bogus0" and invalid[-1] == "q" * 100_000


@pytest.fixture
def coins() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["btc", "eth", "doge", "dust"],
            "name": ["Bitcoin", "Ethereum", "Dogecoin", "Dust"],
            "symbol": ["btc", "eth", "doge", "dust"],
            "market_cap_category": ["large_cap", "large_cap", "mid_cap", "micro_cap"],
            "market_cap": [400e9, 150e9, 8e9, 1e6],
            "total_volume": [30e9, 10e9, 4e8, 50.0],
            "price_change_percentage_24h": [1.0, -2.0, 0.0, 90.0],
            "volume_to_mcap_ratio": [0.075, 0.0667, 0.05, 0.00005],
            "market_dominance_pct": [40.0, 15.0, 0.8, 0.0001],
        }
    )


def test_filter_by_category(coins):
    assert list(frames.filter_by_category(coins, ["large_cap"])["id"]) == ["btc", "eth"]
    assert len(frames.filter_by_category(coins, [])) == 4  # empty selection = everything
    assert frames.filter_by_category(coins, ["small_cap"]).empty


def test_filter_min_volume_drops_dust(coins):
    assert list(frames.filter_min_volume(coins, 1e6)["id"]) == ["btc", "eth", "doge"]
    assert len(frames.filter_min_volume(coins, 0)) == 4


def test_top_movers_splits_gainers_and_losers_and_skips_flat(coins):
    gainers, losers = frames.top_movers(coins, "price_change_percentage_24h", 5)
    assert list(gainers["id"]) == ["dust", "btc"]
    assert list(losers["id"]) == ["eth"]


def test_liquidity_extremes(coins):
    most, least = frames.liquidity_extremes(coins, 2)
    assert list(most["id"]) == ["btc", "eth"]
    assert list(least["id"]) == ["dust", "doge"]


def test_category_counts_lists_every_category_in_order(coins):
    counts = frames.category_counts(
        coins, "market_cap_category", ["large_cap", "mid_cap", "small_cap", "micro_cap", "unknown"]
    )
    assert list(counts["category"]) == ["large_cap", "mid_cap", "small_cap", "micro_cap", "unknown"]
    assert list(counts["coins"]) == [2, 1, 0, 1, 0]
    assert counts["share_pct"].sum() == pytest.approx(100.0)


def test_dominance_shares_top_others_and_rest(coins):
    shares = frames.dominance_shares(coins, top_n=2)
    assert list(shares["kind"]) == ["coin", "coin", "others", "rest"]
    assert list(shares["label"][:3]) == ["Bitcoin", "Ethereum", "Other 2 coins"]
    assert shares["share_pct"].sum() == pytest.approx(100.0)


def test_dominance_shares_of_a_complete_universe_has_no_rest():
    frame = pd.DataFrame(
        {"name": ["A", "B"], "symbol": ["a", "b"], "market_cap": [3.0, 1.0], "market_dominance_pct": [75.0, 25.0]}
    )
    assert list(frames.dominance_shares(frame, 5)["kind"]) == ["coin", "coin"]


def test_implied_change_pct(coins):
    # one coin up 10% from 100 -> 110, one flat at 100: 200 -> 210 = +5%
    frame = pd.DataFrame({"market_cap": [110.0, 100.0], "price_change_percentage_24h": [10.0, 0.0]})
    assert frames.implied_change_pct(frame) == pytest.approx(5.0)
    assert frames.implied_change_pct(frame.iloc[0:0]) is None


def test_parse_sparkline():
    assert frames.parse_sparkline("[1, 2.5, null]")[:2] == [1.0, 2.5]
    assert math.isnan(frames.parse_sparkline("[1, null]")[1])
    assert frames.parse_sparkline(None) == []
    assert frames.parse_sparkline(math.nan) == []
    assert frames.parse_sparkline("not json") == []


def test_sparkline_frame_is_hourly_and_ends_at_the_snapshot():
    end = datetime(2022, 10, 16, 9, 0)
    points = frames.sparkline_frame("[" + ",".join(str(i) for i in range(169)) + "]", end)
    assert points["ts"].iloc[-1] == pd.Timestamp(end)
    assert points["ts"].iloc[0] == pd.Timestamp("2022-10-09 09:00")
    assert (points["ts"].diff().dropna() == pd.Timedelta(hours=1)).all()
    assert frames.sparkline_frame(None, end).empty


def test_runs_table_adds_the_duration():
    runs = pd.DataFrame(
        {
            "started_at": pd.to_datetime(["2026-01-01 10:00:00", "2026-01-01 10:05:00"]),
            "finished_at": pd.to_datetime(["2026-01-01 10:00:02.5", None]),
        }
    )
    table = frames.runs_table(runs)
    assert table["duration_s"].iloc[0] == pytest.approx(2.5)
    assert pd.isna(table["duration_s"].iloc[1])  # still running


def test_quarantine_reasons_count_each_kind_without_the_values():
    quarantine = pd.DataFrame(
        {
            "reason": [
                "negative market_cap: -5.0; missing id",
                "negative market_cap: -1.0",
                "non-numeric current_price: 'abc'",
            ]
        }
    )
    reasons = frames.quarantine_reasons(quarantine)
    assert reasons.to_dict("records") == [
        {"reason": "negative market_cap", "records": 2},
        {"reason": "missing id", "records": 1},
        {"reason": "non-numeric current_price", "records": 1},
    ]
    assert frames.quarantine_reasons(quarantine.iloc[0:0]).empty


# -- every category shows, with zero when no coin falls in it -------------------------------------


@pytest.fixture
def segments_without_mid_cap() -> pd.DataFrame:
    snapshot = datetime(2022, 10, 16, 9, 28)
    return pd.DataFrame(
        [
            {
                "market_cap_category": "micro_cap",
                "coin_count": 110,
                "total_market_cap": 17e9,
                "market_cap_share_pct": 2.2,
                "market_dominance_pct": 1.7,
                "total_volume": 2.2e9,
                "avg_price_change_24h": 2.2,
                "median_price_change_24h": 0.9,
                "avg_volatility_24h": 6.5,
                "avg_volume_to_mcap_ratio": 0.157,
                "gainers_count": 80,
                "losers_count": 29,
                "snapshot_at": snapshot,
            },
            {
                "market_cap_category": "large_cap",
                "coin_count": 9,
                "total_market_cap": 749e9,
                "market_cap_share_pct": 97.8,
                "market_dominance_pct": 78.3,
                "total_volume": 45e9,
                "avg_price_change_24h": 0.43,
                "median_price_change_24h": 0.43,
                "avg_volatility_24h": 1.1,
                "avg_volume_to_mcap_ratio": 0.08,
                "gainers_count": 8,
                "losers_count": 1,
                "snapshot_at": snapshot,
            },
        ]
    )


def test_complete_segments_lists_every_category_with_zero_counts(segments_without_mid_cap):
    from pipeline.categories import MARKET_CAP_CATEGORIES

    full = frames.complete_segments(segments_without_mid_cap)
    assert list(full["market_cap_category"]) == MARKET_CAP_CATEGORIES  # the categories' own list, in order
    mid = full.set_index("market_cap_category").loc["mid_cap"]
    for column in ("coin_count", "gainers_count", "losers_count"):
        assert mid[column] == 0 and full[column].dtype.kind == "i", column
    for column in ("total_market_cap", "market_cap_share_pct", "market_dominance_pct", "total_volume"):
        assert mid[column] == 0.0, column
    for column in ("avg_price_change_24h", "median_price_change_24h", "avg_volatility_24h", "avg_volume_to_mcap_ratio"):
        assert pd.isna(mid[column]), column  # an average of no coins is unknown, not 0
    assert mid["snapshot_at"] == segments_without_mid_cap["snapshot_at"].max()
    large = full.set_index("market_cap_category").loc["large_cap"]
    assert large["coin_count"] == 9 and large["total_market_cap"] == 749e9  # real rows untouched


def test_complete_segments_respects_the_selection(segments_without_mid_cap):
    picked = frames.complete_segments(segments_without_mid_cap, ["mid_cap", "large_cap"])
    assert list(picked["market_cap_category"]) == ["large_cap", "mid_cap"]
    assert list(picked["coin_count"]) == [9, 0]
    nothing = frames.complete_segments(segments_without_mid_cap.iloc[0:0], ["small_cap"])
    assert list(nothing["market_cap_category"]) == ["small_cap"] and list(nothing["coin_count"]) == [0]


def test_complete_segments_keeps_a_category_the_dashboard_does_not_know(segments_without_mid_cap):
    odd = pd.concat(
        [segments_without_mid_cap, segments_without_mid_cap.iloc[[0]].assign(market_cap_category="brand_new_bucket")],
        ignore_index=True,
    )
    full = frames.complete_segments(odd)
    assert list(full["market_cap_category"])[-1] == "brand_new_bucket"
    assert len(full) == 6


@pytest.mark.parametrize(
    "column, categories",
    [
        ("liquidity_category", "LIQUIDITY_CATEGORIES"),
        ("price_trend_category", "PRICE_TREND_CATEGORIES"),
        ("market_cap_category", "MARKET_CAP_CATEGORIES"),
    ],
)
def test_category_counts_show_an_empty_bucket_as_zero(coins, column, categories):
    import pipeline.categories as cats

    order = getattr(cats, categories)
    frame = coins.assign(liquidity_category="high_liquidity", price_trend_category="neutral")
    counts = frames.category_counts(frame, column, order)
    assert list(counts["category"]) == order
    assert counts["coins"].sum() == len(frame) and (counts["coins"] == 0).sum() >= 1
