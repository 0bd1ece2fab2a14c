"""Rollups: coin and market history at hourly and daily grain, and the coins ever seen.

Charts of long ranges read these instead of raw snapshots, so a query costs what the range
shows, not what the warehouse keeps (a year of one coin: 365 daily rows instead of 35,000
snapshots). They are maintained in the gold transaction of every run (``refresh``, called by
``pipeline.gold.build_gold``), so a reader sees gold and rollups of the same run together:

* hourly rows come from published snapshots (coins: ``staging_crypto_market``; the market:
  ``market_history``): open/close are the first/last point by time, high/low the extremes of the
  price (the market: of the total market cap), the other figures those of the last point;
* daily rows come from the hourly rows, plus the backfilled days (``staging_coin_history``) where
  no snapshot exists that day (``origin = 'backfill'``);
* ``coins_seen`` is upserted from the same snapshots and the backfilled ids.

A run recomputes only the buckets from its oldest new snapshot on (delete + insert of those
buckets); a full rebuild (``since=None``: replay, prune, new coin classes) recomputes every bucket
that raw data still covers and keeps older ones, so ``prune --keep-days`` can drop raw snapshots
while the rollups keep the history for ever. A bucket whose oldest snapshots were pruned is kept
as it was computed (its ``open_at`` is older than any raw row left), never rebuilt from a part.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, DateTime, bindparam, text
from sqlalchemy.sql.elements import TextClause

from pipeline import schema
from pipeline.db import keys_built_after

Grain = Literal["hourly", "daily"]
#: Later than any bucket: the upper end of an incremental build's range (``_bounded``).
FAR_FUTURE = datetime(9999, 12, 31)
WIDTHS: dict[Grain, timedelta] = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}
#: SQLite: how much of the stored 'YYYY-MM-DD HH:MM:SS.ffffff' names the bucket; the rest becomes zeros.
_SQLITE_KEPT: dict[Grain, int] = {"hourly": 13, "daily": 10}
_SQLITE_ZERO_TIME = "0000-00-00 00:00:00.000000"
_PG_UNIT: dict[Grain, str] = {"hourly": "hour", "daily": "day"}

COIN_COLUMNS = (
    "id, bucket, open, high, low, close, market_cap, total_volume, market_cap_rank, points, open_at, close_at"
)
MARKET_LAST_COLUMNS = (
    "snapshot_at, source, coin_count, total_market_cap, total_volume, btc_dominance_pct, eth_dominance_pct, "
    "stablecoin_dominance_pct, others_dominance_pct, dominance_basis, market_cap_change_percentage_24h, basis_note"
)


def truncate(moment: datetime, grain: Grain) -> datetime:
    """The start of the bucket ``moment`` falls in (naive UTC)."""
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if grain == "hourly" else hour.replace(hour=0)


def bucket_sql(dialect: str, grain: Grain, column: str) -> str:
    """SQL for the start of the bucket of ``column``: date_trunc on PostgreSQL; on SQLite text in
    SQLAlchemy's own 'YYYY-MM-DD HH:MM:SS.ffffff' form, so it compares with bound datetimes.

    SQLite stores every time in that form (SQLAlchemy's DateTime, and ``arrow_load.sqlite_rows``
    writes the same text), so the bucket is the text's date (and hour) with the rest put back as
    zeros: ~2x faster than ``strftime``, which parses each value (measured: the hourly rollup of
    1M snapshots' select, 8.3 s -> 5.4 s).
    """
    if dialect == "postgresql":
        return f"date_trunc('{_PG_UNIT[grain]}', {column})"
    kept = _SQLITE_KEPT[grain]
    return f"substr({column}, 1, {kept}) || '{_SQLITE_ZERO_TIME[kept:]}'"


def refresh(conn: Connection, since: datetime | None) -> dict[str, int]:
    """Bring every rollup up to date in the caller's transaction; ``since`` as for ``build_gold``.

    Returns the rows written per table.
    """
    counts: dict[str, int] = {}
    counts.update(_refresh_coins(conn, since))
    counts.update(_refresh_market(conn, since))
    counts["coins_seen"] = upsert_coins_seen(conn, since)
    return counts


def _scalar_time(conn: Connection, sql: str, **params: object) -> datetime | None:
    value = conn.execute(_sql(sql), params).scalar()
    return None if value is None else _as_time(value)


def _as_time(value: object) -> datetime:
    """A time read through a text statement: a datetime on PostgreSQL, the stored text on SQLite."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _hourly_start(conn: Connection, since: datetime | None, rollup: str, raw_first_sql: str) -> datetime | None:
    """The first hourly bucket to recompute from raw data; None when there is no raw data.

    The bucket of the oldest raw row is skipped when the rollup already holds it computed from an
    older point (its first snapshots were pruned); an empty rollup (a new table, or an upgraded
    database) is rebuilt whole.
    """
    raw_first = _scalar_time(conn, raw_first_sql)
    if raw_first is None:
        return None
    start = truncate(raw_first, "hourly")
    kept = _scalar_time(conn, f"SELECT open_at FROM {rollup} WHERE bucket = :b ORDER BY open_at LIMIT 1", b=start)
    if kept is not None and kept < raw_first:
        start += WIDTHS["hourly"]
    if since is None or conn.execute(_sql(f"SELECT 1 FROM {rollup} LIMIT 1")).first() is None:
        return start
    return max(start, truncate(since, "hourly"))


def _refresh_coins(conn: Connection, since: datetime | None) -> dict[str, int]:
    dialect = conn.dialect.name
    start = _hourly_start(conn, since, "coin_history_hourly", "SELECT min(snapshot_at) FROM staging_crypto_market")
    counts = {"coin_history_hourly": 0, "coin_history_daily": 0}
    if start is not None:
        # An empty rollup (a replay into a new database) gets its key and index after its rows.
        empty = conn.execute(_sql("SELECT 1 FROM coin_history_hourly LIMIT 1")).first() is None
        conn.execute(_sql("DELETE FROM coin_history_hourly WHERE bucket >= :start"), {"start": start})
        with keys_built_after(conn, schema.coin_history_hourly) if empty else nullcontext():
            counts["coin_history_hourly"] = _rowcount(conn.execute(_sql(_coin_hourly_sql(dialect)), {"start": start}))
    day_start = truncate(start, "daily") if start is not None else None
    if day_start is None and since is None:
        day_start = _scalar_time(conn, "SELECT min(bucket) FROM coin_history_hourly")
    if day_start is not None:
        conn.execute(_sql("DELETE FROM coin_history_daily WHERE bucket >= :start"), {"start": day_start})
        day = bucket_sql(dialect, "daily", "bucket")
        # Joins back to the tables by their keys (not to a CTE: SQLite would index it by id only).
        counts["coin_history_daily"] = _rowcount(
            conn.execute(
                _sql(
                    f"""
                    INSERT INTO coin_history_daily ({COIN_COLUMNS}, origin)
                    WITH days AS (
                        SELECT id, {day} AS day, min(bucket) AS first_hour, max(bucket) AS last_hour,
                               max(high) AS high, min(low) AS low, sum(points) AS points
                        FROM coin_history_hourly WHERE bucket >= :start{_bounded(since)} GROUP BY id, {day}
                    )
                    SELECT d.id, d.day, o.open, d.high, d.low, c.close, c.market_cap, c.total_volume,
                           c.market_cap_rank, d.points, o.open_at, c.close_at, 'snapshot'
                    FROM days AS d
                    INNER JOIN coin_history_hourly AS o ON o.id = d.id AND o.bucket = d.first_hour
                    INNER JOIN coin_history_hourly AS c ON c.id = d.id AND c.bucket = d.last_hour
                    """
                ),
                {"start": day_start, "end": FAR_FUTURE},
            )
        )
    if since is None:
        counts["coin_history_daily"] += merge_backfill(conn)
    elif day_start is not None:
        counts["coin_history_daily"] += _insert_backfill_days(conn, None, day_start)
    return counts


#: The published snapshots' rows from :start on, with their hourly bucket ({hour}).
_PUBLISHED_ROWS = """
    SELECT s.id, {hour} AS bucket, s.snapshot_at, s.current_price{more}
    FROM staging_crypto_market AS s
    INNER JOIN snapshots AS p ON p.snapshot_at = s.snapshot_at AND p.status = 'published'
    WHERE s.snapshot_at >= :start
"""


def _coin_hourly_sql(dialect: str) -> str:
    """The INSERT of every coin's hourly rows from :start on: one statement per dialect, as each
    planner does it fastest (measured on 1M snapshots, select only).

    PostgreSQL: one window pass over the rows sorted by (coin, bucket, time) (2.6 s); grouping and
    then joining back for the first and last point sorts three times over (7.5 s). SQLite: the
    grouping with the join back through the primary key (5.4 s; the window pass takes 7.8 s).
    """
    hour = bucket_sql(dialect, "hourly", "s.snapshot_at")
    if dialect == "postgresql":
        rows = _PUBLISHED_ROWS.format(hour=hour, more=", s.market_cap, s.total_volume, s.market_cap_rank")
        return f"""
            INSERT INTO coin_history_hourly ({COIN_COLUMNS})
            WITH rows_in AS ({rows}),
            points AS (
                SELECT r.*, first_value(current_price) OVER b AS open, max(current_price) OVER b AS high,
                       min(current_price) OVER b AS low, count(*) OVER b AS points,
                       first_value(snapshot_at) OVER b AS open_at, last_value(snapshot_at) OVER b AS close_at
                FROM rows_in AS r
                WINDOW b AS (PARTITION BY id, bucket ORDER BY snapshot_at
                             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
            )
            SELECT id, bucket, open, high, low, current_price, market_cap, total_volume, market_cap_rank, points,
                   open_at, close_at
            FROM points WHERE snapshot_at = close_at
        """
    return f"""
        INSERT INTO coin_history_hourly ({COIN_COLUMNS})
        WITH rows_in AS ({_PUBLISHED_ROWS.format(hour=hour, more="")}),
        buckets AS (
            SELECT id, bucket, min(snapshot_at) AS open_at, max(snapshot_at) AS close_at,
                   max(current_price) AS high, min(current_price) AS low, count(*) AS points
            FROM rows_in GROUP BY id, bucket
        )
        SELECT b.id, b.bucket, o.current_price, b.high, b.low, c.current_price, c.market_cap,
               c.total_volume, c.market_cap_rank, b.points, b.open_at, b.close_at
        FROM buckets AS b
        INNER JOIN staging_crypto_market AS o ON o.id = b.id AND o.snapshot_at = b.open_at
        INNER JOIN staging_crypto_market AS c ON c.id = b.id AND c.snapshot_at = b.close_at
    """


def _bounded(since: datetime | None) -> str:
    """An incremental build's upper bound on the hourly buckets it reads (every bucket is below it).

    Without statistics SQLite guesses that a one-sided range keeps a large part of the table and
    reads the whole primary key in (id, bucket) order for the GROUP BY instead of the bucket index:
    a run's daily refresh took ~1 s at 10M hourly rows; two-sided, the bucket index is searched
    (<1 ms). A full rebuild reads everything, where the primary key's order is the faster way.
    """
    return "" if since is None else " AND bucket < :end"


def merge_backfill(conn: Connection, coin_ids: Sequence[str] | None = None) -> int:
    """Put the backfilled days (``staging_coin_history``) into ``coin_history_daily`` where no
    snapshot covers the day; ``coin_ids``: only these coins (a backfill run), else every coin.

    Backfilled days older than what staging still holds for a coin (pruned) are kept.
    """
    only, params = _only(coin_ids, "id")
    firsts = conn.execute(
        _sql(f"SELECT id, min(ts) FROM staging_coin_history WHERE 1 = 1{only} GROUP BY id"),
        params,
    ).all()
    stale = [{"id": coin, "start": truncate(_as_time(first), "daily")} for coin, first in firsts if first is not None]
    if stale:
        conn.execute(
            _sql("DELETE FROM coin_history_daily WHERE origin = 'backfill' AND id = :id AND bucket >= :start"), stale
        )
    return _insert_backfill_days(conn, coin_ids, None)


def _insert_backfill_days(conn: Connection, coin_ids: Sequence[str] | None, start: datetime | None) -> int:
    """One row per coin and backfilled day with no daily row yet: the day's last point (of the
    first provider by name when two providers have the same time)."""
    day = bucket_sql(conn.dialect.name, "daily", "h.ts")
    only, params = _only(coin_ids, "h.id")
    if start is not None:
        only += " AND h.ts >= :start"
        params["start"] = start
    sql = f"""
        INSERT INTO coin_history_daily ({COIN_COLUMNS}, origin)
        WITH points AS (
            SELECT h.id, {day} AS bucket, h.ts, h.price, h.market_cap, h.total_volume,
                   row_number() OVER (PARTITION BY h.id, {day} ORDER BY h.ts DESC, h.provider) AS newest
            FROM staging_coin_history AS h
            WHERE 1 = 1{only}
        )
        SELECT id, bucket, price, price, price, price, market_cap, total_volume, NULL, 1, ts, ts, 'backfill'
        FROM points AS p
        WHERE p.newest = 1 AND NOT EXISTS (
            SELECT 1 FROM coin_history_daily AS d WHERE d.id = p.id AND d.bucket = p.bucket
        )
    """
    return _rowcount(conn.execute(_sql(sql), params))


def _refresh_market(conn: Connection, since: datetime | None) -> dict[str, int]:
    dialect = conn.dialect.name
    start = _hourly_start(conn, since, "market_history_hourly", "SELECT min(snapshot_at) FROM market_history")
    counts = {"market_history_hourly": 0, "market_history_daily": 0}
    if start is None:
        return counts
    counts["market_history_hourly"] = _market_grain(
        conn, "market_history_hourly", "market_history", bucket_sql(dialect, "hourly", "snapshot_at"), start
    )
    counts["market_history_daily"] = _market_grain(
        conn,
        "market_history_daily",
        "market_history_hourly",
        bucket_sql(dialect, "daily", "bucket"),
        truncate(start, "daily"),
        time="bucket",
    )
    return counts


def _market_grain(
    conn: Connection, table: str, source: str, bucket: str, start: datetime, *, time: str = "snapshot_at"
) -> int:
    """Rebuild ``table``'s buckets from ``start`` on from ``source`` (market_history, or the hourly
    rollup for the daily one: its ``bucket`` orders the points, its own open/high/low are carried)."""
    hourly = source == "market_history_hourly"
    open_cap = "o.market_cap_open" if hourly else "o.total_market_cap"
    high = "max(market_cap_high)" if hourly else "max(total_market_cap)"
    low = "min(market_cap_low)" if hourly else "min(total_market_cap)"
    points = "sum(points)" if hourly else "count(*)"
    open_at = "o.open_at" if hourly else "o.snapshot_at"
    last = ", ".join(f"c.{name.strip()}" for name in MARKET_LAST_COLUMNS.split(","))
    conn.execute(_sql(f"DELETE FROM {table} WHERE bucket >= :start"), {"start": start})
    sql = f"""
        INSERT INTO {table} (bucket, {MARKET_LAST_COLUMNS}, market_cap_open, market_cap_high, market_cap_low,
                             points, open_at)
        WITH buckets AS (
            SELECT {bucket} AS grain_bucket, min({time}) AS first_at, max({time}) AS last_at,
                   {high} AS high, {low} AS low, {points} AS points
            FROM {source} WHERE {time} >= :start GROUP BY {bucket}
        )
        SELECT b.grain_bucket, {last}, {open_cap}, b.high, b.low, b.points, {open_at}
        FROM buckets AS b
        INNER JOIN {source} AS o ON o.{time} = b.first_at
        INNER JOIN {source} AS c ON c.{time} = b.last_at
    """
    return _rowcount(conn.execute(_sql(sql), {"start": start}))


def upsert_coins_seen(conn: Connection, since: datetime | None, coin_ids: Sequence[str] | None = None) -> int:
    """Add the coins of the published snapshots from ``since`` on (None: all of silver and the
    backfilled ids) to ``coins_seen``; ``coin_ids``: only the backfilled ids of these coins.

    first/last seen only widen; name, symbol and rank follow the newest snapshot (named_at).
    """
    pg = conn.dialect.name == "postgresql"
    least, greatest = ("least", "greatest") if pg else ("min", "max")
    newer = (
        "excluded.named_at IS NOT NULL AND (coins_seen.named_at IS NULL OR excluded.named_at >= coins_seen.named_at)"
    )
    update = (
        " ON CONFLICT (id) DO UPDATE SET "
        f"first_seen = {least}(coins_seen.first_seen, excluded.first_seen), "
        f"last_seen = {greatest}(coins_seen.last_seen, excluded.last_seen), "
        + ", ".join(
            f"{column} = CASE WHEN {newer} THEN excluded.{column} ELSE coins_seen.{column} END"
            for column in ("name", "symbol", "market_cap_rank", "named_at")
        )
    )
    columns = "id, name, symbol, market_cap_rank, named_at, first_seen, last_seen"
    written = 0
    if coin_ids is None:
        where = "" if since is None else " AND s.snapshot_at >= :since"
        # The span per coin first, then its newest row by the primary key: a window over every
        # row sorted per coin took 6x longer (measured on 1M snapshots: 1.3 s -> 0.2 s on PostgreSQL,
        # 3.6 s -> 0.9 s on SQLite).
        snapshots_sql = f"""
            INSERT INTO coins_seen ({columns})
            WITH spans AS (
                SELECT s.id, min(s.snapshot_at) AS first_seen, max(s.snapshot_at) AS last_seen
                FROM staging_crypto_market AS s
                INNER JOIN snapshots AS p ON p.snapshot_at = s.snapshot_at AND p.status = 'published'
                WHERE 1 = 1{where}
                GROUP BY s.id
            )
            SELECT s.id, s.name, s.symbol, s.market_cap_rank, s.snapshot_at, spans.first_seen, spans.last_seen
            FROM spans INNER JOIN staging_crypto_market AS s ON s.id = spans.id AND s.snapshot_at = spans.last_seen
            WHERE 1 = 1{update}
        """
        written += _rowcount(conn.execute(_sql(snapshots_sql), {} if since is None else {"since": since}))
        if since is not None:
            return written
    only, params = _only(coin_ids, "id")
    backfill_sql = f"""
        INSERT INTO coins_seen ({columns})
        SELECT id, NULL, NULL, NULL, NULL, min(ts), max(ts)
        FROM staging_coin_history WHERE 1 = 1{only} GROUP BY id{update}
    """
    written += _rowcount(conn.execute(_sql(backfill_sql), params))
    return written


def after_backfill(conn: Connection, coin_ids: Sequence[str]) -> None:
    """A backfill run loaded these coins' daily history: merge it into the daily rollup and the
    coins seen, in the same transaction as the load (backfills never rebuild gold)."""
    if coin_ids:
        merge_backfill(conn, coin_ids)
        upsert_coins_seen(conn, None, coin_ids)


_TIMES = ("start", "since", "b", "end")


def _sql(statement: str) -> TextClause:
    """A text statement whose time parameters are bound as DateTime: on SQLite in the stored
    'YYYY-MM-DD HH:MM:SS.ffffff' form (the driver's own adapter drops zero microseconds, and
    '... 10:00:00' is not equal to '... 10:00:00.000000')."""
    params = [bindparam(name, type_=DateTime()) for name in _TIMES if f":{name}" in statement]
    if ":coin_ids" in statement:
        params.append(bindparam("coin_ids", expanding=True))
    clause = text(statement)
    return clause.bindparams(*params) if params else clause


def _only(coin_ids: Sequence[str] | None, column: str) -> tuple[str, dict[str, object]]:
    if coin_ids is None:
        return "", {}
    return f" AND {column} IN :coin_ids", {"coin_ids": list(coin_ids)}


def _rowcount(result: object) -> int:
    count = getattr(result, "rowcount", 0)
    return max(int(count or 0), 0)
