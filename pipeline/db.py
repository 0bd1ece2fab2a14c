"""Engine factory, schema creation and the bulk upsert for each dialect.

This is the only pipeline module that knows which database is in use:
SQLite gets WAL (the dashboard keeps reading while a run writes) and one
``executemany`` per batch; PostgreSQL gets COPY into a temporary table and one
``INSERT ... ON CONFLICT`` from it.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

from pipeline import schema
from pipeline.errors import DatabaseUnavailable
from pipeline.schema import SCHEMA_VERSION, metadata

SEEDS_DIR = Path(__file__).resolve().parent.parent / "sql" / "seeds"

#: Errors a raw driver cursor raises (SQLite's and psycopg's), for code that bypasses SQLAlchemy.
def _driver_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # pragma: no cover - psycopg is in requirements.txt
        pass
    return tuple(errors)


DRIVER_ERRORS = _driver_errors()

#: SQLAlchemy's own text format for SQLite DATETIME columns; raw inserts must match it.
SQLITE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def utcnow() -> datetime:
    """Naive UTC: every timestamp column is UTC without a zone, on both databases."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _sqlite_datetime(value: datetime) -> str:
    return value.strftime(SQLITE_DATETIME_FORMAT)


# Raw executemany binds datetimes in the same text format SQLAlchemy writes, so
# comparisons and joins on timestamp columns see one format.
sqlite3.register_adapter(datetime, _sqlite_datetime)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA cache_size=-32768")  # 32 MiB: bulk upserts into a large PK index
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@lru_cache(maxsize=8)
def make_engine(database_url: str) -> Engine:
    """One engine per URL per process (engines own connection pools)."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(database_url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def is_postgres(conn_or_engine) -> bool:
    return conn_or_engine.dialect.name == "postgresql"


def check_connection(engine: Engine) -> None:
    """Raise DatabaseUnavailable with a readable reason if the database cannot be opened."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise DatabaseUnavailable(f"cannot open database {engine.url.render_as_string()}: {reason}") from exc


def ensure_schema(engine: Engine) -> int:
    """Create or upgrade every table; idempotent, safe to call from many processes.

    Returns the schema version now in place. Each migration step above version 1
    is an entry in ``MIGRATIONS`` and runs once, in order.
    """
    check_connection(engine)
    try:
        with engine.begin() as conn:
            if is_postgres(conn):
                # Two processes starting together must not race on CREATE TABLE.
                conn.execute(text("SELECT pg_advisory_xact_lock(7250001)"))
            metadata.create_all(conn, checkfirst=True)
            current = conn.execute(select(schema.schema_version.c.version).order_by(
                schema.schema_version.c.version.desc()).limit(1)).scalar()
            if current is None:
                # Tables just created by create_all, or from sql/schema/: already the current version.
                conn.execute(insert(schema.schema_version).values(version=SCHEMA_VERSION, applied_at=utcnow()))
                current = SCHEMA_VERSION
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(version, []):
                    conn.execute(text(statement))
                conn.execute(insert(schema.schema_version).values(version=version, applied_at=utcnow()))
                current = version
            _load_seeds(conn)
    except OperationalError as exc:
        raise DatabaseUnavailable(f"cannot create schema: {str(exc.orig).strip()}") from exc
    return current


#: version -> SQL statements that upgrade the previous version in place.
MIGRATIONS: dict[int, list[str]] = {
    2: [  # covering index for the Coin page's history query
        "CREATE INDEX IF NOT EXISTS ix_staging_crypto_market_coin_history ON staging_crypto_market "
        "(id, snapshot_at, current_price, market_cap, total_volume)",
    ],
}


