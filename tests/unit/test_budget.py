"""The API budget's pure parts: endpoint names, the meter, the plan's arithmetic (the README's numbers),
the month's reserve and the month-end projection."""

from __future__ import annotations

import threading
from datetime import date, datetime

import pytest

from pipeline import budget, classes
from pipeline.config import Settings

DEFAULTS = Settings.from_env({})


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/coins/markets", {"vs_currency": "usd", "page": 2}, "/coins/markets"),
        ("/coins/markets", {"vs_currency": "usd", "category": "stablecoins"}, "/coins/markets?category"),
        ("/coins/markets", {"category": ""}, "/coins/markets"),
        ("/global", {}, "/global"),
        ("/coins/bitcoin/market_chart", {"days": 365}, "/coins/{id}/market_chart"),
        ("/coins/wrapped-steth/market_chart/range", None, "/coins/{id}/market_chart/range"),
        ("/coins/bitcoin", None, "/coins/{id}"),
        ("/coins/categories", None, "/coins/categories"),
        ("/coins/categories/list", None, "/coins/categories/list"),
        ("/coins/list", None, "/coins/list"),
        ("coins/markets/", None, "/coins/markets"),
        ("/global?x=1", None, "/global"),
    ],
)
def test_endpoint_key_names_the_endpoint_without_ids(path, params, expected):
    assert budget.endpoint_key(path, params) == expected


def test_the_meter_tallies_per_endpoint_and_utc_day():
    meter = budget.Meter()
    meter.note("/global", True, datetime(2026, 3, 1, 23, 59))
    meter.note("/global", False, datetime(2026, 3, 2, 0, 1))
    meter.note("/global", True, datetime(2026, 3, 2, 0, 0))
    meter.note("/coins/markets", False, datetime(2026, 3, 2, 0, 0))
    assert meter.calls_since(date(2026, 3, 2)) == 3
    tallies = meter.drain()
    assert tallies[("/global", date(2026, 3, 1))] == budget.Tally(1, 0, datetime(2026, 3, 1, 23, 59))
    assert tallies[("/global", date(2026, 3, 2))] == budget.Tally(2, 1, datetime(2026, 3, 2, 0, 1))
    assert tallies[("/coins/markets", date(2026, 3, 2))] == budget.Tally(1, 1, datetime(2026, 3, 2, 0, 0))
    assert meter.drain() == {} and meter.calls_since(date(2026, 1, 1)) == 0


def test_the_meter_counts_every_call_from_many_threads():
    meter = budget.Meter()
    at = datetime(2026, 3, 2, 12)

    def hammer() -> None:
        for _ in range(1000):
            meter.note("/coins/markets", True, at)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter.drain()[("/coins/markets", at.date())].calls == 4000


def test_note_call_counts_only_inside_a_meter_and_never_raises():
    budget.note_call("/global", {}, ok=True)  # no meter: nothing happens
    meter = budget.Meter()
    token = budget._meter.set(meter)
    try:
        budget.note_call("/coins/bitcoin/market_chart", {"days": 1}, ok=False, at=datetime(2026, 3, 2))
        budget.note_call(None, {}, ok=True)  # type: ignore[arg-type]  # a bug in a caller is only a warning
        assert budget.pending_calls(date(2026, 3, 1)) == 1
    finally:
        budget._meter.reset(token)
    assert meter.drain() == {("/coins/{id}/market_chart", date(2026, 3, 2)): budget.Tally(1, 1, datetime(2026, 3, 2))}
    assert budget.pending_calls(date(2026, 3, 1)) == 0


def test_the_default_plan_is_the_readmes_arithmetic_and_fits_the_free_allowance():
    plan = budget.plan(DEFAULTS)
    assert DEFAULTS.interval_minutes == 15 and DEFAULTS.top_n == 250 and DEFAULTS.monthly_calls == 10_000
    per_day = {g.group: g.per_day for g in plan.groups}
    assert per_day == {"markets": 96, "global": 96, "categories": 24, "category_members": 6, "classes": 4}
    assert plan.per_day == 226 and plan.per_month == 6_780 and plan.fits
    assert plan.per_day * 31 < DEFAULTS.monthly_calls * budget.WARN_SHARE  # a 31-day month stays under 80 % too
    assert plan.line() == (
        "API budget plan: 226 calls a day, 6,780 a 30-day month (markets 2,880, global 2,880, categories 720, "
        "category_members 180, classes 120), within COINGECKO_MONTHLY_CALLS=10,000"
    )


