"""Engine factory, schema creation and the bulk upsert for each dialect.

This is the only pipeline module that knows which database is in use:
SQLite gets WAL (the dashboard keeps reading while a run writes) and one
``executemany`` per batch; PostgreSQL gets COPY (binary, built from the buffers
when the rows come as a pyarrow Table: pipeline.arrow_load) straight into the
table for a new time range, else into a temporary table and one
``INSERT ... ON CONFLICT`` from it. Either way in the caller's transaction.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Column, Connection, Engine, String, Table, create_engine, event, insert, inspect, select, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

from pipeline import arrow_load, schema
from pipeline.config import Settings
from pipeline.errors import DatabaseError, DatabaseUnavailable, PipelineError, SchemaNotReady
from pipeline.schema import SCHEMA_VERSION, metadata
from pipeline.silver.migrations import provider_steps

_log = logging.getLogger(__name__)

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
    return datetime.now(UTC).replace(tzinfo=None)


def _sqlite_datetime(value: datetime) -> str:
    return value.strftime(SQLITE_DATETIME_FORMAT)


# Raw executemany binds datetimes in the same text format SQLAlchemy writes, so
# comparisons and joins on timestamp columns see one format.
sqlite3.register_adapter(datetime, _sqlite_datetime)


#: SQLite's page cache per connection (KiB): gold's sorts and joins and the upserts into a large key.
SQLITE_CACHE_KIB = 32_768
#: ... and while a replay appends silver batches (``batch_page_cache``).
SQLITE_BATCH_CACHE_KIB = 4_096


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute("PRAGMA busy_timeout=30000")
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.OperationalError:
        # A read-only database (file permissions, or a ``file:...?mode=ro`` URI) cannot
        # switch journal mode; reading it does not need to.
        pass
    cursor.close()


def _sqlite_file(database_url: str) -> str | None:
    """The file path of a SQLite URL (plain or ``file:`` URI form); None for in-memory."""
    path = database_url.split("///", 1)[-1]
    if path.startswith("file:"):
        path = path[len("file:") :].split("?", 1)[0]
    else:
        path = path.split("?", 1)[0]
    return None if not path or path == ":memory:" else path


def _sqlite_read_only_url(database_url: str, path: str | None) -> str | None:
    """The URL that can still read a SQLite file this process may not write (a read-only
    volume, another user's file), or None when the file is writable or absent.

    ``mode=ro`` reads it. When its folder is not writable either, SQLite cannot create the
    WAL index (``-shm``) it needs, so a file without a pending WAL is opened ``immutable``
    (no writer can be appending to a WAL that does not exist and cannot be created).
    """
    if not path or database_url.split("///", 1)[-1].startswith("file:"):
        return None
    file = Path(path)
    if not file.is_file():
        return None
    folder_writable = os.access(file.parent, os.W_OK)
    if folder_writable and os.access(file, os.W_OK):
        return None
    wal_present = Path(f"{file}-wal").exists() and Path(f"{file}-shm").exists()
    option = "mode=ro" if folder_writable or wal_present else "immutable=1"
    return f"sqlite:///file:{quote(str(file.resolve()))}?{option}&uri=true"


@lru_cache(maxsize=8)
def make_engine(database_url: str) -> Engine:
    """One engine per URL per process (engines own connection pools).

    SQLite also accepts the URI form, e.g. ``sqlite:///file:/data/warehouse.db?mode=ro&uri=true``
    for a read-only connection.
    """
    if database_url.startswith("sqlite"):
        path = _sqlite_file(database_url)
        if path and "mode=ro" not in database_url and "immutable=" not in database_url:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(_sqlite_read_only_url(database_url, path) or database_url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(database_url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def is_postgres(conn_or_engine: Connection | Engine) -> bool:
    return bool(conn_or_engine.dialect.name == "postgresql")


def prepare_database(settings: Settings) -> Engine:
    """The engine for DATABASE_URL, with the schema created or upgraded (every writing command starts here)."""
    engine = make_engine(settings.database_url)
    ensure_schema(engine)
    return engine


def check_connection(engine: Engine) -> None:
    """Raise DatabaseUnavailable with a readable reason if the database cannot be opened."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(
            f"cannot open database {engine.url.render_as_string()}: {describe_db_error(exc)}"
        ) from exc


