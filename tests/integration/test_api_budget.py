"""The API budget on SQLite and PostgreSQL: real runs against the fake CoinGecko count every request
(retries and failures too) per endpoint and day, months sum their days, cadences and the allowance
decide what is due, and counting never fails a run."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from pipeline import budget
from pipeline.backfill import run_backfill
from pipeline.db import make_engine, utcnow
from pipeline.errors import PipelineError
from pipeline.flow import prepare_database, run_pipeline
from pipeline.schema import api_calls, api_fetches


@pytest.fixture
def settings(settings):
    """Sectors off (their own tests count their calls): only markets and /global, unless a test turns more on."""
    return settings.with_overrides(sectors_every_minutes=0)


def counts(settings) -> dict[str, tuple[int, int]]:
    """endpoint -> (calls, failures), summed over the days."""
    t = api_calls
    with make_engine(settings.database_url).connect() as conn:
        rows = conn.execute(select(t.c.endpoint, t.c.calls, t.c.failures))
        total: dict[str, tuple[int, int]] = {}
        for endpoint, calls, failures in rows:
            before = total.get(endpoint, (0, 0))
            total[endpoint] = (before[0] + calls, before[1] + failures)
    return total


def test_a_run_counts_one_call_per_request_per_endpoint(settings, fake_coingecko):
    result = run_pipeline(settings, source="api")
    assert result.status == "success"
    assert counts(settings) == {"/coins/markets": (1, 0), "/global": (1, 0)}
    t = api_calls
    with make_engine(settings.database_url).connect() as conn:
        (row,) = conn.execute(select(t).where(t.c.endpoint == "/global")).mappings()
    assert row["day"] == utcnow().date() or row["day"] == (utcnow() - timedelta(minutes=1)).date()
    assert abs(row["last_at"] - utcnow()) < timedelta(minutes=1)
    # A second run adds to the same day's row.
    run_pipeline(settings, source="api")
    assert counts(settings) == {"/coins/markets": (2, 0), "/global": (2, 0)}


def test_retries_and_failures_are_counted_like_the_fake_saw_them(settings, fake_coingecko):
    fake_coingecko.add_fault("500")  # markets: one 500, then the page
    fake_coingecko.add_fault("500", endpoint="global", times=50)  # /global never answers: every attempt fails
    result = run_pipeline(settings, source="api")
    assert result.status == "success" and not result.global_basis
    attempts = settings.max_retries + 1
    assert counts(settings) == {"/coins/markets": (2, 1), "/global": (attempts, attempts)}
    assert sum(c for c, _ in counts(settings).values()) == len(fake_coingecko.requests)


def test_a_failed_run_still_counts_its_calls(settings, fake_coingecko):
    fake_coingecko.add_fault("503", times=50)
    with pytest.raises(PipelineError):
        run_pipeline(settings, source="api")
    attempts = settings.max_retries + 1
    assert counts(settings) == {"/coins/markets": (attempts, attempts)}
    with make_engine(settings.database_url).connect() as conn:
        assert conn.execute(text("SELECT status FROM pipeline_runs")).scalar() == "failed"


def test_coin_classes_and_backfills_count_against_their_endpoints(settings, fake_coingecko):
    settings = settings.with_overrides(classes_refresh_hours=24)
    run_pipeline(settings, source="api")
    assert counts(settings)["/coins/markets?category"] == (4, 0)
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(select(api_fetches.c.group_name)).scalars().all() == [budget.CLASSES]
    run_backfill(settings, days=30, coin_ids=["bitcoin"])
    assert counts(settings)["/coins/{id}/market_chart"] == (1, 0)
    # The next run within the day: classes not due, nothing more on their endpoint.
    run_pipeline(settings, source="api")
    assert counts(settings)["/coins/markets?category"] == (4, 0)


def test_counting_never_fails_a_run(settings, fake_coingecko, caplog):
    engine = prepare_database(settings)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE api_calls"))
    with caplog.at_level(logging.WARNING, logger="pipeline.budget"):
        result = run_pipeline(settings, source="api", engine=engine)
    assert result.status == "success"
    assert any("could not record 2 API call(s) in api_calls (the run goes on)" in r.message for r in caplog.records)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM pipeline_runs")).scalar() == "success"


def test_a_month_is_the_sum_of_its_days_and_stops_at_the_month(settings):
    engine = prepare_database(settings)
    meter = budget.Meter()
    for at, ok in [
        (datetime(2026, 2, 28, 23, 59), True),  # last month
        (datetime(2026, 3, 1, 0, 0), True),
        (datetime(2026, 3, 1, 12, 0), False),
        (datetime(2026, 3, 2, 8, 0), True),
        (datetime(2026, 3, 31, 23, 59, 59), True),
    ]:
        meter.note("/coins/markets", ok, at)
    meter.note("/global", True, datetime(2026, 3, 2, 8, 0, 1))
    budget.flush(engine, meter)
    again = budget.Meter()
    again.note("/coins/markets", True, datetime(2026, 3, 2, 7, 0))  # an earlier call: last_at stays
    budget.flush(engine, again)
    with engine.connect() as conn:
        assert budget.month_calls(conn, datetime(2026, 3, 15)) == 6
        assert budget.month_calls(conn, datetime(2026, 2, 28)) == 1
        t = api_calls
        row = conn.execute(
            select(t.c.calls, t.c.failures, t.c.last_at).where(
                t.c.endpoint == "/coins/markets", t.c.day == datetime(2026, 3, 2).date()
            )
        ).one()
    assert tuple(row) == (2, 0, datetime(2026, 3, 2, 8, 0))
    assert budget.month_used(engine, datetime(2026, 3, 31, 12)) == 6


def test_due_follows_the_cadence_with_half_an_interval_of_slack(settings):
    engine = prepare_database(settings)
    settings = settings.with_overrides(sectors_every_minutes=60)
    now = datetime(2026, 3, 10, 12, 0)
    # hourly categories at a 15-minute interval
    assert budget.due(engine, budget.CATEGORIES, now, settings)  # never fetched
    budget.record_fetch(engine, budget.CATEGORIES, now)
    assert not budget.due(engine, budget.CATEGORIES, now, settings)
    assert not budget.due(engine, budget.CATEGORIES, now + timedelta(minutes=52, seconds=29), settings)
    assert budget.due(engine, budget.CATEGORIES, now + timedelta(minutes=52, seconds=30), settings)
    # the run an hour later is due although the fetch finished seconds into the previous one
    budget.record_fetch(engine, budget.CATEGORIES, now + timedelta(seconds=3))
    assert budget.due(engine, budget.CATEGORIES, now + timedelta(hours=1), settings)
    # daily members, one record per group
    budget.record_fetch(engine, budget.CATEGORY_MEMBERS, now)
    assert not budget.due(engine, budget.CATEGORY_MEMBERS, now + timedelta(hours=23), settings)
    assert budget.due(engine, budget.CATEGORY_MEMBERS, now + timedelta(hours=24), settings)
    assert budget.last_fetch(engine, budget.CATEGORIES) == now + timedelta(seconds=3)
    # a cadence of 0 turns a group off
    settings = settings.with_overrides(sectors_every_minutes=0)
    assert budget.why_not_due(engine, budget.CATEGORIES, now + timedelta(days=9), settings) == "turned off (cadence 0)"


def test_a_failed_attempt_holds_a_group_back_for_its_cadence_or_an_hour(settings):
    engine = prepare_database(settings)
    settings = settings.with_overrides(sectors_every_minutes=60)
    now = datetime(2026, 3, 10, 12, 0)
    budget.record_failure(engine, budget.CATEGORIES, now)
    assert budget.last_fetch(engine, budget.CATEGORIES) is None
    assert budget.last_failure(engine, budget.CATEGORIES) == now
    reason = budget.why_not_due(engine, budget.CATEGORIES, now + timedelta(minutes=45), settings)
    assert reason == "last attempt failed 2026-03-10 12:00 UTC, tried again after 60 min"
    assert budget.due(engine, budget.CATEGORIES, now + timedelta(hours=1), settings)
    # daily members: retried after an hour, not a day
    budget.record_fetch(engine, budget.CATEGORY_MEMBERS, now - timedelta(days=1))
    budget.record_failure(engine, budget.CATEGORY_MEMBERS, now)
    assert not budget.due(engine, budget.CATEGORY_MEMBERS, now + timedelta(minutes=45), settings)
    assert budget.due(engine, budget.CATEGORY_MEMBERS, now + timedelta(hours=1), settings)
    # a failure older than the last success no longer counts; the success's cadence does
    budget.record_fetch(engine, budget.CATEGORY_MEMBERS, now + timedelta(hours=1))
    assert not budget.due(engine, budget.CATEGORY_MEMBERS, now + timedelta(hours=2), settings)
    # a cadence shorter than the hour: the failure waits that cadence only
    quick = settings.with_overrides(sectors_every_minutes=20, interval_minutes=5, monthly_calls=100_000)
    assert not budget.due(engine, budget.CATEGORIES, now + timedelta(minutes=15), quick)
    assert budget.due(engine, budget.CATEGORIES, now + timedelta(minutes=20), quick)
    # the snapshot's groups are fetched on every run whatever failed before
    budget.record_failure(engine, budget.MARKETS, now)
    assert budget.due(engine, budget.MARKETS, now + timedelta(minutes=1), settings)
    with engine.connect() as conn:
        keys = set(conn.execute(select(api_fetches.c.group_name)).scalars())
    assert keys == {"categories:failed", "category_members", "category_members:failed", "markets:failed"}


def test_optional_groups_give_way_when_the_month_needs_the_rest_for_snapshots(settings):
    engine = prepare_database(settings)
    settings = settings.with_overrides(sectors_every_minutes=60)
    now = datetime(2026, 3, 31, 12, 0)  # 12 hours left: 48 runs x 2 calls = 96 calls reserved
    assert budget.mandatory_calls_left(settings, now) == 96
    meter = budget.Meter()
    for _ in range(900):
        meter.note("/coins/markets", True, now - timedelta(hours=1))
    budget.flush(engine, meter)
    tight = settings.with_overrides(monthly_calls=900 + 96 + 1)
    assert budget.due(engine, budget.CATEGORIES, now, tight)  # 1 call still fits
    assert not budget.due(engine, budget.CATEGORY_MEMBERS, now, tight)  # 6 calls do not
    reason = budget.why_not_due(engine, budget.CATEGORIES, now, tight.with_overrides(monthly_calls=996))
    assert reason is not None and "skipped to save the API budget: 900 calls used" in reason
    assert budget.due(engine, budget.MARKETS, now, tight.with_overrides(monthly_calls=1))  # the snapshot always


def test_the_warning_past_80_percent_reaches_the_run_notes(settings, fake_coingecko, caplog):
    engine = prepare_database(settings)
    meter = budget.Meter()
    for _ in range(8):
        meter.note("/coins/markets", True, utcnow())
    budget.flush(engine, meter)
    settings = settings.with_overrides(monthly_calls=12)
    with caplog.at_level(logging.WARNING, logger="pipeline.budget"):
        result = run_pipeline(settings, source="api", engine=engine)
    assert result.status == "success"
    # 8 recorded + this run's markets page and /global, not flushed yet
    assert "API budget: 10 of 12 calls used this month (83% of COINGECKO_MONTHLY_CALLS)" in result.warnings
    with engine.connect() as conn:
        assert "API budget: 10 of 12" in conn.execute(text("SELECT notes FROM pipeline_runs")).scalar()
    # the flush at the end took the month from 8 past 80 % (9.6): one warning says so
    crossed = [r.message for r in caplog.records if "monthly allowance (COINGECKO_MONTHLY_CALLS=12)" in r.message]
    assert crossed == [
        "API budget: 10 calls used this month, past 80% of the monthly allowance (COINGECKO_MONTHLY_CALLS=12)"
    ]