def test_the_plan_follows_the_settings():
    busy = DEFAULTS.with_overrides(interval_minutes=5, top_n=1000, classes_refresh_hours=0)
    plan = budget.plan(busy)
    per_day = {g.group: g.per_day for g in plan.groups}
    assert per_day["markets"] == 288 * 4 and per_day["global"] == 288 and per_day["classes"] == 0
    assert not plan.fits and "OVER COINGECKO_MONTHLY_CALLS=10,000" in plan.line()
    # a cadence shorter than the interval fetches once per run at most
    slow = DEFAULTS.with_overrides(interval_minutes=120)
    assert {g.group: g.per_day for g in budget.plan(slow).groups}["categories"] == 12


def test_a_member_fetch_costs_the_list_and_one_call_per_tracked_sector():
    assert len(DEFAULTS.tracked_sectors) == 5
    assert budget.calls_per_fetch(budget.CATEGORY_MEMBERS, DEFAULTS) == 1 + 5  # the README's "1 + 5"
    two = DEFAULTS.with_overrides(tracked_sectors=("meme-token", "stablecoins"))
    assert budget.calls_per_fetch(budget.CATEGORY_MEMBERS, two) == 3
    assert {g.group: g.per_day for g in budget.plan(two).groups}["category_members"] == 3
    none = DEFAULTS.with_overrides(tracked_sectors=())
    assert budget.calls_per_fetch(budget.CATEGORY_MEMBERS, none) == 1


def test_the_sector_cadences_are_the_settings():
    tuned = DEFAULTS.with_overrides(sectors_every_minutes=30, sector_members_every_minutes=720)
    assert budget.cadence_minutes(budget.CATEGORIES, tuned) == 30
    assert budget.cadence_minutes(budget.CATEGORY_MEMBERS, tuned) == 720
    assert budget.RETRY_AFTER_MINUTES == 60  # a failed attempt: again after min(cadence, an hour)


def test_calls_per_fetch_of_classes_is_the_categories_classes_asks_for():
    assert budget.calls_per_fetch(budget.CLASSES, DEFAULTS) == len(classes.CATEGORY_CLASSES)
    assert set(budget.CADENCES) == set(budget.CALLS_PER_FETCH) and budget.MANDATORY <= set(budget.CADENCES)


def test_the_reserve_is_what_the_months_remaining_runs_need():
    assert budget.month_end(datetime(2026, 2, 10)) == datetime(2026, 3, 1)
    assert budget.month_end(datetime(2026, 12, 31, 23)) == datetime(2027, 1, 1)
    assert budget.mandatory_calls_left(DEFAULTS, datetime(2026, 3, 31, 23, 50)) == 2  # one run left
    assert budget.mandatory_calls_left(DEFAULTS, datetime(2026, 3, 31, 0, 0)) == 96 * 2
    assert budget.mandatory_calls_left(DEFAULTS, datetime(2026, 3, 1)) == 31 * 96 * 2


def test_the_projection_continues_the_rate_since_counting_began():
    now = datetime(2026, 4, 11)  # 10 of 30 days gone
    assert budget.project_month_end(2000, now, datetime(2026, 4, 1)) == 6000
    # counting began on day 6: 1000 calls in 5 days, 20 days to go
    assert budget.project_month_end(1000, now, datetime(2026, 4, 6)) == 5000
    # counting from last month counts from this month's start
    assert budget.project_month_end(2000, now, datetime(2026, 3, 20)) == 6000
    # a few minutes in: the rate is taken over an hour at least
    assert budget.project_month_end(2, datetime(2026, 4, 1, 0, 5), datetime(2026, 4, 1)) == 2 + 1440  # not 17,000


def test_usage_shares_and_warnings():
    usage = budget.usage(8000, 10_000, datetime(2026, 4, 16), datetime(2026, 4, 1))
    assert usage.share == 0.8 and usage.warn and usage.projected == 16_000 and usage.over_projected
    calm = budget.usage(100, 10_000, datetime(2026, 4, 16), datetime(2026, 4, 1))
    assert not calm.warn and not calm.over_projected
    assert budget.usage(0, 10_000, datetime(2026, 4, 16), None) == budget.Usage(0, 10_000, 0)
