"""Rollups (pipeline.rollups) on SQLite and PostgreSQL: hourly and daily coin and market history equal
a direct computation from the published snapshots, a run recomputes only its own buckets and ends
where a full rebuild does, a rebuild after raw rows were pruned keeps the older buckets, backfilled
days fill the daily grain where no snapshot was taken, and coins_seen lists every coin."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import event, insert, inspect, text
from sqlalchemy.exc import IntegrityError

from pipeline import rollups
from pipeline.db import ensure_month_partitions, make_engine
from pipeline.flow import prepare_database
from pipeline.gold import build_gold
from pipeline.schema import snapshots, staging_coin_history, staging_crypto_market
from tests.conftest import make_settings

START = datetime(2024, 3, 1, 22, 10)
STEP = timedelta(minutes=20)
COINS = ["bitcoin", "ethereum", "tether"]
ROLLUPS = {
    "coin_history_hourly": "id, bucket",
    "coin_history_daily": "id, bucket",
    "market_history_hourly": "bucket",
    "market_history_daily": "bucket",
    "coins_seen": "id",
}


@pytest.fixture
def engine(database_url, tmp_path):
    prepare_database(make_settings(database_url, tmp_path / "data"))
    return make_engine(database_url)


def price(coin: str, n: int) -> float:
    base = {"bitcoin": 60_000.0, "ethereum": 3_000.0, "tether": 1.0}[coin]
    return base * (1 + ((n * 7919) % 23 - 11) / 1000)


def add_snapshot(engine, n: int, *, status: str = "published", coins=COINS) -> datetime:
    """Snapshot number n (every 20 minutes from START), written to silver and the ledger."""
    at = START + STEP * n
    rows = [
        {
            "id": coin,
            "snapshot_at": at,
            "run_id": f"run-{n}",
            "source": "api",
            "symbol": coin[:3],
            "name": f"{coin.title()} v{n}",
            "market_cap_rank": rank + 1 + n % 2,
            "current_price": None if (coin == "tether" and n == 4) else price(coin, n),
            "market_cap": price(coin, n) * 1e6,
            "total_volume": 1e5 + n,
            "market_cap_category": "small_cap" if coin == "tether" else "large_cap",
            "liquidity_category": "high_liquidity",
            "price_trend_category": "neutral",
        }
        for rank, coin in enumerate(coins)
    ]
    with engine.begin() as conn:
        ensure_month_partitions(conn, "staging_crypto_market", [f"{at:%Y-%m}"])
        conn.execute(insert(staging_crypto_market), rows)
        conn.execute(
            insert(snapshots).values(
                snapshot_at=at, run_id=f"run-{n}", source="api", coin_count=len(rows), status=status, decided_at=at
            )
        )
    return at


def add_backfill(engine, coin: str, days: list[datetime]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(staging_coin_history),
            [
                {
                    "id": coin,
                    "ts": day,
                    "run_id": "backfill",
                    "price": 100.0 + i,
                    "market_cap": 1e9 + i,
                    "total_volume": 5e6 + i,
                }
                for i, day in enumerate(days)
            ],
        )


def read(engine, table: str, order: str) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = pd.read_sql(text(f"SELECT * FROM {table} ORDER BY {order}"), conn)
    for column in frame.columns:
        if column in {"bucket", "open_at", "close_at", "snapshot_at", "first_seen", "last_seen", "named_at"}:
            frame[column] = pd.to_datetime(frame[column], format="ISO8601")
    return frame


def all_rollups(engine) -> dict[str, pd.DataFrame]:
    return {table: read(engine, table, order) for table, order in ROLLUPS.items()}


def expected_coin(engine, freq: str) -> pd.DataFrame:
    """The rollup computed straight from the published snapshots with pandas."""
    with engine.connect() as conn:
        raw = pd.read_sql(
            text(
                "SELECT s.id, s.snapshot_at, s.current_price, s.market_cap, s.total_volume, s.market_cap_rank "
                "FROM staging_crypto_market AS s JOIN snapshots AS p ON p.snapshot_at = s.snapshot_at "
                "WHERE p.status = 'published'"
            ),
            conn,
        )
    raw["snapshot_at"] = pd.to_datetime(raw["snapshot_at"], format="ISO8601")
    raw = raw.sort_values(["id", "snapshot_at"])
    raw["bucket"] = raw["snapshot_at"].dt.floor(freq)
    grouped = raw.groupby(["id", "bucket"])
    out = pd.DataFrame(
        {
            "open": grouped["current_price"].first(),  # first() skips NaN: take the row's own value instead
            "high": grouped["current_price"].max(),
            "low": grouped["current_price"].min(),
            "points": grouped.size(),
            "open_at": grouped["snapshot_at"].min(),
            "close_at": grouped["snapshot_at"].max(),
        }
    ).reset_index()
    firsts = raw.drop_duplicates(["id", "bucket"], keep="first").set_index(["id", "bucket"])
    lasts = raw.drop_duplicates(["id", "bucket"], keep="last").set_index(["id", "bucket"])
    key = pd.MultiIndex.from_frame(out[["id", "bucket"]])
    out["open"] = firsts.loc[key, "current_price"].to_numpy()
    out["close"] = lasts.loc[key, "current_price"].to_numpy()
    for column in ("market_cap", "total_volume", "market_cap_rank"):
        out[column] = lasts.loc[key, column].to_numpy()
    return out


def assert_rollup_matches(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    columns = list(expected.columns)
    left = actual[columns].sort_values(["id", "bucket"]).reset_index(drop=True)
    right = expected[columns].sort_values(["id", "bucket"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False)


def build_history(engine, count: int = 12) -> list[datetime]:
    """22:10 on 1 March to 01:50 on 2 March: several hours and two days; snapshot 5 held."""
    times = [add_snapshot(engine, n, status="held" if n == 5 else "published") for n in range(count)]
    build_gold(engine)
    return times


def test_rollups_equal_a_direct_computation_from_the_published_snapshots(engine):
    build_history(engine)
    add_backfill(engine, "bitcoin", [datetime(2024, 2, 27), datetime(2024, 2, 28), datetime(2024, 3, 1)])
    build_gold(engine)
    got = all_rollups(engine)

    assert_rollup_matches(got["coin_history_hourly"], expected_coin(engine, "h"))
    daily = got["coin_history_daily"]
    snapshot_days = daily[daily.origin == "snapshot"]
    assert_rollup_matches(snapshot_days, expected_coin(engine, "D"))
    # 22:00 on 1 March: 22:10, 22:30, 22:50; 23:00 lost its 23:50 snapshot (held).
    btc = got["coin_history_hourly"].query("id == 'bitcoin'").reset_index(drop=True)
    assert list(btc.points) == [3, 2, 3, 3] and btc.bucket[0] == pd.Timestamp("2024-03-01 22:00")
    assert btc.close[0] == price("bitcoin", 2) and btc.open[0] == price("bitcoin", 0)
    assert got["coin_history_hourly"].query("id == 'tether'").points.sum() == 11  # held snapshot 5 left out
    # Backfilled days fill the daily grain only where no snapshot was taken (1 March has snapshots).
    filled = daily[daily.origin == "backfill"]
    assert list(filled.bucket) == [pd.Timestamp("2024-02-27"), pd.Timestamp("2024-02-28")]
    assert list(filled.close) == [100.0, 101.0] and list(filled.points) == [1, 1]
    # The market: each bucket's last market_history row, open/high/low of the total market cap.
    history = read(engine, "market_history", "snapshot_at")
    history["bucket"] = history.snapshot_at.dt.floor("h")
    hourly = got["market_history_hourly"]
    last = history.drop_duplicates("bucket", keep="last").reset_index(drop=True)
    assert list(hourly.snapshot_at) == list(last.snapshot_at)
    assert list(hourly.total_market_cap) == pytest.approx(list(last.total_market_cap))
    assert list(hourly.market_cap_high) == pytest.approx(list(history.groupby("bucket").total_market_cap.max()))
    assert list(hourly.points) == list(history.groupby("bucket").size())
    assert list(got["market_history_daily"].points) == [3 + 3 - 1, 6]  # 1 March 22:10-23:50 less the held one
    # Every coin once, named after its newest published snapshot; a backfill-only coin too.
    seen = got["coins_seen"].set_index("id")
    assert seen.loc["bitcoin", "name"] == "Bitcoin v11" and seen.loc["bitcoin", "market_cap_rank"] == 2
    assert seen.loc["bitcoin", "first_seen"] == pd.Timestamp("2024-02-27")  # its first backfilled day
    assert seen.loc["bitcoin", "last_seen"] == START + STEP * 11


def test_each_run_recomputes_only_its_own_buckets_and_ends_where_a_full_rebuild_does(engine):
    add_snapshot(engine, 0)
    build_gold(engine)
    for n in range(1, 12):
        at = add_snapshot(engine, n, status="held" if n == 5 else "published")
        if n != 5:  # a held snapshot's run never reaches gold
            build_gold(engine, since=at)
    incremental = all_rollups(engine)

    # An hour no run touches again is never recomputed: rows changed behind its back stay as built...
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE staging_crypto_market SET current_price = 1 WHERE id = 'bitcoin' AND snapshot_at = :t"),
            {"t": START},
        )
    newest = add_snapshot(engine, 12)  # 02:10 on 2 March
    build_gold(engine, since=newest)
    after = all_rollups(engine)
    hourly, before = after["coin_history_hourly"], incremental["coin_history_hourly"]
    pd.testing.assert_frame_equal(
        hourly[hourly.bucket < pd.Timestamp("2024-03-02 02:00")].reset_index(drop=True), before
    )
    assert hourly.query("id == 'bitcoin'").open.iloc[0] == price("bitcoin", 0)
    assert len(hourly[hourly.bucket == pd.Timestamp("2024-03-02 02:00")]) == 3
    with engine.begin() as conn:  # ...and put back, a full rebuild gives what the runs built
        conn.execute(
            text("UPDATE staging_crypto_market SET current_price = :p WHERE id = 'bitcoin' AND snapshot_at = :t"),
            {"p": price("bitcoin", 0), "t": START},
        )
    build_gold(engine)
    full = all_rollups(engine)
    for table, frame in after.items():
        pd.testing.assert_frame_equal(full[table], frame, obj=table)


def test_a_rebuild_after_raw_rows_were_pruned_keeps_the_older_buckets(engine):
    build_history(engine)
    add_backfill(engine, "bitcoin", [datetime(2024, 2, 27)])
    build_gold(engine)
    before = all_rollups(engine)
    cut = START + STEP * 7  # 00:30 on 2 March: the 00:10 snapshot goes, its hour keeps it
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM staging_crypto_market WHERE snapshot_at < :t"), {"t": cut})
        conn.execute(text("DELETE FROM staging_coin_history"))
    build_gold(engine)  # what prune does after removing silver rows
    after = all_rollups(engine)
    for table in ROLLUPS:
        pd.testing.assert_frame_equal(after[table], before[table], obj=table)
    # A later run still extends them.
    build_gold(engine, since=add_snapshot(engine, 12))
    hourly = read(engine, "coin_history_hourly", "id, bucket").query("id == 'bitcoin'")
    assert hourly.bucket.iloc[0] == pd.Timestamp("2024-03-01 22:00") and hourly.points.iloc[-1] == 1


def test_an_empty_rollup_is_built_whole_by_the_next_run(engine):
    """A database upgraded to the rollups: its first run builds them from all of silver."""
    build_history(engine)
    expected = all_rollups(engine)
    with engine.begin() as conn:
        for table in ROLLUPS:
            conn.execute(text(f"DELETE FROM {table}"))
    at = add_snapshot(engine, 12)
    build_gold(engine, since=at)
    got = all_rollups(engine)
    assert_rollup_matches(got["coin_history_hourly"], expected_coin(engine, "h"))
    assert got["coin_history_hourly"].bucket.min() == expected["coin_history_hourly"].bucket.min()


def test_a_backfill_merges_its_days_into_the_daily_rollup(engine):
    build_history(engine)
    add_backfill(engine, "solana", [datetime(2024, 2, 20), datetime(2024, 2, 21)])
    add_backfill(engine, "bitcoin", [datetime(2024, 3, 2)])  # a snapshot day: the snapshots win
    with engine.begin() as conn:
        rollups.after_backfill(conn, ["solana", "bitcoin"])
    daily = read(engine, "coin_history_daily", "id, bucket")
    solana = daily.query("id == 'solana'")
    assert list(solana.origin) == ["backfill", "backfill"] and list(solana.close) == [100.0, 101.0]
    assert daily.query("id == 'bitcoin' and origin == 'backfill'").empty
    seen = read(engine, "coins_seen", "id").set_index("id")
    assert pd.isna(seen.loc["solana", "name"]) and seen.loc["solana", "last_seen"] == pd.Timestamp("2024-02-21")
    assert seen.loc["bitcoin", "name"] == "Bitcoin v11"
    # A rebuild gives the same daily rows.
    build_gold(engine)
    pd.testing.assert_frame_equal(read(engine, "coin_history_daily", "id, bucket"), daily)


def _statements_during(engine, action) -> list[str]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_an_empty_hourly_rollup_gets_its_key_and_index_after_its_rows_and_keeps_them(engine):
    """A replay into a new database fills the hourly rollup with its key (PostgreSQL) and bucket index
    built once after the rows; a rebuild over rows readers may be reading never drops them."""
    for n in range(6):
        add_snapshot(engine, n)
    first = _statements_during(engine, lambda: build_gold(engine))
    assert any(s.startswith("DROP INDEX ix_coin_history_hourly_bucket") for s in first)
    assert any(s.startswith("CREATE INDEX ix_coin_history_hourly_bucket") for s in first)
    assert_rollup_matches(read(engine, "coin_history_hourly", "id, bucket"), expected_coin(engine, "h"))
    found = inspect(engine)
    assert found.get_pk_constraint("coin_history_hourly")["constrained_columns"] == ["id", "bucket"]
    assert "ix_coin_history_hourly_bucket" in {index["name"] for index in found.get_indexes("coin_history_hourly")}
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the key is enforced again
        conn.execute(
            text(
                "INSERT INTO coin_history_hourly (id, bucket, points, open_at, close_at) "
                "SELECT id, bucket, 1, open_at, close_at FROM coin_history_hourly LIMIT 1"
            )
        )

    again = _statements_during(engine, lambda: build_gold(engine))
    assert not [s for s in again if s.startswith(("DROP INDEX", "ALTER TABLE"))]
    build_gold(engine, since=add_snapshot(engine, 6))
    assert_rollup_matches(read(engine, "coin_history_hourly", "id, bucket"), expected_coin(engine, "h"))