def ensure_schema(engine: Engine) -> int:
    """Create or upgrade every table; idempotent, safe to call from many processes.

    Returns the schema version now in place. Each migration step above version 1
    is an entry in ``MIGRATIONS`` and runs once, in order. Then a column that
    ``pipeline.schema`` declares on a silver, reference or operations table and the
    database lacks is added (``add_missing_columns``: an additive change needs no numbered
    migration), and a gold table whose columns differ is re-created and rebuilt. On a
    database that is already current nothing is written (seeds only when they differ from
    their CSV).
    """
    check_connection(engine)
    try:
        with engine.begin() as conn:
            if is_postgres(conn):
                # Two processes starting together must not race on CREATE TABLE.
                conn.execute(text("SELECT pg_advisory_xact_lock(7250001)"))
            metadata.create_all(conn, checkfirst=True)
            current = conn.execute(
                select(schema.schema_version.c.version).order_by(schema.schema_version.c.version.desc()).limit(1)
            ).scalar()
            if current is None:
                # Tables just created by create_all, or from sql/schema/: already the current version.
                conn.execute(insert(schema.schema_version).values(version=SCHEMA_VERSION, applied_at=utcnow()))
                current = SCHEMA_VERSION
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for step in migration_steps(version, conn.dialect.name):
                    if callable(step):
                        step(conn)
                    else:
                        conn.execute(text(step))
                conn.execute(insert(schema.schema_version).values(version=version, applied_at=utcnow()))
                current = version
            add_missing_columns(conn)
            ensure_silver_indexes(conn)
            ensure_rollup_indexes(conn)
            rebuilt = _sync_gold_tables(conn)
            _load_seeds(conn)
    except SQLAlchemyError as exc:
        error = as_pipeline_error(exc)
        raise type(error)(f"cannot create or upgrade the schema: {describe_db_error(exc)}") from exc
    if rebuilt:
        from pipeline.gold import build_gold

        try:
            build_gold(engine)
        except SQLAlchemyError as exc:
            error = as_pipeline_error(exc)
            raise type(error)(
                f"cannot rebuild gold after changing {', '.join(rebuilt)}: {describe_db_error(exc)}"
            ) from exc
    return current


@contextmanager
def keys_built_after(conn: Connection, table: Table) -> Iterator[None]:
    """Fill an empty ``table`` in the caller's transaction with its indexes (and on PostgreSQL its
    primary key) built once after the rows are in, instead of entry by entry.

    Only for a table nobody can be reading rows from (empty when the transaction began): on
    PostgreSQL dropping the key locks the table until the commit. Measured on the hourly rollup of
    1M snapshots: PostgreSQL 12.5-15.4 s with the key and index kept, 7.4 s with both built after;
    SQLite (which cannot drop a primary key) 15.2 s, 9.8-12.5 s with the bucket index built after.
    An error inside rolls the whole transaction back, the dropped indexes with it.
    """
    postgres = is_postgres(conn)
    key = table.primary_key
    for index in table.indexes:
        index.drop(conn)
    if postgres and key.name:
        conn.exec_driver_sql(f"ALTER TABLE {table.name} DROP CONSTRAINT {key.name}")
    yield
    if postgres and key.name:
        columns = ", ".join(column.name for column in key.columns)
        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD CONSTRAINT {key.name} PRIMARY KEY ({columns})")
    for index in table.indexes:
        index.create(conn)


@contextmanager
def batch_page_cache(conn: Connection) -> Iterator[None]:
    """SQLite: a small page cache while one replayed silver batch is appended, the usual one after.

    A batch in key order touches each coin's last page of the key once; a larger cache only keeps
    pages of earlier batches, in the process that also holds the batches in flight. Measured on a
    replay of 1M records (4,000 runs, 10,000-record batches, one worker process): the loading process
    peaked at 225-227 MB instead of 261 MB, the process tree at 426-428 MB instead of 454-463 MB,
    silver 21.4-25.2 s against 22.7-24.8 s. Gold (big sorts and joins) keeps ``SQLITE_CACHE_KIB``.
    """
    if is_postgres(conn):
        yield
        return
    driver = _driver_connection(conn)
    before = driver.execute("PRAGMA cache_size").fetchone()[0]
    driver.execute(f"PRAGMA cache_size=-{SQLITE_BATCH_CACHE_KIB}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA cache_size={int(before)}")


@contextmanager
def commits_flushed_later(conn: Connection) -> Iterator[None]:
    """PostgreSQL: the commits of a batched silver load do not wait for their WAL to reach the disk.

    A load commits every ``flow.COMMIT_RECORDS`` rows so progress shows; each commit waited for
    a flush the server's WAL writer does anyway within ~0.6 s. Nothing is lost that matters: the
    run's own later commits (its snapshots ledger, gold, its run log) wait for theirs, and WAL is
    flushed in order, so each flushes every earlier commit with its own; a server crash before them
    fails the run, whose batches are loaded again from bronze. The database is never left
    inconsistent (unlike fsync off).
    Measured, 300,000 silver rows in 10,000-row commits (three rounds alternated): 4.53-5.47 s,
    4.17-4.85 s with this. SQLite's WAL mode with ``synchronous=NORMAL`` already commits so.
    """
    if not is_postgres(conn):
        yield
        return
    conn.exec_driver_sql("SET synchronous_commit = off")
    try:
        yield
    finally:
        if not conn.invalidated:  # a SET is undone with its transaction: RESET in one that commits
            conn.rollback()  # (the load committed what it keeps; a failed transaction runs nothing)
            conn.exec_driver_sql("RESET synchronous_commit")
            conn.commit()


