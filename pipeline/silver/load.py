"""Upserts into the silver tables. History is keyed by (coin id, snapshot time),
so loading the same bronze twice leaves the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from sqlalchemy import Connection, Engine, delete, func, select, text

from pipeline.arrow_load import dedupe_last, is_arrow
from pipeline.db import Rows, copy_or_upsert, ensure_silver_indexes, is_postgres, replace_unless_newer, upsert_rows
from pipeline.db import ensure_month_partitions as _ensure_month_partitions
from pipeline.schema import (
    PROVIDER_DEFAULT,
    quarantine_crypto_market,
    staging_coin_history,
    staging_crypto_market,
    staging_global_dominance,
    staging_global_market,
    staging_sparkline,
)
from pipeline.silver.batches import PreparedBatch
from pipeline.silver.transform import GLOBAL_COLUMNS, SILVER_COLUMNS, Row

QUARANTINE_COLUMNS = [c.name for c in quarantine_crypto_market.columns]
SPARKLINE_COLUMNS = ["id", "snapshot_at", "run_id", "sparkline_7d"]
#: What a history row holds, in order (``load_coin_history`` adds the provider).
HISTORY_COLUMNS = [c.name for c in staging_coin_history.columns if c.name != "provider"]


def unused_snapshot_time(engine: Engine, wanted: datetime | None) -> datetime | None:
    """``wanted``, or the next microsecond no silver row uses yet.

    Silver is keyed by (coin, snapshot time): a snapshot must belong to exactly one
    run (so to one provider: gold and the snapshots ledger are keyed by time), or a run
    would silently overwrite part of another. Runs are serialised by
    the pipeline lock, so checking here (before the manifest is written) is enough.
    """
    if wanted is None:
        return None
    with engine.connect() as conn:
        while conn.execute(
            select(staging_crypto_market.c.snapshot_at).where(staging_crypto_market.c.snapshot_at == wanted).limit(1)
        ).first():
            wanted += timedelta(microseconds=1)
    return wanted


def count_run_rows(engine: Engine, snapshots: dict[str, datetime]) -> int:
    """Silver rows that belong to these runs (run id -> snapshot time) now: what a run log
    should report as written. Read through the snapshot-time index, not a table scan."""
    if not snapshots:
        return 0
    table = staging_crypto_market
    with engine.connect() as conn:
        return (
            conn.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.snapshot_at.in_(set(snapshots.values())), table.c.run_id.in_(list(snapshots)))
            ).scalar()
            or 0
        )


def ensure_month_partitions(conn: Connection, months: list[str]) -> None:
    """PostgreSQL keeps silver in monthly partitions; create the ones a batch needs."""
    _ensure_month_partitions(conn, staging_crypto_market.name, months)


@contextmanager
def indexes_built_after(engine: Engine) -> Iterator[bool]:
    """A load into an empty silver table (a replay into a new database) builds the table's
    secondary indexes once, after the rows are in, instead of row by row; yields whether it does.

    The primary key stays: it is what the upserts' ON CONFLICT needs. Measured on 1M rows in
    replay's batch order: PostgreSQL 10.6 s with every index, 7.8 s with the key only plus the two
    index builds; SQLite 13.1 s, 11.3 s. The indexes are put back when the block ends however it
    ends; a process killed inside it leaves that to the next ``ensure_schema``.
    """
    table = staging_crypto_market
    with engine.begin() as conn:
        empty = conn.execute(select(table.c.id).limit(1)).first() is None
        if empty:
            for index in table.indexes:
                index.drop(conn, checkfirst=True)
    try:
        yield empty
    finally:
        if empty:
            with engine.begin() as conn:
                ensure_silver_indexes(conn)


def load_market_rows(conn: Connection, rows: Rows) -> int:
    """Silver rows (a pyarrow Table with the SILVER_COLUMNS, or tuples in their order), unique
    on (id, snapshot_at). A new time range is COPied straight in; an overlap is upserted."""
    return copy_or_upsert(
        conn, staging_crypto_market, rows, SILVER_COLUMNS, key=["id", "snapshot_at"], time_column="snapshot_at"
    )


def load_sparklines(conn: Connection, sparklines: Rows) -> None:
    """Keep only the newest sparkline per coin: replaying an older run never replaces a newer one."""
    if is_postgres(conn):
        _postgres_sparklines(conn, sparklines)
        return
    if is_arrow(sparklines):
        # Sorted by time, the last row per coin is its newest (the upsert keeps a key's last row).
        table: Any = sparklines  # pyarrow is untyped
        ordered = table.select(SPARKLINE_COLUMNS).sort_by([("snapshot_at", "ascending")])
        upsert_rows(conn, staging_sparkline, ordered, SPARKLINE_COLUMNS, key=["id"], only_if_newer="snapshot_at")
        return
    newest: dict[str, Row] = {}
    for row in sparklines:
        if row[0] not in newest or row[1] >= newest[row[0]][1]:
            newest[row[0]] = row
    if not newest:
        return
    upsert_rows(
        conn, staging_sparkline, list(newest.values()), SPARKLINE_COLUMNS, key=["id"], only_if_newer="snapshot_at"
    )


def _postgres_sparklines(conn: Connection, sparklines: Rows) -> None:
    """A whole market is 17,000 texts of ~3 kB. PostgreSQL tries to compress each with pglz, which barely
    shrinks 168 floats and costs ~2 s per write; lz4 takes a quarter of that. Set for this load only;
    values read back the same either way. The tuples go as Arrow (binary COPY from the buffers),
    written once (``replace_unless_newer``, not an upsert through a temporary table)."""
    table: Any = sparklines if is_arrow(sparklines) else _sparkline_table(sparklines)  # pyarrow is untyped
    if not table.num_rows:
        return
    previous = conn.execute(text(_CURRENT_IF_LZ4)).scalar()
    if previous is not None:
        conn.execute(text("SELECT set_config('default_toast_compression', 'lz4', true)"))
    # Sorted by time (stably), the last row per coin is its newest (the load keeps a key's last row).
    ordered = table.select(SPARKLINE_COLUMNS).sort_by([("snapshot_at", "ascending")])
    replace_unless_newer(conn, staging_sparkline, ordered, SPARKLINE_COLUMNS, key="id", time="snapshot_at")
    if previous is not None:
        conn.execute(text("SELECT set_config('default_toast_compression', :v, true)"), {"v": previous})


#: The current setting when the server can use lz4 (>= 14 built with it; the setting does not exist before 14).
_CURRENT_IF_LZ4 = "SELECT setting FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"


def _sparkline_table(rows: Any) -> Any:
    """(id, snapshot_at, run_id, sparkline JSON) tuples as a pyarrow Table in ``SPARKLINE_COLUMNS`` order."""
    columns: list[tuple[object, ...]] = list(zip(*rows, strict=True)) if rows else [() for _ in SPARKLINE_COLUMNS]
    return pa.table(
        {
            "id": pa.array(columns[0], pa.string()),
            "snapshot_at": _few_times(columns[1]),
            "run_id": pa.array(columns[2], pa.string()),
            "sparkline_7d": pa.array(columns[3], pa.large_string()),  # 20x faster to build than string
        }
    )


def _few_times(values: tuple[object, ...]) -> Any:
    """A batch holds a few snapshot times repeated per coin: convert each once (pyarrow converts an
    aware datetime slowly), then repeat them by index."""
    distinct: dict[object, int] = {}
    positions = [distinct.setdefault(value, len(distinct)) for value in values]
    return pa.array(list(distinct), pa.timestamp("us", tz="UTC")).take(pa.array(positions, pa.int32()))


def replace_quarantine(conn: Connection, run_ids: list[str], rows: Rows) -> int:
    """Replace the quarantine of these runs (so a replay does not add twice)."""
    if run_ids:
        conn.execute(delete(quarantine_crypto_market).where(quarantine_crypto_market.c.run_id.in_(run_ids)))
    return upsert_rows(conn, quarantine_crypto_market, rows, QUARANTINE_COLUMNS, key=["run_id", "record_index"])


def load_global_rows(conn: Connection, rows: Rows) -> int:
    return upsert_rows(conn, staging_global_market, rows, GLOBAL_COLUMNS, key=["snapshot_at"])


GLOBAL_DOMINANCE_COLUMNS = [c.name for c in staging_global_dominance.columns]


def load_global_dominance(conn: Connection, snapshot_times: list[datetime], rows: Rows) -> int:
    """Replace CoinGecko's per-symbol dominance of these snapshots (a replay writes the same rows)."""
    times = sorted(set(snapshot_times))
    for start in range(0, len(times), 500):
        conn.execute(
            delete(staging_global_dominance).where(
                staging_global_dominance.c.snapshot_at.in_(times[start : start + 500])
            )
        )
    return upsert_rows(conn, staging_global_dominance, rows, GLOBAL_DOMINANCE_COLUMNS, key=["snapshot_at", "symbol"])


