"""The pages' pure DataFrame helpers (filters and derived tables), on tiny inline frames."""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import pytest

from dashboard import frames


@pytest.mark.parametrize("raw, valid, invalid", [
    (None, [], []),
    ([], [], []),
    (["large_cap,mid_cap"], ["large_cap", "mid_cap"], []),
    ("mid_cap,large_cap", ["large_cap", "mid_cap"], []),          # canonical order
    (["mid_cap", "large_cap"], ["large_cap", "mid_cap"], []),     # repeated parameters work too
    ([" Large_Cap , ,large_cap"], ["large_cap"], []),             # case, blanks and duplicates
    (["large_cap,bogus,<script>"], ["large_cap"], ["bogus", "<script>"]),
    (["unknown"], ["unknown"], []),
])
def test_parse_categories(raw, valid, invalid):
    assert frames.parse_categories(raw) == (valid, invalid)


@pytest.fixture
def coins() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["btc", "eth", "doge", "dust"], "name": ["Bitcoin", "Ethereum", "Dogecoin", "Dust"],
        "symbol": ["btc", "eth", "doge", "dust"],
        "market_cap_category": ["large_cap", "large_cap", "mid_cap", "micro_cap"],
        "market_cap": [400e9, 150e9, 8e9, 1e6], "total_volume": [30e9, 10e9, 4e8, 50.0],
        "price_change_percentage_24h": [1.0, -2.0, 0.0, 90.0],
        "volume_to_mcap_ratio": [0.075, 0.0667, 0.05, 0.00005],
        "market_dominance_pct": [40.0, 15.0, 0.8, 0.0001],
    })


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
    counts = frames.category_counts(coins, "market_cap_category",
                                    ["large_cap", "mid_cap", "small_cap", "micro_cap", "unknown"])
    assert list(counts["category"]) == ["large_cap", "mid_cap", "small_cap", "micro_cap", "unknown"]
    assert list(counts["coins"]) == [2, 1, 0, 1, 0]
    assert counts["share_pct"].sum() == pytest.approx(100.0)


def test_dominance_shares_top_others_and_rest(coins):
    shares = frames.dominance_shares(coins, top_n=2)
    assert list(shares["kind"]) == ["coin", "coin", "others", "rest"]
    assert list(shares["label"][:3]) == ["Bitcoin", "Ethereum", "Other 2 coins"]
    assert shares["share_pct"].sum() == pytest.approx(100.0)


def test_dominance_shares_of_a_complete_universe_has_no_rest():
    frame = pd.DataFrame({"name": ["A", "B"], "symbol": ["a", "b"], "market_cap": [3.0, 1.0],
                          "market_dominance_pct": [75.0, 25.0]})
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
    runs = pd.DataFrame({"started_at": pd.to_datetime(["2026-01-01 10:00:00", "2026-01-01 10:05:00"]),
                         "finished_at": pd.to_datetime(["2026-01-01 10:00:02.5", None])})
    table = frames.runs_table(runs)
    assert table["duration_s"].iloc[0] == pytest.approx(2.5)
    assert pd.isna(table["duration_s"].iloc[1])  # still running


def test_quarantine_reasons_count_each_kind_without_the_values():
    quarantine = pd.DataFrame({"reason": ["negative market_cap: -5.0; missing id", "negative market_cap: -1.0",
                                          "non-numeric current_price: 'abc'"]})
    reasons = frames.quarantine_reasons(quarantine)
    assert reasons.to_dict("records") == [
        {"reason": "negative market_cap", "records": 2},
        {"reason": "missing id", "records": 1},
        {"reason": "non-numeric current_price", "records": 1},
    ]
    assert frames.quarantine_reasons(quarantine.iloc[0:0]).empty
