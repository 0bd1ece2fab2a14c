"""Where the benchmark's generated histories start: never running past now (a refresh click's
snapshot of now would be held as older than the history's newest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from benchmarks.bench import history_start
from benchmarks.benchgen import DEFAULT_START

HOUR = timedelta(hours=1)


def test_a_history_that_fits_before_now_starts_after_the_recorded_bodies():
    assert history_start(4000, HOUR) == DEFAULT_START  # 1M records: 4,000 hourly snapshots


def test_a_longer_history_ends_a_day_before_now():
    start = history_start(40_000, HOUR)  # 10M records: 4.5 years of hourly snapshots
    newest = start + HOUR * (40_000 - 1)
    now = datetime.now(UTC).replace(tzinfo=None)
    assert start < DEFAULT_START
    assert now - timedelta(days=2) < newest < now - timedelta(hours=23)
