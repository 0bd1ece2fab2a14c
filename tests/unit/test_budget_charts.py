"""The API budget panel's pure parts: per endpoint, per day, the projection's start, the daily chart."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

from dashboard import budget_charts

ROWS = pd.DataFrame(
    {
        "endpoint": ["/coins/markets", "/global", "/coins/markets", "/coins/categories"],
        "day": [date(2026, 2, 3), date(2026, 2, 3), date(2026, 2, 5), date(2026, 2, 5)],
        "calls": [96, 96, 100, 24],
        "failures": [0, 2, 4, 0],
        "last_at": pd.to_datetime(["2026-02-03 23:45", "2026-02-03 23:45", "2026-02-05 10:00", "2026-02-05 09:00"]),
    }
)


def test_by_endpoint_sums_the_days_most_calls_first():
    table = budget_charts.by_endpoint(ROWS)
    assert table["endpoint"].tolist() == ["/coins/markets", "/global", "/coins/categories"]
    assert table["calls"].tolist() == [196, 96, 24] and table["failures"].tolist() == [4, 2, 0]
    assert round(table["share_pct"].sum(), 6) == 100 and round(table["share_pct"].iloc[1], 2) == round(
        96 / 316 * 100, 2
    )
    assert table["last_at"].iloc[0] == pd.Timestamp("2026-02-05 10:00")
    assert budget_charts.by_endpoint(ROWS.iloc[0:0]).empty


def test_by_day_covers_every_day_of_the_month():
    daily = budget_charts.by_day(ROWS, date(2026, 2, 1))
    assert len(daily) == 28 and daily["day"].iloc[0] == pd.Timestamp("2026-02-01")
    assert daily["calls"].tolist()[:6] == [0, 0, 192, 0, 124, 0]
    assert daily["failures"].tolist()[:6] == [0, 0, 2, 0, 4, 0]
    assert budget_charts.by_day(ROWS.iloc[0:0], date(2026, 3, 1))["calls"].sum() == 0


def test_counting_since_is_the_start_of_the_first_day_with_calls():
    assert budget_charts.counting_since(ROWS) == datetime(2026, 2, 3)
    assert budget_charts.counting_since(ROWS.iloc[0:0]) is None


def test_the_daily_chart_stacks_answered_and_failed_calls_under_the_even_share():
    fig = budget_charts.create_daily_calls_chart(ROWS, date(2026, 2, 1), 10_000)
    answered, failed = fig.data
    assert list(answered.y)[2:5] == [190, 0, 120] and list(failed.y)[2:5] == [2, 0, 4]
    assert fig.layout.barmode == "stack"
    assert fig.layout.title.text == budget_charts.TITLE
    assert fig.layout.xaxis.title.text == "Day (UTC)" and fig.layout.yaxis.title.text == "Calls"
    (line,) = fig.layout.shapes
    assert round(line.y0, 3) == round(10_000 / 28, 3)
    assert "357 a day" in fig.layout.annotations[0].text
    assert all(trace.hovertemplate for trace in fig.data)


def test_the_daily_chart_without_calls_says_so():
    fig = budget_charts.create_daily_calls_chart(ROWS.iloc[0:0], date(2026, 2, 1), 10_000)
    assert not fig.data and "No API calls recorded this month" in str(fig.layout.annotations)


def test_cadence_labels():
    assert [budget_charts.cadence_label(m) for m in (15, 60, 1440, 120, 2880, 0.5)] == [
        "every 15 min",
        "hourly",
        "daily",
        "every 2 h",
        "every 2 days",
        "every 0.5 min",
    ]
