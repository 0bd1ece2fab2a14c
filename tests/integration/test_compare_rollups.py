"""The Compare page's prices come from the hourly and daily rollups (a few hundred rows per coin whatever
the history's length), and the grid it draws from them equals the grid from every raw point, on SQLite
and PostgreSQL; a database without rollup rows still gets the raw points."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from sqlalchemy import text

from dashboard import analytics, data, ranges
from pipeline.gold import build_gold
from tests.integration.test_rollups import COINS, add_backfill, add_snapshot, engine  # noqa: F401 (fixture)

BACKFILLED = [datetime(2024, 2, 25), datetime(2024, 2, 26), datetime(2024, 2, 27)]  # before the snapshots


def raw_points(engine) -> pd.DataFrame:  # noqa: F811 (the fixture's name)
    """Every published snapshot price and backfilled price, straight from the tables."""
    with engine.connect() as conn:
        snaps = pd.read_sql(
            text(
                "SELECT s.id, s.snapshot_at AS ts, s.current_price AS price FROM staging_crypto_market AS s "
                "JOIN snapshots AS p ON p.snapshot_at = s.snapshot_at WHERE p.status = 'published'"
            ),
            conn,
        )
        fill = pd.read_sql(text("SELECT id, ts, price FROM staging_coin_history"), conn)
    points = pd.concat([snaps, fill], ignore_index=True)
    points["ts"] = pd.to_datetime(points["ts"], format="ISO8601")
    return points


@pytest.fixture
def history(engine):  # noqa: F811 (the fixture's name)
    """Three coins every 20 minutes for 30 hours, bitcoin backfilled for three earlier days."""
    for n in range(90):
        add_snapshot(engine, n)
    add_backfill(engine, "bitcoin", BACKFILLED)
    build_gold(engine)
    data.load_compare_points.clear()
    yield engine
    data.load_compare_points.clear()


@pytest.mark.parametrize("range_key", ["24h", "7d", "90d", "all"])
def test_the_compare_grid_from_rollups_equals_the_grid_from_every_raw_point(history, database_url, range_key):
    freq = "h" if ranges.compare_grain(range_key) == "hourly" else "D"
    result = data.load_compare_points(database_url, "v1", tuple(COINS), range_key)
    raw = raw_points(history)
    if result.since is not None:
        raw = raw[raw["ts"] >= pd.Timestamp(result.since)]
    expected = analytics.price_grid(raw, freq)
    got = analytics.price_grid(result.frame, freq)
    pd.testing.assert_frame_equal(got, expected, check_freq=False)
    # One row per coin and period at most: the rollup's, not the 90 snapshots a coin has.
    periods = result.frame["ts"].dt.floor(freq)
    assert not result.frame.assign(period=periods).duplicated(["id", "period"]).any()
    assert len(result.frame) < len(raw)


def test_compare_reads_the_rollups_not_the_raw_rows(history, database_url):
    before = data.load_compare_points(database_url, "v1", tuple(COINS), "all").frame
    with history.begin() as conn:
        conn.execute(text("DELETE FROM staging_crypto_market"))  # raw gone, rollups kept (as after prune)
    data.load_compare_points.clear()
    after = data.load_compare_points(database_url, "v2", tuple(COINS), "all").frame
    pd.testing.assert_frame_equal(after, before)
    assert set(after["id"]) == set(COINS) and (after["origin"] == "backfill").sum() == len(BACKFILLED)


def test_without_rollup_rows_the_raw_points_are_read(history, database_url):
    with history.begin() as conn:
        for table in ("coin_history_hourly", "coin_history_daily"):
            conn.execute(text(f"DELETE FROM {table}"))  # an upgraded database before its first run
    data.load_compare_points.clear()
    result = data.load_compare_points(database_url, "v3", tuple(COINS), "all")
    assert len(result.frame) == len(raw_points(history))  # every snapshot and backfilled point
    expected = analytics.price_grid(raw_points(history), "D")
    pd.testing.assert_frame_equal(analytics.price_grid(result.frame, "D"), expected, check_freq=False)