#: PostgreSQL's memory per sort or hash of a full gold rebuild (``big_sorts``); the server's default
#: is 4 MB, so the window pass over every snapshot of the hourly rollup sorted on disk.
GOLD_REBUILD_WORK_MEM = "64MB"


def big_sorts(conn: Connection) -> None:
    """PostgreSQL: let this transaction's sorts use ``GOLD_REBUILD_WORK_MEM`` (a full gold rebuild sorts
    all of silver). Measured, build_gold over 1M silver rows, three rounds alternated: 8.75-10.09 s,
    7.55-8.54 s with 64 MB (256 MB: 7.74-8.60 s, no better)."""
    if is_postgres(conn):
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{GOLD_REBUILD_WORK_MEM}'")


def ensure_silver_indexes(conn: Connection) -> None:
    """Create silver's secondary indexes where they are missing: a replay into an empty database
    builds them after its load (``pipeline.silver.load.indexes_built_after``), and a process
    killed during that load leaves them to be made here."""
    for index in schema.staging_crypto_market.indexes:
        index.create(conn, checkfirst=True)


def ensure_rollup_indexes(conn: Connection) -> None:
    """Create the rollups' indexes where they are missing: one declared after a database was made
    (``schema.COMPARE_DAILY_INDEX``) is built on its next start, not only in new databases."""
    for table in schema.ROLLUP_TABLES:
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def analyze_after_bulk_change(engine: Engine) -> list[str]:
    """PostgreSQL: refresh the planner's statistics of every table but silver's history after a bulk
    change (replay, prune, import), so the next runs' plans fit the data; returns the tables analysed.

    Without statistics PostgreSQL reads a run's one-sided time ranges as a third of the table: a
    refresh after ``benchmarks.history_copies`` took 9.9 s at 10M silver rows (market_history and
    the daily rollup scanned), 0.8 s with these tables analysed (1.3 s of ANALYZE at 10M), which
    autovacuum would do only later, and never where it is off. Silver is left out: sampling its
    monthly partitions took 33 s at 10M and no run's plan changed with it (measured without its
    statistics: 0.9 s). SQLite keeps no statistics here: its plans are checked without them
    (tests/faults/test_orphan_snapshots.py).

    The tables in ``VACUUMED_AFTER_BULK_CHANGE`` are vacuumed as well (with their statistics).
    """
    if engine.dialect.name != "postgresql":
        return []
    vacuumed = [t.name for t in VACUUMED_AFTER_BULK_CHANGE]
    names = [
        t.name
        for t in schema.metadata.sorted_tables
        if t is not schema.staging_crypto_market and t.name not in vacuumed
    ]
    try:
        with engine.connect() as conn:
            autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.exec_driver_sql(f"ANALYZE {', '.join(names)}")
            autocommit.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(vacuumed)}")
    except SQLAlchemyError as exc:  # the data is written: slower plans are no reason to fail the run
        _log.warning("could not refresh the planner's statistics: %s", str(exc).splitlines()[0])
        return []
    return names + vacuumed


#: PostgreSQL: tables read through a covering index, vacuumed after a bulk change. An index-only
#: scan reads the heap for every row on a page not marked all-visible, which only VACUUM marks; the
#: rows a full rebuild wrote stay unmarked until autovacuum comes (or never, where it is off), and
#: the planner reads the heap instead. The daily coin rollup at 10M rows of history: 0.18 s of VACUUM.
VACUUMED_AFTER_BULK_CHANGE = (schema.coin_history_daily,)


def _sync_gold_tables(conn: Connection) -> list[str]:
    """Gold is derived: a gold table whose columns differ from ``pipeline.schema`` is dropped and
    re-created (no migration), in the caller's transaction. Returns the tables re-created; the
    caller rebuilds gold from silver after committing."""
    inspector = inspect(conn)
    rebuilt = []
    for table in schema.GOLD_TABLES:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        if present == {c.name for c in table.columns}:
            continue
        table.drop(conn, checkfirst=True)
        table.create(conn)
        rebuilt.append(table.name)
    return rebuilt


