"""The pages' DataFrame rules on tiny frames: empty inputs, NULLs, the -100 % change, the edges.

``dashboard/frames.py`` is pure (DataFrame in, DataFrame out); these tests pin each rule where
its result changes, so a changed comparison or a dropped branch fails a test.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pandas as pd
import pytest

from dashboard import frames

SNAP = datetime(2024, 1, 2, 3, 0)
CAP_CATEGORIES = ["large_cap", "mid_cap", "small_cap", "micro_cap", "unknown"]


def coins(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "id": [f"c{i}" for i in range(n)],
        "name": [f"Coin {i}" for i in range(n)],
        "symbol": [f"c{i}" for i in range(n)],
    }
    return pd.DataFrame({**base, **columns})


EMPTY = coins(market_cap=[], price_change_percentage_24h=[], total_volume=[], market_cap_category=[])


# ---- filters: an empty selection or an empty frame passes through -------------------------------


@pytest.mark.parametrize(
    "raw, valid, invalid",
    [
        ("", [], []),
        (",,", [], []),
        (["MICRO_CAP", "large_cap"], ["large_cap", "micro_cap"], []),
        (["zzz,aaa", "zzz"], [], ["zzz", "aaa"]),  # invalid values in the order they came
        (("unknown", "mid_cap"), ["mid_cap", "unknown"], []),
    ],
)
def test_parse_categories(raw, valid, invalid):
    assert frames.parse_categories(raw) == (valid, invalid)


def test_filter_by_category():
    frame = coins(market_cap_category=["large_cap", "mid_cap", "unknown"], other=["mid_cap", "large_cap", "x"])
    assert frames.filter_by_category(frame, []) is frame
    assert frames.filter_by_category(EMPTY, ["large_cap"]) is EMPTY
    assert frames.filter_by_category(frame, ["mid_cap", "unknown"])["id"].tolist() == ["c1", "c2"]
    assert frames.filter_by_category(frame, ("mid_cap",), column="other")["id"].tolist() == ["c0"]


@pytest.mark.parametrize(
    "min_volume, kept",
    [(0, ["c0", "c1", "c2", "c3"]), (None, ["c0", "c1", "c2", "c3"]), (1.0, ["c1", "c2", "c3"]), (10.0, ["c2", "c3"])],
)
def test_filter_min_volume_is_inclusive_and_null_volume_is_none(min_volume, kept):
    frame = coins(total_volume=[None, 1.0, 10.0, 11.0])
    assert frames.filter_min_volume(frame, min_volume)["id"].tolist() == kept


def test_without_stale():
    frame = coins(stale_record=pd.array([True, False, None], dtype="boolean"))
    assert frames.without_stale(frame)["id"].tolist() == ["c1", "c2"]  # NULL counts as current
    plain = coins(x=[1])
    assert frames.without_stale(plain) is plain
    empty = frame.iloc[0:0]
    assert frames.without_stale(empty) is empty
    as_objects = coins(stale_record=[1, 0, None])
    assert frames.without_stale(as_objects)["id"].tolist() == ["c1", "c2"]


# ---- movers and extremes ---------------------------------------------------------------------


def test_top_movers_leave_out_flat_unknown_and_stale_coins():
    frame = coins(
        change=[5.0, -3.0, 0.0, None, 9.0, -8.0, 2.0, -1.0],
        stale_record=[False, False, False, False, True, True, False, False],
    )
    gainers, losers = frames.top_movers(frame, "change", n=1)
    assert gainers["id"].tolist() == ["c0"] and losers["id"].tolist() == ["c1"]
    gainers, losers = frames.top_movers(frame, "change")
    assert gainers["change"].tolist() == [5.0, 2.0] and losers["change"].tolist() == [-3.0, -1.0]
    small_up, small_down = frames.top_movers(coins(change=[0.5, -0.5]), "change")
    assert small_up["change"].tolist() == [0.5] and small_down["change"].tolist() == [-0.5]
    none_up, none_down = frames.top_movers(frame.iloc[0:0], "change")
    assert none_up.empty and none_down.empty


def test_liquidity_extremes_skip_unknown_ratios():
    frame = coins(volume_to_mcap_ratio=[0.5, None, 0.01, 0.2])
    most, least = frames.liquidity_extremes(frame, n=2)
    assert most["volume_to_mcap_ratio"].tolist() == [0.5, 0.2]
    assert least["volume_to_mcap_ratio"].tolist() == [0.01, 0.2]
    most, least = frames.liquidity_extremes(frame)
    assert len(most) == len(least) == 3


# ---- category counts and segments: every category, also when there are no coins ---------------------


def test_category_counts_of_no_coins_list_every_category_at_zero():
    result = frames.category_counts(EMPTY, "market_cap_category", CAP_CATEGORIES)
    assert result["category"].tolist() == CAP_CATEGORIES
    assert result["coins"].tolist() == [0] * 5 and result["share_pct"].tolist() == [0.0] * 5


def test_category_counts_shares_and_extra_categories():
    frame = coins(market_cap_category=["mid_cap", "mid_cap", "large_cap", "brand_new"])
    result = frames.category_counts(frame, "market_cap_category", CAP_CATEGORIES)
    assert result["category"].tolist() == CAP_CATEGORIES + ["brand_new"]
    assert result["coins"].tolist() == [1, 2, 0, 0, 0, 1]
    assert result["share_pct"].tolist() == [25.0, 50.0, 0.0, 0.0, 0.0, 25.0]


def segments(*categories, **extra) -> pd.DataFrame:
    n = len(categories)
    return pd.DataFrame(
        {
            "snapshot_at": [SNAP - timedelta(hours=i) for i in range(n)],
            "market_cap_category": list(categories),
            "coin_count": pd.Series(range(1, n + 1), dtype="int64"),
            "total_market_cap": [1e9 * (i + 1) for i in range(n)],
            "avg_price_change_24h": [1.5] * n,
            **extra,
        }
    )


def test_complete_segments_of_an_empty_table_is_every_category_at_zero():
    result = frames.complete_segments(segments())
    assert result["market_cap_category"].tolist() == CAP_CATEGORIES
    assert result["coin_count"].tolist() == [0] * 5 and result["coin_count"].dtype == "int64"
    assert result["total_market_cap"].tolist() == [0] * 5
    assert result["avg_price_change_24h"].isna().all()  # the mean of no coins is unknown
    assert result["snapshot_at"].isna().all()


def test_complete_segments_fills_the_missing_with_the_newest_snapshot():
    result = frames.complete_segments(segments("mid_cap", "large_cap"))
    assert result["market_cap_category"].tolist() == CAP_CATEGORIES
    assert result["coin_count"].tolist() == [2, 1, 0, 0, 0] and result["coin_count"].dtype == "int64"
    assert result["avg_price_change_24h"].tolist()[:2] == [1.5, 1.5]
    assert result["avg_price_change_24h"].iloc[2:].isna().all()
    assert (result["snapshot_at"].iloc[2:] == SNAP).all()


def test_complete_segments_without_gaps_only_reorders():
    full = segments("unknown", "micro_cap", "small_cap", "mid_cap", "large_cap")
    result = frames.complete_segments(full)
    assert result["market_cap_category"].tolist() == CAP_CATEGORIES
    assert result["coin_count"].tolist() == [5, 4, 3, 2, 1]
    assert len(frames.complete_segments(full, ["small_cap"])) == 1


def test_complete_segments_with_a_selection_and_an_unknown_category():
    table = segments("large_cap", "exotic")
    assert frames.complete_segments(table)["market_cap_category"].tolist() == CAP_CATEGORIES + ["exotic"]
    picked = frames.complete_segments(table, ["mid_cap", "large_cap"])
    assert picked["market_cap_category"].tolist() == ["large_cap", "mid_cap"]
    assert picked["coin_count"].tolist() == [1, 0]


def test_complete_segments_counts_become_whole_numbers_when_the_table_has_floats():
    table = segments("large_cap").assign(gainers_count=[3.0])
    result = frames.complete_segments(table)
    assert result["gainers_count"].dtype == "int64" and result["gainers_count"].tolist() == [3, 0, 0, 0, 0]


# ---- dominance and the implied change -----------------------------------------------------------


def test_dominance_shares_of_no_coins_is_the_whole_rest():
    result = frames.dominance_shares(coins(market_dominance_pct=[], market_cap=[]))
    assert result[["label", "symbol", "share_pct", "kind"]].to_dict("records") == [
        {"label": "Rest of the market", "symbol": "", "share_pct": 100.0, "kind": "rest"}
    ]
    assert math.isnan(result["market_cap"][0])


@pytest.mark.parametrize("listed, rest", [([60.0, 39.95], None), ([60.0, 39.94], 0.06)])
def test_dominance_shares_rest_appears_below_99_95_percent(listed, rest):
    result = frames.dominance_shares(coins(market_dominance_pct=listed, market_cap=[6.0, 4.0]))
    rests = result[result["kind"] == "rest"]
    if rest is None:
        assert rests.empty
    else:
        assert rests["share_pct"].tolist() == [pytest.approx(rest)]


def test_dominance_shares_groups_beyond_the_top_and_skips_unknown():
    frame = coins(market_dominance_pct=[10.0, None, 30.0, 20.0, 5.0], market_cap=[1.0, 9.0, 3.0, 2.0, 0.5])
    result = frames.dominance_shares(frame, top_n=2)
    assert result["kind"].tolist() == ["coin", "coin", "others", "rest"]
    assert result["label"].tolist() == ["Coin 2", "Coin 3", "Other 2 coins", "Rest of the market"]
    assert result["symbol"].tolist() == ["c2", "c3", "", ""]
    assert result["share_pct"].tolist() == [30.0, 20.0, 15.0, 35.0]
    assert result["market_cap"].tolist()[:3] == [3.0, 2.0, 1.5]


@pytest.mark.parametrize(
    "caps, changes, expected",
    [
        ([110.0], [10.0], 10.0),
        ([110.0, 90.0], [10.0, -10.0], 0.0),
        ([50.0, 100.0], [-100.0, 0.0], 0.0),  # a -100 % coin was worth nothing: it is left out
        ([50.0, 100.0], [-150.0, 0.0], 0.0),  # below -100 % is no measurement either
        ([50.0], [-100.0], None),  # nothing left: no figure
        ([50.0, 100.0], [-99.0, 0.0], (150 / (5000 + 100) - 1) * 100),
        ([None, 100.0], [10.0, 0.0], 0.0),
        ([100.0, 50.0], [None, 0.0], 0.0),
        ([0.0], [10.0], None),  # nothing a period ago
    ],
)
def test_implied_change_pct(caps, changes, expected):
    frame = coins(market_cap=caps, price_change_percentage_24h=changes)
    result = frames.implied_change_pct(frame)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_implied_change_of_no_coins_or_only_stale_ones_is_none():
    assert frames.implied_change_pct(EMPTY) is None
    stale = coins(market_cap=[110.0], price_change_percentage_24h=[10.0], stale_record=[True])
    assert frames.implied_change_pct(stale) is None
    other = coins(market_cap=[110.0], price_change_percentage_7d=[10.0])
    assert frames.implied_change_pct(other, "price_change_percentage_7d") == pytest.approx(10.0)


# ---- the basis of whole-market figures -----------------------------------------------------------


@pytest.mark.parametrize(
    "basis, top_n", [("top_n", True), ("tracked_universe", True), ("global", False), (None, False), (1, False)]
)
def test_is_top_n(basis, top_n):
    assert frames.is_top_n(basis) is top_n
    assert frames.frame_basis_value(basis) == ("top_n" if top_n else "global")


def test_frame_basis():
    assert frames.frame_basis(None) == "global"
    assert frames.frame_basis(pd.DataFrame({"dominance_basis": []})) == "global"
    assert frames.frame_basis(pd.DataFrame({"x": [1]})) == "global"
    assert frames.frame_basis(pd.DataFrame({"dominance_basis": ["global", "global"]})) == "global"
    assert frames.frame_basis(pd.DataFrame({"dominance_basis": ["global", "tracked_universe"]})) == "top_n"


@pytest.mark.parametrize(
    "basis, count, expected",
    [
        ("global", 250, "whole market"),
        ("top_n", 250, "top 250 coins"),
        ("top_n", 1500.0, "top 1,500 coins"),
        ("top_n", None, "top 0 coins"),
        ("top_n", math.nan, "top 0 coins"),
    ],
)
def test_basis_scope(basis, count, expected):
    assert frames.basis_scope(basis, count) == expected


def test_basis_reason():
    assert frames.basis_reason(pd.DataFrame({"dominance_basis": ["global"], "basis_note": ["x"]})) is None
    no_note = pd.DataFrame({"dominance_basis": ["top_n"]})
    assert frames.basis_reason(no_note) == frames.GLOBAL_FAILED == "the /global call failed"
    blank = pd.DataFrame({"dominance_basis": ["top_n", "top_n"], "basis_note": [None, "  "]})
    assert frames.basis_reason(blank) == frames.GLOBAL_FAILED
    noted = pd.DataFrame({"dominance_basis": ["top_n"] * 3, "basis_note": ["old", "newest", None]})
    assert frames.basis_reason(noted) == "newest"


def test_label_dominance_column():
    frame = pd.DataFrame({"name": ["A"], "market_dominance_pct": [1.0]})
    columns = {"name": "Name", "market_dominance_pct": "Dominance", "x": "X"}
    same = frames.label_dominance_column(frame, columns, "global", 250)
    assert same[0] is frame and same[1] is columns
    renamed, config = frames.label_dominance_column(frame, columns, "top_n", 1250, label_of=lambda s: f"<{s}>")
    assert list(renamed.columns) == ["name", "share_of_top_1250_coins_pct"]
    assert config == {"name": "Name", "share_of_top_1250_coins_pct": "<Share of top 1,250 coins>", "x": "X"}
    _, plain = frames.label_dominance_column(frame, columns, "top_n", None)
    assert plain == {"name": "Name", "share_of_top_0_coins_pct": "Dominance", "x": "X"}
    untouched = frames.label_dominance_column(frame, {"name": "Name"}, "top_n", 250)
    assert untouched[0] is frame


def test_basis_totals():
    mart = pd.DataFrame(
        {
            "basis_total_market_cap": [None, 2e12, 3e12],
            "basis_total_volume": [None, None, None],
        }
    )
    assert frames.basis_totals(mart) == {"market_cap": 2e12, "volume": None, "change_24h": None}
    assert frames.basis_totals(pd.DataFrame()) == {"market_cap": None, "volume": None, "change_24h": None}


# ---- charts: gaps, sparklines -------------------------------------------------------------------


def series(*hours, value=1) -> pd.DataFrame:
    return pd.DataFrame({"snapshot_at": [SNAP + timedelta(hours=h) for h in hours], "v": [value] * len(hours)})


def test_break_gaps_leaves_short_or_regular_series_alone():
    assert frames.break_gaps(None) is None
    two = series(0, 100)
    assert frames.break_gaps(two) is two
    regular = series(2, 0, 1)
    result = frames.break_gaps(regular)
    assert result["snapshot_at"].tolist() == [pd.Timestamp(SNAP + timedelta(hours=h)) for h in (0, 1, 2)]
    same_time = series(0, 0, 0, 5)
    assert len(frames.break_gaps(same_time)) == 4  # median spacing 0: nothing to compare with


@pytest.mark.parametrize("gap, breaks", [(3, False), (3.5, True)])
def test_break_gaps_inserts_an_empty_point_beyond_three_median_steps(gap, breaks):
    result = frames.break_gaps(series(0, 1, 2, 2 + gap))
    if not breaks:
        assert len(result) == 4 and result["v"].notna().all()
        return
    assert len(result) == 5
    assert result["snapshot_at"].iloc[3] == pd.Timestamp(SNAP + timedelta(hours=2 + gap / 2))
    assert math.isnan(result["v"].iloc[3]) and result["v"].dtype == "float64"
    assert result["v"].drop(index=3).tolist() == [1.0] * 4


def test_break_gaps_factor_and_column():
    frame = series(0, 1, 2, 4).rename(columns={"snapshot_at": "ts"})
    assert len(frames.break_gaps(frame, time_column="ts", factor=1.5)) == 5
    assert len(frames.break_gaps(frame, time_column="ts", factor=2.0)) == 4


@pytest.mark.parametrize(
    "raw, expected",
    [
        (None, []),
        (math.nan, []),
        ("not json", []),
        ("[1, null, 2.5]", [1.0, "nan", 2.5]),
        ('[1, "x", true, 3]', [1.0, 1.0, 3.0]),
        ((4, None), [4.0, "nan"]),
        (5, []),
    ],
    ids=repr,
)
def test_parse_sparkline(raw, expected):
    values = frames.parse_sparkline(raw)
    assert [("nan" if math.isnan(v) else v) for v in values] == expected


def test_sparkline_frame():
    empty = frames.sparkline_frame(None, SNAP)
    assert empty.empty and list(empty.columns) == ["ts", "price"]
    assert str(empty["ts"].dtype) == "datetime64[ns]" and str(empty["price"].dtype) == "float64"
    hourly = frames.sparkline_frame(list(range(169)), SNAP)
    assert hourly["ts"].iloc[-1] == pd.Timestamp(SNAP)
    assert hourly["ts"].iloc[0] == pd.Timestamp(SNAP - timedelta(days=7))
    assert hourly["ts"].iloc[1] - hourly["ts"].iloc[0] == pd.Timedelta(hours=1)
    one = frames.sparkline_frame("[2.0]", None)
    assert one["ts"].tolist() == [pd.Timestamp("1970-01-08")] and one["price"].tolist() == [2.0]
    two = frames.sparkline_frame([1, 2], pd.NaT)
    assert two["ts"].tolist() == [pd.Timestamp("1970-01-01"), pd.Timestamp("1970-01-08")]


# ---- run log and quarantine --------------------------------------------------------------------


def test_runs_table_of_no_runs_has_the_duration_column():
    empty = frames.runs_table(pd.DataFrame({"run_id": [], "status": []}))
    assert empty.empty and "duration_s" in empty.columns and empty["duration_s"].dtype == "float64"


def test_runs_table_marks_dead_runs_abandoned():
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "status": ["running", "running", "success"],
            "started_at": [SNAP, SNAP, SNAP],
            "finished_at": [None, None, SNAP + timedelta(seconds=90)],
        }
    )
    table = frames.runs_table(runs, live_run_id="b")
    assert table["status"].tolist() == ["abandoned", "running", "success"]
    assert table["duration_s"].iloc[2] == 90.0 and table["duration_s"].iloc[:2].isna().all()
    assert runs["status"].tolist() == ["running", "running", "success"]  # the input is not changed
    no_ids = frames.runs_table(runs.drop(columns="run_id"))
    assert no_ids["status"].tolist() == ["running", "running", "success"]  # no id: liveness is not judged
    nobody = frames.runs_table(runs)
    assert nobody["status"].tolist() == ["abandoned", "abandoned", "success"]


def test_quarantine_reasons():
    empty = frames.quarantine_reasons(pd.DataFrame({"reason": []}))
    assert empty.empty and list(empty.columns) == ["reason", "records"] and empty["records"].dtype == "int64"
    table = pd.DataFrame({"reason": ["negative market_cap: -5.0; missing id", "missing id", "odd: a: b", ""]})
    result = frames.quarantine_reasons(table)
    assert result.to_dict("records") == [
        {"reason": "missing id", "records": 2},
        {"reason": "negative market_cap", "records": 1},
        {"reason": "odd", "records": 1},
    ]


# ---- deltas: empty history and edges -------------------------------------------------------------


def history(*hours_before, counts=None, bases=None) -> pd.DataFrame:
    n = len(hours_before)
    return pd.DataFrame(
        {
            "snapshot_at": [SNAP - timedelta(hours=h) for h in hours_before],
            "coin_count": counts or [250] * n,
            "dominance_basis": bases or ["global"] * n,
        }
    )


def test_comparable_snapshot_of_nothing_is_none():
    assert frames.comparable_snapshot(None, SNAP) is None
    assert frames.comparable_snapshot(history(), SNAP) is None
    assert frames.comparable_snapshot(history(24), None) is None
    assert frames.comparable_snapshot(history(24), pd.NaT) is None


def test_comparable_snapshot_is_earlier_than_now_and_like_for_like():
    found = frames.comparable_snapshot(history(24, 1), SNAP, hours=1, tolerance_hours=2)
    assert found["snapshot_at"] == SNAP - timedelta(hours=1)
    assert frames.comparable_snapshot(history(0), SNAP, hours=1, tolerance_hours=2) is None  # not itself
    assert frames.comparable_snapshot(history(24, bases=["top_n"]), SNAP, dominance_basis="global") is None
    assert frames.comparable_snapshot(history(24, bases=["top_n"]), SNAP, dominance_basis="top_n") is not None
    assert frames.comparable_snapshot(history(24, counts=[245]), SNAP, coin_count=250) is not None  # 2 %
    assert frames.comparable_snapshot(history(24, counts=[244]), SNAP, coin_count=250) is None
    assert frames.comparable_snapshot(history(24, counts=[100]), SNAP, coin_count=None) is not None
    assert frames.comparable_snapshot(history(24, counts=[100]), SNAP, coin_count=math.nan) is not None


# ---- why a movers list is empty ------------------------------------------------------------------


def test_why_no_movers_names_the_period_and_the_filter():
    frame = coins(change=[None], total_volume=[1.0])
    assert frames.why_no_movers(frame, frame, "change", "1h", "$1M") == (
        "This data has no 1h change: CoinGecko sent no 1h price change for any coin in this snapshot. "
        "Choose another period."
    )
    flat = coins(change=[0.0, None], total_volume=[1.0, 1.0])
    assert frames.why_no_movers(flat, flat, "change", "24h", "$1M") == (
        "No coin in the selection moved over 24h (every 24h change is 0 %)."
    )
    moved = coins(change=[1.0])
    assert frames.why_no_movers(moved, moved.iloc[0:0], "change", "7d", "$5M") == (
        'This data has no 24h volume, so no coin passes the minimum volume. Choose "No minimum".'
    )
    with_volume = coins(change=[1.0], total_volume=[5.0])
    assert frames.why_no_movers(with_volume, with_volume.iloc[0:0], "change", "7d", "$5M") == (
        "No coin with at least $5M of 24h volume has a 7d change in the selection. Lower the minimum volume."
    )
    assert frames.why_no_movers(with_volume, with_volume, "change", "7d", "$5M").startswith("No coin with")
