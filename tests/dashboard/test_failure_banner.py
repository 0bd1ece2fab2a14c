"""After several failed fetches in a row every page says so, with the last error, before the data is stale."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import insert

from dashboard.health import failure_streak
from pipeline.db import make_engine, utcnow
from pipeline.schema import pipeline_runs
from tests.dashboard.helpers import PAGES


def add_runs(warehouse, statuses: list[str], error: str = "HTTP 503: CoinGecko is down") -> None:
    """Runs newer than the sample's, oldest first."""
    now = utcnow()
    rows = [
        {
            "run_id": f"r{n}",
            "trigger": "schedule",
            "source": "api",
            "status": status,
            "started_at": now - timedelta(minutes=len(statuses) - n),
            "finished_at": now,
            "error_message": error if status == "failed" else None,
        }
        for n, status in enumerate(statuses)
    ]
    with make_engine(warehouse.database_url).begin() as conn:
        conn.execute(insert(pipeline_runs), rows)


def banners(at) -> list[str]:
    return [e.value for e in at.error if "pipeline runs failed" in e.value]


@pytest.mark.parametrize("page", PAGES)
def test_three_failures_in_a_row_raise_a_banner_on_every_page(fresh_warehouse, use_warehouse, open_app, page):
    use_warehouse(fresh_warehouse)
    add_runs(fresh_warehouse, ["success", "failed", "failed", "failed"])
    at = open_app(page=page)
    assert not at.exception
    found = banners(at)
    assert len(found) == 1 and "last 3 pipeline runs failed" in found[0] and "CoinGecko is down" in found[0]


def test_no_banner_below_the_threshold_or_after_a_success(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    add_runs(fresh_warehouse, ["failed", "failed", "failed", "success", "failed", "failed"])
    assert banners(open_app()) == []


def test_the_threshold_is_a_setting(fresh_warehouse, use_warehouse, open_app, monkeypatch):
    use_warehouse(fresh_warehouse)
    monkeypatch.setenv("PIPELINE_FAILURE_BANNER_RUNS", "1")
    add_runs(fresh_warehouse, ["success", "failed"])
    assert len(banners(open_app())) == 1


def test_failure_streak_counts_fetching_runs_only_and_skips_running_ones():
    now = pd.Timestamp("2026-11-30 12:00")
    runs = pd.DataFrame(
        {
            "run_id": list("abcde"),
            "source": ["api", "replay", "api", "api", "api"],
            "status": ["running", "success", "abandoned", "failed", "success"],
            "started_at": [
                now,
                now - pd.Timedelta("1min"),
                now - pd.Timedelta("2min"),
                now - pd.Timedelta("3min"),
                now - pd.Timedelta("4min"),
            ],
            "error_message": [None, None, "killed", "HTTP 500", None],
        }
    )
    streak = failure_streak(runs)
    assert streak.count == 2 and streak.last_error == "killed"
    assert streak.since == (now - pd.Timedelta("3min")).to_pydatetime()
    assert failure_streak(runs.iloc[0:0]).count == 0
