"""Upserts into the silver tables. History is keyed by (coin id, snapshot time),
so loading the same bronze twice leaves the same rows."""

from __future__ import annotations

from sqlalchemy import Connection, delete

from pipeline.db import is_postgres, upsert_rows
from pipeline.schema import (
    quarantine_crypto_market,
    staging_coin_history,
    staging_crypto_market,
    staging_global_market,
    staging_sparkline,
)
from pipeline.silver.transform import GLOBAL_COLUMNS, SILVER_COLUMNS, MarketsBatch, frame_to_tuples

QUARANTINE_COLUMNS = [c.name for c in quarantine_crypto_market.columns]
SPARKLINE_COLUMNS = ["id", "snapshot_at", "run_id", "sparkline_7d"]
HISTORY_COLUMNS = [c.name for c in staging_coin_history.columns]


def load_markets(conn: Connection, batch: MarketsBatch) -> int:
    """Upsert a batch's rows, its newest sparklines and its quarantine."""
    rows = frame_to_tuples(batch.rows, SILVER_COLUMNS)
    upsert_rows(conn, staging_crypto_market, rows, SILVER_COLUMNS, key=["id", "snapshot_at"])
    load_sparklines(conn, batch.sparklines)
    load_quarantine(conn, batch)
    return len(rows)


def load_sparklines(conn: Connection, sparklines: list[tuple]) -> None:
    """Keep only the newest sparkline per coin: replaying an older run never replaces a newer one."""
    newest: dict[str, tuple] = {}
    for row in sparklines:
        if row[0] not in newest or row[1] >= newest[row[0]][1]:
            newest[row[0]] = row
    if not newest:
        return
    table = staging_sparkline.name
    values = list(newest.values())
    if is_postgres(conn):
        upsert_rows(conn, staging_sparkline, values, SPARKLINE_COLUMNS, key=["id"])
        return
    conn.connection.driver_connection.executemany(
        f"INSERT INTO {table} (id, snapshot_at, run_id, sparkline_7d) VALUES (?, ?, ?, ?) "
        f"ON CONFLICT (id) DO UPDATE SET snapshot_at = excluded.snapshot_at, run_id = excluded.run_id, "
        f"sparkline_7d = excluded.sparkline_7d WHERE excluded.snapshot_at >= {table}.snapshot_at",
        [(r[0], r[1].strftime("%Y-%m-%d %H:%M:%S.%f"), r[2], r[3]) for r in values],
    )


def load_quarantine(conn: Connection, batch: MarketsBatch) -> int:
    """Replace the quarantine of each run in the batch (so a replay does not add twice)."""
    run_ids = sorted({q.run_id for q in batch.quarantined})
    if run_ids:
        conn.execute(delete(quarantine_crypto_market).where(quarantine_crypto_market.c.run_id.in_(run_ids)))
    rows = [(q.run_id, q.record_index, q.snapshot_at, q.record_id, q.reason, q.raw_record) for q in batch.quarantined]
    upsert_rows(conn, quarantine_crypto_market, rows, QUARANTINE_COLUMNS, key=["run_id", "record_index"])
    return len(rows)


def load_global(conn: Connection, row: dict) -> None:
    upsert_rows(conn, staging_global_market, [tuple(row[c] for c in GLOBAL_COLUMNS)], GLOBAL_COLUMNS,
                key=["snapshot_at"])


def load_coin_history(conn: Connection, rows: list[tuple]) -> int:
    """(id, ts, run_id, price, market_cap, total_volume) rows from market_chart backfills."""
    unique = {(r[0], r[1]): r for r in rows}
    upsert_rows(conn, staging_coin_history, list(unique.values()), HISTORY_COLUMNS, key=["id", "ts"])
    return len(unique)