def _load_seeds(conn: Connection) -> None:
    """Reference tables are replaced from their CSV in sql/seeds/ (dbt-style seeds)."""
    with open(SEEDS_DIR / "ref_stablecoins.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    conn.execute(schema.ref_stablecoins.delete())
    if rows:
        conn.execute(insert(schema.ref_stablecoins), rows)


def schema_ddl(dialect_name: str) -> str:
    """The CREATE statements for a dialect, as written to sql/schema/<dialect>.sql."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}[dialect_name]
    parts = [
        f"-- Generated by `python -m pipeline schema --dialect {dialect_name}` from pipeline/schema.py.",
        f"-- Schema version {SCHEMA_VERSION}. Do not edit by hand: a test compares this file with the code.",
        "",
    ]
    for table in metadata.sorted_tables:
        parts.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";\n")
        for index in sorted(table.indexes, key=lambda i: i.name):
            parts.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";\n")
    return "\n".join(line.rstrip() for line in "\n".join(parts).splitlines()) + "\n"


# -- bulk upsert ------------------------------------------------------------------


def _conflict_clause(columns: Sequence[str], key: Sequence[str], table_name: str,
                     only_if_newer: str | None) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    if not updates:
        return f"ON CONFLICT ({', '.join(key)}) DO NOTHING"
    clause = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    if only_if_newer:
        clause += f" WHERE excluded.{only_if_newer} >= {table_name}.{only_if_newer}"
    return clause


def upsert_rows(conn: Connection, table, rows: Sequence[tuple], columns: Sequence[str],
                key: Sequence[str], *, only_if_newer: str | None = None) -> int:
    """Insert or update ``rows`` (tuples in ``columns`` order) keyed on ``key``.

    Callers de-duplicate on the key first: PostgreSQL refuses an ``ON CONFLICT DO
    UPDATE`` batch that touches one key twice. ``only_if_newer`` names a column
    that must not go backwards (an older replay never overwrites newer data).
    """
    if not rows:
        return 0
    conflict = _conflict_clause(columns, key, table.name, only_if_newer)
    cols = ", ".join(columns)
    if is_postgres(conn):
        dbapi = conn.connection.driver_connection
        temp = f"tmp_{table.name}"
        with dbapi.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp} (LIKE {table.name} INCLUDING DEFAULTS) "
                        f"ON COMMIT DELETE ROWS")
            cur.execute(f"TRUNCATE {temp}")
            copy_rows(cur, temp, columns, rows)
            cur.execute(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {temp} {conflict}")
        return len(rows)
    marks = ", ".join("?" for _ in columns)
    conn.connection.driver_connection.executemany(
        f"INSERT INTO {table.name} ({cols}) VALUES ({marks}) {conflict}", rows)
    return len(rows)


def copy_or_upsert(conn: Connection, table, rows: Sequence[tuple], columns: Sequence[str], key: Sequence[str],
                   *, time_column: str, time_range: tuple) -> int:
    """Like ``upsert_rows``, but on PostgreSQL a batch whose time range holds no rows yet
    (the common case: new snapshots, or a replay into an empty database) is COPied straight
    into the table, skipping the temporary table and the ON CONFLICT pass."""
    if not rows:
        return 0
    if is_postgres(conn):
        low, high = time_range
        taken = conn.exec_driver_sql(
            f"SELECT 1 FROM {table.name} WHERE {time_column} BETWEEN %(low)s AND %(high)s LIMIT 1",
            {"low": low, "high": high}).first()
        if taken is None:
            with conn.connection.driver_connection.cursor() as cur:
                copy_rows(cur, table.name, columns, rows)
            return len(rows)
    return upsert_rows(conn, table, rows, columns, key)


def ensure_month_partitions(conn: Connection, table_name: str, months: Sequence[str]) -> None:
    """Create the monthly partitions (``YYYY-MM``) a PostgreSQL load needs; no-op on SQLite."""
    if not is_postgres(conn) or not months:
        return
    for month in months:
        year, mon = (int(part) for part in month.split("-"))
        start = f"{year:04d}-{mon:02d}-01"
        end = f"{year + (mon == 12):04d}-{mon % 12 + 1:02d}-01"
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {table_name}_{year:04d}_{mon:02d} PARTITION OF {table_name} "
            f"FOR VALUES FROM ('{start}') TO ('{end}')")


def copy_rows(cursor, table_name: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """COPY tuples into a table: psycopg 3 ``copy`` + ``write_row``, or psycopg2 CSV."""
    cols = ", ".join(columns)
    if hasattr(cursor, "copy"):  # psycopg 3
        with cursor.copy(f"COPY {table_name} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(["\\N" if v is None else v for v in row])
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table_name} ({cols}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)


def dumps_json(value) -> str | None:
    """Compact JSON for list/dict columns (sparkline, market_cap_percentage)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))
