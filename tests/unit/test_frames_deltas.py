"""Like-for-like deltas: the snapshot a "24h" figure compares with, and why a movers list is empty."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from dashboard import frames

NOW = datetime(2024, 12, 19, 10, 0)


def history(*points) -> pd.DataFrame:
    """(hours before NOW, coin_count, dominance_basis) -> market_history-like rows, oldest first."""
    rows = [
        {
            "snapshot_at": NOW - timedelta(hours=h),
            "coin_count": n,
            "dominance_basis": basis,
            "total_volume": 1e11 + h,
            "btc_dominance_pct": 50.0 + h / 100,
        }
        for h, n, basis in points
    ]
    columns = ["snapshot_at", "coin_count", "dominance_basis", "total_volume", "btc_dominance_pct"]
    return pd.DataFrame(rows, columns=columns).sort_values("snapshot_at").reset_index(drop=True)


def hours_before(row) -> float:
    return (NOW - row["snapshot_at"]) / timedelta(hours=1)


def test_the_snapshot_nearest_to_24h_earlier_is_chosen():
    frame = history(
        (0, 250, "global"),
        (0.25, 250, "global"),
        (22.5, 250, "global"),
        (24.25, 250, "global"),
        (25.5, 250, "global"),
        (48, 250, "global"),
    )
    row = frames.comparable_snapshot(frame, NOW, coin_count=250, dominance_basis="global")
    assert hours_before(row) == 24.25


def test_no_snapshot_within_the_tolerance_means_no_delta():
    # "+167.5 % vs 214 days earlier" and "+0.0 % vs 68 s earlier" are not 24h changes.
    frame = history((0, 250, "global"), (68 / 3600, 250, "global"), (214 * 24, 250, "global"))
    assert frames.comparable_snapshot(frame, NOW, coin_count=250, dominance_basis="global") is None
    assert frames.comparable_snapshot(history((0, 250, "global"), (26.5, 250, "global")), NOW) is None
    assert frames.comparable_snapshot(history((0, 250, "global"), (21.9, 250, "global")), NOW) is None


def test_the_tolerance_bounds_are_inclusive_and_configurable():
    frame = history((0, 250, "global"), (26, 250, "global"))
    assert hours_before(frames.comparable_snapshot(frame, NOW)) == 26
    assert frames.comparable_snapshot(frame, NOW, tolerance_hours=1) is None
    assert (
        hours_before(
            frames.comparable_snapshot(history((0, 1, "global"), (12, 1, "global")), NOW, hours=12, tolerance_hours=0.5)
        )
        == 12
    )


def test_another_coin_universe_is_not_comparable():
    frame = history((0, 250, "global"), (24, 100, "global"))  # top 100 against top 250
    assert frames.comparable_snapshot(frame, NOW, coin_count=250, dominance_basis="global") is None
    frame = history((0, 250, "global"), (24, 248, "global"))  # two records quarantined: same top 250
    assert hours_before(frames.comparable_snapshot(frame, NOW, coin_count=250, dominance_basis="global")) == 24
    frame = history((0, 250, "global"), (24, 250, "tracked_universe"), (23, 250, "global"))
    assert hours_before(frames.comparable_snapshot(frame, NOW, coin_count=250, dominance_basis="global")) == 23
    frame = history((0, 250, "global"), (24, 250, "tracked_universe"))
    assert frames.comparable_snapshot(frame, NOW, coin_count=250, dominance_basis="global") is None


def test_empty_or_missing_inputs_give_none():
    assert frames.comparable_snapshot(history(), NOW) is None
    assert frames.comparable_snapshot(history((24, 250, "global")), None) is None
    assert frames.comparable_snapshot(history((24, 250, "global")), pd.NaT) is None


def test_a_tie_goes_to_the_earlier_snapshot_and_order_does_not_matter():
    frame = history((0, 250, "global"), (23, 250, "global"), (25, 250, "global"))
    assert hours_before(frames.comparable_snapshot(frame, NOW)) == 25
    assert hours_before(frames.comparable_snapshot(frame.iloc[::-1], NOW)) == 25


# ---- why a movers list is empty -------------------------------------------------------


def coins(changes, volumes):
    return pd.DataFrame({"price_change_percentage_7d": changes, "total_volume": volumes})


def test_no_change_in_the_data_says_so_not_lower_the_volume():
    frame = coins([None, None], [5e9, 6e9])
    reason = frames.why_no_movers(frame, frame, "price_change_percentage_7d", "7d", "$1M")
    assert "this data has no 7d change" in reason.lower() and "minimum volume" not in reason
    frame = coins([1.0], [5e9]).drop(columns="price_change_percentage_7d")
    assert "no 7d change" in frames.why_no_movers(frame, frame, "price_change_percentage_7d", "7d", "$1M")


def test_nothing_moved_says_so():
    frame = coins([0.0, 0.0], [5e9, 6e9])
    assert "moved" in frames.why_no_movers(frame, frame, "price_change_percentage_7d", "7d", "$1M")


def test_missing_volume_and_the_volume_filter():
    frame = coins([3.0, -2.0], [None, None])
    reason = frames.why_no_movers(frame, frame.iloc[0:0], "price_change_percentage_7d", "7d", "$1M")
    assert "no 24h volume" in reason
    frame = coins([3.0, -2.0], [10.0, 20.0])
    reason = frames.why_no_movers(frame, frame.iloc[0:0], "price_change_percentage_7d", "7d", "$1M")
    assert "Lower the minimum volume" in reason and "$1M" in reason
