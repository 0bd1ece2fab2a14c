"""The Pipeline page's API budget panel through AppTest: the month's calls against COINGECKO_MONTHLY_CALLS
(progress bar and numbers), per endpoint, per day, the month-end projection and its warnings."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

import pipeline.api
from pipeline import budget
from pipeline.db import make_engine, prepare_database
from tests.dashboard.helpers import EXPECTED_CHARTS, chart_specs, metric, plotly_values

#: The page's clock: the 10th of March, noon (UTC), so the projection does not depend on the day the test runs.
NOW = datetime(2026, 3, 10, 12, 0)


@pytest.fixture
def march(monkeypatch):
    monkeypatch.setattr(pipeline.api, "utcnow", lambda: NOW)


def record(warehouse, calls: dict[tuple[str, datetime], tuple[int, int]]) -> None:
    """(endpoint, time) -> (calls, failures) into api_calls, as a run's flush writes them."""
    meter = budget.Meter()
    for (endpoint, at), (count, failures) in calls.items():
        for number in range(count):
            meter.note(endpoint, number >= failures, at)
    budget.flush(prepare_database(warehouse.settings()), meter)


def progress_text(at) -> str:
    (bar,) = at.get("progress")
    return bar.proto.text


def test_a_heavy_month_shows_use_projection_and_both_warnings(fresh_warehouse, use_warehouse, open_app, march):
    day_one = datetime(2026, 3, 1, 6)
    calls = {("/coins/markets", day_one + timedelta(days=d)): (500, 10 if d == 2 else 0) for d in range(10)}
    calls |= {("/global", day_one + timedelta(days=d)): (350, 0) for d in range(10)}
    calls[("/coins/markets", datetime(2026, 2, 28, 23))] = (999, 0)  # last month: not counted
    record(fresh_warehouse, calls)
    use_warehouse(fresh_warehouse)
    at = open_app(page="pipeline")
    assert not at.exception, [e.value for e in at.exception]
    assert progress_text(at) == "8,500 of 10,000 calls used in March 2026 (85%)"
    assert metric(at, "Calls this month").value == "8,500"
    assert metric(at, "Left this month").value == "1,500"
    assert metric(at, "Failed calls").value == "10"
    # 8,500 over 9.5 days since the first day with calls, 21.5 days to go
    projected = 8500 + -(-8500 * 21.5 // 9.5)
    assert metric(at, "Projected by month end").value == f"{int(projected):,}"
    warnings = [w.value for w in at.warning]
    assert any("85% of the month's allowance is used (8,500 of 10,000 calls)" in w for w in warnings)
    assert any(f"about {int(projected):,} calls, over the allowance of 10,000" in w for w in warnings)
    specs = chart_specs(at)
    assert len(specs) == EXPECTED_CHARTS["pipeline"] + 1
    (daily,) = [s for s in specs if s["layout"]["title"]["text"] == "CoinGecko API calls per day this month"]
    answered, failed = daily["data"]
    assert plotly_values(answered["y"])[:11] == [850, 850, 840, 850, 850, 850, 850, 850, 850, 850, 0]
    assert plotly_values(failed["y"])[:3] == [0, 0, 10] and len(plotly_values(failed["y"])) == 31
    table = next(df.value for df in at.dataframe if "endpoint" in df.value.columns)
    assert table["endpoint"].tolist() == ["/coins/markets", "/global"]
    assert table["calls"].tolist() == [5000, 3500] and table["failures"].tolist() == [10, 0]
    assert any("COINGECKO_MONTHLY_CALLS" in c.value and "226 calls a day" in c.value for c in at.caption)


def test_a_quiet_month_has_no_warning_and_the_allowance_follows_the_setting(
    fresh_warehouse, use_warehouse, open_app, march, monkeypatch
):
    record(fresh_warehouse, {("/coins/markets", datetime(2026, 3, 10, 9)): (100, 0)})
    use_warehouse(fresh_warehouse)
    monkeypatch.setenv("COINGECKO_MONTHLY_CALLS", "20000")
    at = open_app(page="pipeline")
    assert not at.exception
    assert progress_text(at) == "100 of 20,000 calls used in March 2026 (0%)"
    # 100 calls in the 12 hours since the first day with calls began: 200 a day for 21.5 more days
    assert metric(at, "Projected by month end").value == "4,400"
    assert not [w.value for w in at.warning if "allowance" in w.value]
    assert any("Allowance: 20,000 calls a month" in c.value for c in at.caption)


def test_a_used_up_allowance_is_an_error(fresh_warehouse, use_warehouse, open_app, march):
    record(fresh_warehouse, {("/coins/markets", datetime(2026, 3, 9, 9)): (10_001, 0)})
    use_warehouse(fresh_warehouse)
    at = open_app(page="pipeline")
    assert progress_text(at) == "10,001 of 10,000 calls used in March 2026 (100%)"
    assert any("allowance is used up: 10,001 of 10,000 calls" in e.value for e in at.error)


def test_no_calls_and_a_database_from_before_the_budget_say_so(fresh_warehouse, use_warehouse, open_app, march):
    use_warehouse(fresh_warehouse)
    at = open_app(page="pipeline")
    assert not at.exception and not at.get("progress")
    assert any("No CoinGecko API call recorded in March 2026" in i.value for i in at.info)
    assert len(chart_specs(at)) == EXPECTED_CHARTS["pipeline"]
    with make_engine(fresh_warehouse.database_url).begin() as conn:
        conn.execute(text("DROP TABLE api_calls"))
    at = open_app(page="pipeline")
    assert not at.exception and not at.error
    assert any("No CoinGecko API call recorded in March 2026" in i.value for i in at.info)