def missing_columns(conn: Connection, tables: Iterable[Table]) -> list[Column[Any]]:
    """The columns of ``tables`` (as ``pipeline.schema`` declares them) that the database lacks,
    in declaration order. A table the database lacks altogether is skipped (create_all makes it)."""
    wanted = list(tables)
    names = {table.name for table in wanted}
    present = {
        table: {column["name"] for column in columns}
        for (_, table), columns in inspect(conn).get_multi_columns(filter_names=list(names)).items()
    }
    return [
        column
        for table in wanted
        if table.name in present
        for column in table.columns
        if column.name not in present[table.name]
    ]


def add_missing_columns(conn: Connection) -> list[str]:
    """Add every declared column a silver, reference or operations table lacks (``ALTER TABLE ...
    ADD COLUMN``, typed by the dialect's own compiler), in the caller's transaction. Returns
    ``table.column`` of each column added.

    This is how an additive change reaches an existing database without a numbered migration:
    a new NULLable column (a derived column, say), or a NOT NULL one with a ``server_default``.
    A NOT NULL column without a server default, a primary-key or unique column, or a change to
    an existing column (type, key, rename) still needs a step in ``MIGRATIONS``: existing rows
    would have no value for it, and SQLite cannot add key columns in place. Gold tables are
    re-created instead (``_sync_gold_tables``).
    """
    gold = {table.name for table in schema.GOLD_TABLES}
    added = []
    for column in missing_columns(conn, [t for t in metadata.sorted_tables if t.name not in gold]):
        table = column.table.name
        if column.primary_key or column.unique or (not column.nullable and column.server_default is None):
            raise SchemaNotReady(
                f"{table}.{column.name} is missing and cannot be added in place (a key, unique, or NOT NULL "
                "without a server default): it needs a numbered migration in pipeline.db.MIGRATIONS"
            )
        spec = CreateColumn(column).compile(dialect=conn.dialect)
        exists = " IF NOT EXISTS" if is_postgres(conn) else ""  # PostgreSQL: under the advisory lock anyway
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN{exists} {spec}"))
        added.append(f"{table}.{column.name}")
    return added


#: Tables every command reads; check_schema insists on them.
REQUIRED_TABLES = ("schema_version", "pipeline_runs", "pipeline_lock", "crypto_analytics_mart")


def check_schema(engine: Engine) -> int:
    """The read-only counterpart of ``ensure_schema``: verify, never write.

    Returns the schema version in place. Raises DatabaseUnavailable when the
    database cannot be opened, and SchemaNotReady (saying how to fix it) when
    the tables are missing or older than this code, including a column that
    ``pipeline.schema`` declares and the database lacks (``ensure_schema`` adds
    it, or re-creates the gold table), so a read fails here and not mid-query.
    """
    check_connection(engine)
    how = "run `python -m pipeline schema --apply` (or any `python -m pipeline run`) to create or upgrade it"
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            missing = [t for t in REQUIRED_TABLES if t not in tables]
            if missing:
                raise SchemaNotReady(f"the database has no pipeline schema (missing {', '.join(missing)}): {how}")
            version = conn.execute(
                select(schema.schema_version.c.version).order_by(schema.schema_version.c.version.desc()).limit(1)
            ).scalar()
            absent = missing_columns(conn, metadata.sorted_tables)
    except SQLAlchemyError as exc:
        raise as_pipeline_error(exc) from exc
    if version is None:
        raise SchemaNotReady(f"the database schema has no version: {how}")
    if version < SCHEMA_VERSION:
        raise SchemaNotReady(
            f"the database schema is at version {version}, this pipeline needs version {SCHEMA_VERSION}: {how}"
        )
    if absent:
        names = ", ".join(f"{column.table.name}.{column.name}" for column in absent)
        raise SchemaNotReady(f"the database schema lacks column{'s' * (len(absent) > 1)} {names}: {how}")
    return int(version)


Migration = str | Callable[[Connection], None]

#: Columns that held text from the API (or a seed) as VARCHAR(n) up to schema version 2.
_UNBOUNDED_IN_V3 = {
    "staging_crypto_market": ("id", "symbol", "name"),
    "staging_sparkline": ("id",),
    "staging_coin_history": ("id",),
    "quarantine_crypto_market": ("record_id",),
    "crypto_analytics_mart": ("id", "symbol", "name"),
    "ref_stablecoins": ("id", "pegged_to"),
}


def _add_column_if_missing(table: str, column: str, sql_type: str) -> Callable[[Connection], None]:
    """SQLite has no ``ADD COLUMN IF NOT EXISTS``: look first (two processes may upgrade at once)."""

    def step(conn: Connection) -> None:
        if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))

    return step


