"""Chart ranges: the one list of buttons, time windows counted back from the newest point, the note
when the data covers less than the range asks for, and resampling to a bounded number of points."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from dashboard import ranges

NEWEST = datetime(2024, 4, 10, 12, 0)


def series(times, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"ts": pd.to_datetime(list(times))})
    for name, values in columns.items():
        frame[name] = values
    return frame


def test_the_buttons_in_order_with_all_or_max_last():
    assert ranges.range_keys() == ["24h", "7d", "30d", "90d", "1y", "all"]
    assert ranges.range_keys("max") == ["24h", "7d", "30d", "90d", "1y", "max"]
    assert ranges.DEFAULT_RANGE in ranges.BY_KEY


@pytest.mark.parametrize(
    "value, expected",
    [("7d", "7d"), ("MAX", "all"), ("max", "all"), ("all", "all"), (" 1y ", "1y"), ("2w", "30d"), ("", "30d")],
)
def test_parse_range_accepts_known_values_and_falls_back(value, expected):
    assert ranges.parse_range(value) == expected


def test_parse_range_without_a_value_is_the_default():
    assert ranges.parse_range(None) == "30d"
    assert ranges.parse_range(None, "all") == "all"


@pytest.mark.parametrize(
    "key, back",
    [("24h", timedelta(hours=24)), ("7d", timedelta(days=7)), ("30d", timedelta(days=30)), ("1y", timedelta(days=365))],
)
def test_window_start_counts_back_from_the_newest_point(key, back):
    assert ranges.window_start(key, NEWEST) == NEWEST - back


def test_window_start_is_open_for_all_and_without_data():
    assert ranges.window_start("all", NEWEST) is None
    assert ranges.window_start("max", NEWEST) is None
    assert ranges.window_start("7d", None) is None
    assert ranges.window_start("7d", pd.NaT) is None


def test_a_day_is_24_hours_across_a_dst_change():
    # 2024-03-31: Europe moves its clocks; UTC does not, so 24h back is the same wall time.
    assert ranges.window_start("24h", datetime(2024, 3, 31, 12, 0)) == datetime(2024, 3, 30, 12, 0)


def test_window_of_a_frame_keeps_the_range_counted_from_its_newest_row():
    frame = series(pd.date_range("2024-01-01", NEWEST, freq="1D"), v=1.0)
    kept = ranges.window(frame, "ts", "7d")
    newest = frame["ts"].max()
    assert list(kept["ts"]) == list(pd.date_range(newest - timedelta(days=7), newest, freq="1D"))
    assert len(ranges.window(frame, "ts", "all")) == len(frame)
    assert ranges.window(frame.iloc[0:0], "ts", "7d").empty


def test_coverage_note_when_the_range_asks_for_more_than_exists():
    note = ranges.coverage_note("90d", datetime(2024, 3, 1), datetime(2024, 4, 11))
    assert note == "History starts 2024-03-01: showing 41 days."
    assert ranges.coverage_note("24h", datetime(2024, 4, 11, 2), datetime(2024, 4, 11, 12)) == (
        "History starts 2024-04-11: showing 10 hours."
    )


def test_coverage_note_is_silent_when_the_range_is_covered_or_all():
    assert ranges.coverage_note("30d", datetime(2024, 1, 1), datetime(2024, 4, 11)) is None
    assert ranges.coverage_note("all", datetime(2024, 3, 1), datetime(2024, 4, 11)) is None
    assert ranges.coverage_note("7d", None, None) is None


def test_coverage_note_of_one_point_says_so():
    note = ranges.coverage_note("7d", NEWEST, NEWEST)
    assert note.startswith("Only one point so far (2024-04-10 12:00 UTC)")


def test_resample_of_nothing_and_of_one_point():
    empty = series([], v=[])
    assert ranges.resample(empty, "ts").empty
    one = series([NEWEST], v=[1.0])
    assert ranges.resample(one, "ts").equals(one)


def test_resample_leaves_a_small_series_alone_but_sorted():
    frame = series([NEWEST, NEWEST - timedelta(hours=1)], v=[2.0, 1.0])
    out = ranges.resample(frame, "ts", max_points=10)
    assert list(out["v"]) == [1.0, 2.0]


def test_a_year_of_15_minute_snapshots_becomes_at_most_2000_points():
    times = pd.date_range("2023-04-10", "2024-04-10", freq="15min")
    frame = series(times, v=range(len(times)), basis=["global"] * len(times))
    out = ranges.resample(frame, "ts")
    assert 1000 < len(out) <= ranges.MAX_POINTS
    assert out["ts"].is_monotonic_increasing
    assert out["ts"].iloc[-1] == times[-1]  # the newest snapshot is always shown
    assert set(out.columns) == {"ts", "v", "basis"}  # whole rows, real snapshots
    assert set(out["ts"]) <= set(times)


def test_resample_keeps_gaps_as_gaps():
    first = pd.date_range("2024-01-01", periods=3000, freq="15min")
    second = pd.date_range("2024-03-01", periods=3000, freq="15min")
    out = ranges.resample(series(first.append(second), v=1.0), "ts", max_points=500)
    assert len(out) <= 500
    assert not ((out["ts"] > first[-1]) & (out["ts"] < second[0])).any()


def test_bucket_width_picks_the_smallest_step_that_fits():
    start = datetime(2024, 1, 1)
    assert ranges.bucket_width(start, start) is None
    assert ranges.bucket_width(start, start + timedelta(days=365)) == pd.Timedelta("6h")
    assert ranges.bucket_width(start, start + timedelta(days=1), max_points=100) == pd.Timedelta("15min")
    far = ranges.bucket_width(start, start + timedelta(days=365 * 200), max_points=100)
    assert far > pd.Timedelta("30D")