def load_coin_history(conn: Connection, rows: Rows, provider: str = PROVIDER_DEFAULT) -> int:
    """(id, ts, run_id, price, market_cap, total_volume) rows from one provider's history bodies
    (market_chart backfills); keyed by (provider, id, ts), so another provider's points stay."""
    if is_arrow(rows):
        table: Any = rows  # pyarrow is untyped
        unique_rows = dedupe_last(table.select(HISTORY_COLUMNS), ["id", "ts"])
        with_provider = unique_rows.append_column("provider", pa.array([provider] * unique_rows.num_rows, pa.string()))
        upsert_rows(
            conn, staging_coin_history, with_provider, [*HISTORY_COLUMNS, "provider"], key=["provider", "id", "ts"]
        )
        return int(unique_rows.num_rows)
    unique = {(r[0], r[1]): (*r, provider) for r in rows}
    upsert_rows(
        conn,
        staging_coin_history,
        list(unique.values()),
        [*HISTORY_COLUMNS, "provider"],
        key=["provider", "id", "ts"],
    )
    return len(unique)


def load_batch(conn: Connection, batch: PreparedBatch) -> int:
    """Upsert one prepared batch in the caller's transaction; returns silver rows written."""
    ensure_month_partitions(conn, batch.months)
    written = load_market_rows(conn, batch.rows)  # Arrow straight to the loader: no Python rows
    load_sparklines(conn, batch.sparklines)
    replace_quarantine(conn, batch.quarantine_run_ids, batch.quarantine)
    load_global_rows(conn, batch.globals)
    load_global_dominance(
        conn, [row[GLOBAL_COLUMNS.index("snapshot_at")] for row in batch.globals], batch.global_dominance
    )
    return written