#: (table, column, SQLite type) added in version 4.
_NEW_IN_V4 = (
    ("staging_crypto_market", "fetched_at", "DATETIME"),
    ("staging_crypto_market", "stale_record", "BOOLEAN"),
    ("staging_global_market", "fetched_at", "DATETIME"),
    ("staging_global_market", "usable", "BOOLEAN"),
    ("staging_global_market", "unusable_reason", "TEXT"),
)


#: version -> dialect ("*" for every dialect) -> steps that upgrade the previous version
#: in place: SQL text, or a callable taking the connection.
MIGRATIONS: dict[int, dict[str, list[Migration]]] = {
    2: {
        "*": [  # covering index for the Coin page's history query
            "CREATE INDEX IF NOT EXISTS ix_staging_crypto_market_coin_history ON staging_crypto_market "
            "(id, snapshot_at, current_price, market_cap, total_volume)",
        ]
    },
    3: {  # text from the API is unbounded (PostgreSQL enforced VARCHAR(n); SQLite never did); run notes
        "postgresql": [
            *(
                f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} TYPE TEXT" for c in columns)
                for table, columns in _UNBOUNDED_IN_V3.items()
            ),
            "ALTER TABLE pipeline_runs ADD COLUMN IF NOT EXISTS notes TEXT",
        ],
        "sqlite": [_add_column_if_missing("pipeline_runs", "notes", "TEXT")],
    },
    4: {  # data time vs fetch time, stale records, usable /global, the snapshots ledger (new tables: create_all)
        "postgresql": [_add_column_if_missing(t, c, k.replace("DATETIME", "TIMESTAMP")) for t, c, k in _NEW_IN_V4],
        "sqlite": [_add_column_if_missing(t, c, k) for t, c, k in _NEW_IN_V4],
        "*": [
            # Every snapshot already in silver was published before the gate existed.
            "INSERT INTO snapshots (snapshot_at, run_id, source, requested_coins, coin_count, status, decided_at) "
            "SELECT snapshot_at, min(run_id), min(source), NULL, count(*), 'published', min(snapshot_at) "
            "FROM staging_crypto_market WHERE snapshot_at NOT IN (SELECT snapshot_at FROM snapshots) "
            "GROUP BY snapshot_at",
        ],
    },
    6: {  # silver rows name their provider; coin history is keyed by it (pipeline.silver.migrations)
        "postgresql": list(provider_steps("postgresql")),
        "sqlite": list(provider_steps("sqlite")),
    },
    7: {  # sparklines stored as they are (schema.SPARKLINE_STORAGE); rows written from now on
        "postgresql": [
            f"ALTER TABLE {table} SET (" + ", ".join(f"{k} = {v}" for k, v in schema.SPARKLINE_STORAGE.items()) + ")"
            for table in ("staging_sparkline", "crypto_analytics_mart")
        ],
    },
}


def migration_steps(version: int, dialect_name: str) -> list[Migration]:
    """The steps that bring a database of ``version - 1`` to ``version`` on this dialect."""
    entry = MIGRATIONS.get(version, {})
    return [*entry.get("*", []), *entry.get(dialect_name, [])]


def _load_seeds(conn: Connection) -> None:
    """Reference tables follow their CSV in sql/seeds/ (dbt-style seeds).

    Written only when the table differs from the file, so starting a command on an
    up-to-date database writes nothing (a read-only database stays usable).
    """
    with open(SEEDS_DIR / "ref_stablecoins.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    wanted = {(row["id"], row["pegged_to"]) for row in rows}
    table = schema.ref_stablecoins
    present = conn.execute(select(table.c.id, table.c.pegged_to)).all()
    if len(present) == len(rows) and {tuple(r) for r in present} == wanted:
        return
    conn.execute(table.delete())
    if rows:
        conn.execute(insert(table), rows)


def schema_ddl(dialect_name: str) -> str:
    """The CREATE statements for a dialect, as written to sql/schema/<dialect>.sql."""
    from sqlalchemy.dialects.postgresql.base import PGDialect
    from sqlalchemy.dialects.sqlite.base import SQLiteDialect
    from sqlalchemy.engine.interfaces import Dialect

    dialects: dict[str, type[Dialect]] = {"postgresql": PGDialect, "sqlite": SQLiteDialect}
    dialect = dialects[dialect_name]()
    parts = [
        f"-- Generated by `python -m pipeline schema --dialect {dialect_name}` from pipeline/schema.py.",
        f"-- Schema version {SCHEMA_VERSION}. Do not edit by hand: a test compares this file with the code.",
        "",
    ]
    for table in metadata.sorted_tables:
        parts.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";\n")
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            parts.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";\n")
    return "\n".join(line.rstrip() for line in "\n".join(parts).splitlines()) + "\n"


