"""ranges.pick_grain: which table a history window is read from (raw snapshots, hourly or daily rollup),
so no chart reads more than ~MAX_POINTS rows whatever the history kept; and the rollups' buckets."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Column, DateTime, MetaData, Table, bindparam, create_engine, text

from dashboard.ranges import MAX_POINTS, pick_grain
from pipeline.rollups import bucket_sql, truncate

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@pytest.mark.parametrize(
    ("span", "raw_points", "covers", "grain"),
    [
        (DAY, 96, True, "raw"),  # 24h of 15-minute snapshots
        (30 * DAY, MAX_POINTS, True, "raw"),  # exactly the limit: still raw
        (30 * DAY, MAX_POINTS + 1, True, "hourly"),  # one more: 720 hourly rows instead
        (HOUR * MAX_POINTS, MAX_POINTS + 1, True, "hourly"),  # 2,000 hours: the widest hourly window
        (HOUR * MAX_POINTS + timedelta(seconds=1), MAX_POINTS + 1, True, "daily"),
        (365 * DAY, 35_040, True, "daily"),  # a year of 15-minute snapshots: 365 daily rows
        (None, MAX_POINTS + 1, True, "daily"),  # no span known ("all" of an unknown history)
        (7 * DAY, 10, False, "hourly"),  # raw pruned before the window's start: a rollup, however few
        (400 * DAY, 10, False, "daily"),
        (timedelta(0), 1, True, "raw"),
    ],
)
def test_pick_grain_edges(span, raw_points, covers, grain):
    assert pick_grain(span, raw_points, raw_covers=covers) == grain


def test_a_smaller_limit_moves_every_edge():
    assert pick_grain(11 * HOUR, 11, max_points=10) == "daily"
    assert pick_grain(10 * HOUR, 11, max_points=10) == "hourly"
    assert pick_grain(9 * HOUR, 10, max_points=10) == "raw"


def test_buckets_start_at_the_hour_and_the_utc_day():
    moment = datetime(2024, 2, 29, 23, 59, 59, 999_999)
    assert truncate(moment, "hourly") == datetime(2024, 2, 29, 23)
    assert truncate(moment, "daily") == datetime(2024, 2, 29)
    assert truncate(datetime(2024, 3, 1), "daily") == datetime(2024, 3, 1)


def test_bucket_sql_per_dialect_keeps_the_stored_form():
    assert bucket_sql("postgresql", "hourly", "s.t") == "date_trunc('hour', s.t)"
    assert bucket_sql("postgresql", "daily", "t") == "date_trunc('day', t)"


@pytest.mark.parametrize(
    "moment",
    [datetime(2024, 2, 29, 23, 59, 59, 999_999), datetime(2024, 3, 1), datetime(2026, 5, 1, 7, 30, 0, 1)],
)
def test_sqlite_buckets_equal_the_bound_start_of_their_bucket(moment):
    """SQLite stores SQLAlchemy's 'YYYY-MM-DD HH:MM:SS.ffffff': a bucket computed in SQL must be the
    very text a bound ``truncate(moment, grain)`` is stored as, or a rollup's delete and reads miss it."""
    engine = create_engine("sqlite://")
    stored = Table("t", MetaData(), Column("at", DateTime))
    with engine.begin() as conn:
        stored.create(conn)
        conn.execute(stored.insert(), {"at": moment})
        for grain in ("hourly", "daily"):
            found = conn.execute(
                text(f"SELECT count(*) FROM t WHERE {bucket_sql('sqlite', grain, 'at')} = :start").bindparams(
                    bindparam("start", type_=DateTime())
                ),
                {"start": truncate(moment, grain)},
            ).scalar()
            assert found == 1, grain