# -- bulk upsert ------------------------------------------------------------------


def _conflict_clause(columns: Sequence[str], key: Sequence[str], table_name: str, only_if_newer: str | None) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    if not updates:
        return f"ON CONFLICT ({', '.join(key)}) DO NOTHING"
    clause = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    if only_if_newer:
        clause += f" WHERE excluded.{only_if_newer} >= {table_name}.{only_if_newer}"
    return clause


def _driver_connection(conn: Connection) -> Any:
    """The DBAPI connection under ``conn`` (sqlite3 or psycopg: untyped here)."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("the connection has no DBAPI connection (it was closed)")
    return driver


#: What the bulk functions take: tuples in ``columns`` order, or a pyarrow Table (or RecordBatch)
#: holding those columns (any order, types cast to the table's; see pipeline.arrow_load).
Rows = Sequence[tuple[Any, ...]] | Any


def _row_count(rows: Rows) -> int:
    if arrow_load.is_arrow(rows):
        table: Any = rows  # pyarrow is untyped
        return int(table.num_rows)
    return len(rows)


def _last_per_key(rows: Sequence[tuple[object, ...]], positions: Sequence[int]) -> list[tuple[object, ...]]:
    unique = {tuple(row[i] for i in positions): row for row in rows}
    return list(unique.values())


def upsert_rows(
    conn: Connection,
    table: Table,
    rows: Rows,
    columns: Sequence[str],
    key: Sequence[str],
    *,
    only_if_newer: str | None = None,
) -> int:
    """Insert or update ``rows`` (tuples in ``columns`` order, or a pyarrow Table) keyed on ``key``.

    Tuples: callers de-duplicate on the key first (PostgreSQL refuses an ``ON CONFLICT DO
    UPDATE`` batch that touches one key twice). An Arrow table is de-duplicated here, the
    last row of a key winning. ``only_if_newer`` names a column that must not go backwards
    (an older replay never overwrites newer data).
    """
    if not _row_count(rows):
        return 0
    if arrow_load.is_arrow(rows):
        rows = arrow_load.in_key_order(arrow_load.dedupe_last(arrow_load.conform(rows, table, columns), key), key)
    conflict = _conflict_clause(columns, key, table.name, only_if_newer)
    cols = ", ".join(columns)
    if is_postgres(conn):
        dbapi = _driver_connection(conn)
        temp = f"tmp_{table.name}"
        with dbapi.cursor() as cur:
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {temp} (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            cur.execute(f"TRUNCATE {temp}")
            copy_rows(cur, temp, columns, rows, text_positions=text_positions(table, columns))
            cur.execute(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {temp} {conflict}")
        return _row_count(rows)
    marks = ", ".join("?" for _ in columns)
    # SQLite would store a NUL, but the same bronze must give the same silver on both databases.
    tuples: Iterable[tuple[object, ...]]
    if arrow_load.is_arrow(rows):
        tuples = arrow_load.sqlite_rows(rows)
    else:
        tuples = without_nul(rows, text_positions(table, columns))
    _driver_connection(conn).executemany(f"INSERT INTO {table.name} ({cols}) VALUES ({marks}) {conflict}", tuples)
    return _row_count(rows)


def replace_unless_newer(
    conn: Connection, table: Table, rows: Any, columns: Sequence[str], *, key: str, time: str
) -> int:
    """PostgreSQL, a pyarrow Table: what ``upsert_rows(..., key=[key], only_if_newer=time)`` leaves, each
    row written once. The upsert COPies into a temporary table and inserts from there, so every byte
    is written twice; for wide rows (a whole market's sparklines: 17,000 texts of ~3 kB) the second
    write is a third of the load. Here the stored rows the batch replaces (same key, not newer) are
    deleted and the batch COPied straight in, less the keys whose stored row is newer.
    """
    rows = arrow_load.dedupe_last(arrow_load.conform(rows, table, columns), [key])
    if not rows.num_rows:
        return 0
    keys, times = rows.column(key).to_pylist(), rows.column(time).to_pylist()
    key_type = table.c[key].type.compile(dialect=conn.dialect)
    time_type = table.c[time].type.compile(dialect=conn.dialect)
    with _driver_connection(conn).cursor() as cur:
        cur.execute(
            f"DELETE FROM {table.name} AS stored USING unnest(%s::{key_type}[], %s::{time_type}[]) AS batch(k, t)"
            f" WHERE stored.{key} = batch.k AND stored.{time} <= batch.t",
            (keys, times),
        )
        cur.execute(f"SELECT {key} FROM {table.name} WHERE {key} = ANY(%s::{key_type}[])", (keys,))
        newer = [found for (found,) in cur.fetchall()]
        if newer:
            rows = arrow_load.without_values(rows, key, newer)
        copy_rows(cur, table.name, columns, rows, like=table)
    return int(rows.num_rows)


def copy_or_upsert(
    conn: Connection,
    table: Table,
    rows: Rows,
    columns: Sequence[str],
    key: Sequence[str],
    *,
    time_column: str,
    time_range: tuple[object, object] | None = None,
) -> int:
    """Like ``upsert_rows``, but on PostgreSQL a batch whose time range holds no rows yet
    (the common case: new snapshots, or a replay into an empty database) is COPied straight
    into the table, skipping the temporary table and the ON CONFLICT pass.

    ``time_range``: the batch's (min, max) of ``time_column``; read from the rows when None.
    Rows are expected unique on ``key``; a batch that is not (the straight COPY hits the
    primary key) is rolled back to a savepoint and upserted, its last row per key winning.
    """
    if not _row_count(rows):
        return 0
    if not is_postgres(conn):
        return upsert_rows(conn, table, rows, columns, key)
    if arrow_load.is_arrow(rows):
        rows = arrow_load.in_key_order(arrow_load.conform(rows, table, columns), key)
    if time_range is None:
        time_range = _time_range(rows, columns, time_column)
    low, high = time_range
    taken = conn.exec_driver_sql(
        f"SELECT 1 FROM {table.name} WHERE {time_column} BETWEEN %(low)s AND %(high)s LIMIT 1",
        {"low": low, "high": high},
    ).first()
    if taken is not None:
        return upsert_rows(conn, table, rows, columns, key)
    with _driver_connection(conn).cursor() as cur:
        cur.execute("SAVEPOINT copy_or_upsert")
        try:
            copy_rows(cur, table.name, columns, rows, text_positions=text_positions(table, columns))
        except DRIVER_ERRORS as exc:
            if _sqlstate(exc) != UNIQUE_VIOLATION:
                raise
            cur.execute("ROLLBACK TO SAVEPOINT copy_or_upsert")
            if not arrow_load.is_arrow(rows):
                rows = _last_per_key(rows, [list(columns).index(name) for name in key])
            return upsert_rows(conn, table, rows, columns, key)
        cur.execute("RELEASE SAVEPOINT copy_or_upsert")
    return _row_count(rows)


#: PostgreSQL's SQLSTATE for a duplicate key.
UNIQUE_VIOLATION = "23505"


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg 3 (``sqlstate``) or psycopg2 (``pgcode``) error."""
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code if isinstance(code, str) else None


def _time_range(rows: Rows, columns: Sequence[str], time_column: str) -> tuple[object, object]:
    if arrow_load.is_arrow(rows):
        return arrow_load.time_range(rows, time_column)
    times = [row[list(columns).index(time_column)] for row in rows]
    return min(times), max(times)  # datetimes (or their text), never mixed


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
            f"FOR VALUES FROM ('{start}') TO ('{end}')"
        )


def strip_nul(value: object) -> object:
    """``value`` without NUL characters if it is a str (PostgreSQL text cannot hold one); else as is."""
    if value.__class__ is str and "\x00" in value:
        return value.replace("\x00", "")
    return value


def without_nul(
    rows: Iterable[tuple[object, ...]], positions: Sequence[int] | None = None
) -> Iterator[tuple[object, ...]]:
    """The rows, with NUL removed from their str values; a row without any is passed through as is.

    ``positions``: the indexes that may hold text (the others are not looked at); None: all.
    Cheap: one ``in`` test per text value, a new tuple only for a row that had a NUL.
    """
    if positions is not None and not positions:
        yield from rows
        return
    if positions is None:
        values = None
    elif len(positions) == 1:
        only = positions[0]
        values = lambda row: (row[only],)  # noqa: E731 - itemgetter of one index returns no tuple
    else:
        values = itemgetter(*positions)
    for row in rows:
        for value in row if values is None else values(row):
            if value.__class__ is str and "\x00" in value:
                yield tuple(strip_nul(v) for v in row)
                break
        else:
            yield row


def text_positions(table: Table | str | None, columns: Sequence[str]) -> list[int] | None:
    """Indexes of ``columns`` that are text in ``table`` (a Table or a table name); None if unknown."""
    if isinstance(table, str):
        table = metadata.tables.get(table.removeprefix("tmp_"))
    if table is None:
        return None
    try:
        return [i for i, name in enumerate(columns) if isinstance(table.c[name].type, String)]
    except KeyError:
        return None


def copy_rows(
    cursor: Any,  # psycopg 3 or psycopg2: no common typed base
    table_name: str,
    columns: Sequence[str],
    rows: Iterable[tuple[object, ...]] | Any,
    *,
    text_positions: Sequence[int] | None = None,
    like: Table | None = None,
) -> None:
    """COPY rows into a table in the cursor's transaction.

    A pyarrow Table: binary COPY built from its buffers (pipeline.arrow_load), its columns
    cast to the types of ``like`` (default: the schema table named ``table_name``, a
    ``tmp_`` prefix removed; none: the Arrow types as they are). Tuples: psycopg 3
    ``copy`` + ``write_row``, or psycopg2 CSV. No NUL ever reaches the server (it refuses the
    whole COPY for one): NUL is stripped from text, at ``text_positions`` only when given.
    """
    if arrow_load.is_arrow(rows):
        known = like if like is not None else metadata.tables.get(table_name.removeprefix("tmp_"))
        data = arrow_load.conform(rows, known, columns)
        if hasattr(cursor, "copy"):  # psycopg 3
            arrow_load.copy_arrow(cursor, table_name, data)
        else:
            data = arrow_load.copy_order(data)
            cursor.copy_expert(arrow_load.copy_statement(table_name, data), arrow_load.CopyReader(data))
        return
    rows = without_nul(rows, text_positions)
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


# -- database errors as one line --------------------------------------------------

#: SQLite errors that mean the file cannot be used right now, not that a statement is wrong.
_SQLITE_UNAVAILABLE = (
    "unable to open",
    "database is locked",
    "disk i/o error",
    "database or disk is full",
    "not a database",
    "readonly database",
    "cannot operate on a closed database",
)
MAX_ERROR_LINE = 300


def describe_db_error(exc: BaseException) -> str:
    """The first line of the driver's message: never the SQL statement, never its parameters.

    SQLAlchemy's own text appends ``[SQL: ...]`` and ``[parameters: ...]`` (a gold build's
    statement is dozens of lines); PostgreSQL's message goes on with ``LINE 1: <statement>``,
    ``DETAIL`` and ``HINT`` lines. Only the first line of the driver error is kept.
    """
    source = exc
    seen: set[int] = set()
    while isinstance(orig := getattr(source, "orig", None), BaseException) and id(source) not in seen:
        seen.add(id(source))
        source = orig
    message = str(source)
    if isinstance(source, SQLAlchemyError):  # no driver error underneath: SQLAlchemy's own message
        message = message.split("[SQL:", 1)[0].split("(Background on this error", 1)[0]
    lines = [line.strip() for line in message.replace("\x00", "").splitlines() if line.strip()]
    line = lines[0] if lines else type(source).__name__
    if len(line) > MAX_ERROR_LINE:
        line = line[: MAX_ERROR_LINE - 1] + "…"
    return line


def is_connection_problem(exc: BaseException) -> bool:
    """True when the database cannot be reached or used at all (server gone, connection
    dropped, file unopenable or locked), False when a statement itself failed."""
    if isinstance(exc, DisconnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None)
    driver = orig if isinstance(orig, BaseException) else exc
    if isinstance(driver, sqlite3.Error):  # sqlite3.InterfaceError is a bad parameter, not a lost file
        return isinstance(driver, sqlite3.OperationalError) and any(
            phrase in str(driver).lower() for phrase in _SQLITE_UNAVAILABLE
        )
    try:
        import psycopg

        if isinstance(driver, (psycopg.OperationalError, psycopg.InterfaceError)):
            return True
    except ImportError:  # pragma: no cover - psycopg is in requirements.txt
        pass
    return isinstance(exc, (OperationalError, InterfaceError)) and not isinstance(driver, sqlite3.Error)


def as_pipeline_error(exc: BaseException) -> BaseException:
    """A database error as the PipelineError a person reads: DatabaseUnavailable for
    connection-level problems, DatabaseError for the rest, both exit code 5, with
    ``describe_db_error``'s one line. Anything else is returned unchanged.

    Used where a run fails (``raise as_pipeline_error(exc) from exc``) so that the run
    log's error_message and the CLI's line never carry the SQL.
    """
    if isinstance(exc, PipelineError) or not isinstance(exc, (SQLAlchemyError, *DRIVER_ERRORS)):
        return exc
    line = describe_db_error(exc)
    if is_connection_problem(exc):
        error: PipelineError = DatabaseUnavailable(f"database unavailable: {line}")
    else:
        error = DatabaseError(f"database error: {line}")
    error.__cause__ = exc
    return error
