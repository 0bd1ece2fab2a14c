"""Which bulk-load path is fastest from an Arrow table? Measured side by side in one run.

    .venv/bin/python -m benchmarks.load_paths [--rows 1000000] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Builds ``--rows`` synthetic silver rows (the staging_crypto_market columns and types) as one
Arrow table, then loads it by each path into PostgreSQL (an unindexed table, and the real
partitioned table with its key and indexes, empty) and into SQLite (the real table, empty
file), printing rows/s per path. The ADBC paths need ``pip install adbc-driver-postgresql
adbc-driver-sqlite`` (they are skipped when absent). Wall time includes everything done
from the Arrow table on (building tuples, encoding, COPY, commit).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import arrow_load
from pipeline.db import copy_rows, ensure_month_partitions, ensure_schema, make_engine, text_positions
from pipeline.schema import staging_crypto_market
from pipeline.silver.transform import SILVER_COLUMNS

TABLE = staging_crypto_market.name


def synthetic(rows: int, seed: int = 7) -> Any:
    """``rows`` silver rows: 2,000 coins per snapshot, snapshots 5 minutes apart, ~10 % nulls in the
    nullable numbers, micro-cap prices down to 1e-12."""
    rng = np.random.default_rng(seed)
    coins = min(2_000, rows)
    index = np.arange(rows)
    coin = index % coins
    start = np.datetime64("2026-01-01T00:00:00.000000", "us")
    snapshot = start + (index // coins).astype("timedelta64[m]") * 5 + np.timedelta64(123_456, "us")
    schema = arrow_load.arrow_schema(staging_crypto_market, SILVER_COLUMNS)
    arrays: dict[str, Any] = {}
    for field in schema:
        name, kind = field.name, field.type
        if name == "id":
            arrays[name] = pa.array([f"coin-{c}" for c in coin])
        elif name == "snapshot_at":
            arrays[name] = pa.array(snapshot)
        elif name == "run_id":
            arrays[name] = pa.array([f"run-{s}" for s in (index // coins)])
        elif name == "image":
            arrays[name] = pa.array(
                [f"https://coin-images.coingecko.com/coins/images/{c}/large/coin.png" for c in coin]
            )
        elif pa.types.is_string(kind):
            arrays[name] = pa.array([f"{name[:6]}-{c % 17}" for c in coin])
        elif pa.types.is_timestamp(kind):
            arrays[name] = pa.array(snapshot - rng.integers(0, 10**9, rows).astype("timedelta64[us]"))
        elif pa.types.is_boolean(kind):
            arrays[name] = pa.array(rng.random(rows) < 0.01)
        elif pa.types.is_integer(kind):
            arrays[name] = pa.array((coin + 1).astype(np.int32))
        else:
            values = 10.0 ** rng.uniform(-12, 12, rows)
            mask = rng.random(rows) < 0.1
            arrays[name] = pa.array(values, mask=mask)
    return pa.table(arrays, schema=schema)


def _tuples(data: Any) -> list[tuple[object, ...]]:
    """Tuples with datetimes (as transform.frame_to_tuples gives PostgreSQL today)."""
    return list(zip(*(column.to_pylist() for column in data.columns), strict=True))


def _timed(label: str, rows: int, work: Callable[[], None], results: dict[str, float]) -> None:
    """Run ``work`` once; keep the best rate per label (rounds alternate paths, so a busy moment
    of a shared machine does not decide between them)."""
    began = time.perf_counter()
    try:
        work()
    except Exception as exc:  # noqa: BLE001 - a path that cannot run is reported, not fatal
        print(f"{label:<72} failed: {str(exc).splitlines()[0][:120]}")
        return
    seconds = time.perf_counter() - began
    results[label] = max(results.get(label, 0.0), rows / seconds)
    print(f"{label:<72} {rows / seconds:>10,.0f} rows/s  ({seconds:.2f} s)", flush=True)


def postgres_paths(data: Any, admin_url: str, results: dict[str, float], rounds: int, tuples: bool) -> None:
    import psycopg

    name = f"bench_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    try:
        engine = make_engine(url)
        ensure_schema(engine)
        with engine.begin() as conn:
            months = sorted({f"{t:%Y-%m}" for t in arrow_load.time_range(data, "snapshot_at")})
            ensure_month_partitions(conn, TABLE, months)
        engine.dispose()
        cols = ", ".join(SILVER_COLUMNS)
        with psycopg.connect(url) as conn:
            conn.execute(f"CREATE TABLE bare (LIKE {TABLE})")  # columns and types only: no key, no index
            conn.commit()
        rows = data.num_rows
        positions = text_positions(staging_crypto_market, SILVER_COLUMNS)

        for target, label in (("bare", "unindexed"), (TABLE, "real table, key + indexes")):

            def text_copy(target: str = target) -> None:
                with psycopg.connect(url) as conn, conn.cursor() as cur:
                    copy_rows(cur, target, SILVER_COLUMNS, _tuples(data), text_positions=positions)

            def binary_write_row(target: str = target) -> None:
                types = ["text" if arrow_load.pa.types.is_string(f.type) else _pg_type(f.type) for f in data.schema]
                with psycopg.connect(url) as conn, conn.cursor() as cur:
                    with cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types(types)
                        for row in _tuples(data):
                            copy.write_row(row)

            def arrow_binary(target: str = target) -> None:
                with psycopg.connect(url) as conn, conn.cursor() as cur:
                    arrow_load.copy_arrow(cur, target, arrow_load.conform(data, staging_crypto_market, SILVER_COLUMNS))

            def adbc(target: str = target) -> None:
                import adbc_driver_postgresql.dbapi as adbc_pg

                with adbc_pg.connect(url) as conn:
                    with conn.cursor() as cur:
                        cur.adbc_ingest(target, data, mode="append")
                    conn.commit()

            def adbc_staged(target: str = target) -> None:
                """The only way ADBC fits one transaction: ingest (own connection, committed) into
                an UNLOGGED staging table, then INSERT ... SELECT in the caller's transaction."""
                import adbc_driver_postgresql.dbapi as adbc_pg

                with adbc_pg.connect(url) as conn:
                    with conn.cursor() as cur:
                        cur.execute(f"CREATE UNLOGGED TABLE IF NOT EXISTS staged (LIKE {TABLE})")
                        cur.execute("TRUNCATE staged")
                        cur.adbc_ingest("staged", data, mode="append")
                    conn.commit()
                with psycopg.connect(url) as conn:
                    conn.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM staged")
                    conn.execute("TRUNCATE staged")

            def arrow_binary_sorted(target: str = target) -> None:
                conformed = arrow_load.conform(data, staging_crypto_market, SILVER_COLUMNS)
                ordered = conformed.sort_by([("id", "ascending"), ("snapshot_at", "ascending")])
                with psycopg.connect(url) as conn, conn.cursor() as cur:
                    arrow_load.copy_arrow(cur, target, ordered)

            paths = [
                ("psycopg binary COPY from Arrow buffers", arrow_binary),
                ("psycopg binary COPY from Arrow buffers, rows in key order", arrow_binary_sorted),
                ("ADBC adbc_ingest (own connection)", adbc),
                ("ADBC into UNLOGGED staging + INSERT SELECT (one transaction)", adbc_staged),
            ]
            if tuples:
                paths += [
                    ("psycopg text COPY write_row (tuples)", text_copy),
                    ("psycopg binary COPY write_row (tuples)", binary_write_row),
                ]
            for round_no, (path, work) in [(r, p) for r in range(rounds) for p in paths]:
                if round_no and path.endswith("(tuples)"):
                    continue  # far behind: once is enough
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"TRUNCATE {target}")
                    conn.execute(f"VACUUM ANALYZE {target}")
                _timed(f"PostgreSQL {label}: {path}", rows, work, results)
                with psycopg.connect(url) as conn:
                    loaded = conn.execute(f"SELECT count(*) FROM {target}").fetchone()
                if loaded is None or loaded[0] not in (0, rows):
                    raise RuntimeError(f"{path} loaded {loaded} rows, expected {rows}")
    finally:
        make_engine.cache_clear()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_type(kind: Any) -> str:
    if arrow_load.pa.types.is_timestamp(kind):
        return "timestamp"
    if arrow_load.pa.types.is_boolean(kind):
        return "bool"
    if arrow_load.pa.types.is_integer(kind):
        return "int4"
    return "float8"


def sqlite_paths(data: Any, results: dict[str, float], rounds: int) -> None:
    import sqlite3

    rows = data.num_rows
    cols = ", ".join(SILVER_COLUMNS)
    marks = ", ".join("?" for _ in SILVER_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in SILVER_COLUMNS if c not in ("id", "snapshot_at"))
    upsert = f"INSERT INTO {TABLE} ({cols}) VALUES ({marks}) ON CONFLICT (id, snapshot_at) DO UPDATE SET {updates}"
    with tempfile.TemporaryDirectory() as folder:

        def fresh() -> Path:
            path = Path(folder) / f"{uuid.uuid4().hex}.db"
            engine = make_engine(f"sqlite:///{path}")
            ensure_schema(engine)
            engine.dispose()
            make_engine.cache_clear()
            return path

        def executemany(path: Path, statement: str, tuples: Callable[[], list[tuple[object, ...]]]) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA cache_size=-32768")
                conn.executemany(statement, tuples())

        def adbc(path: Path) -> None:
            import adbc_driver_sqlite.dbapi as adbc_sqlite

            with adbc_sqlite.connect(str(path)) as conn:
                with conn.cursor() as cur:
                    cur.adbc_ingest(TABLE, data, mode="append")
                conn.commit()

        def in_key_order() -> Any:
            conformed_table = arrow_load.conform(data, staging_crypto_market, SILVER_COLUMNS)
            return conformed_table.sort_by([("id", "ascending"), ("snapshot_at", "ascending")])

        conformed = lambda: arrow_load.sqlite_rows(arrow_load.conform(data, staging_crypto_market, SILVER_COLUMNS))  # noqa: E731
        paths: list[tuple[str, Callable[[Path], None]]] = [
            ("executemany upsert, column-built tuples", lambda p: executemany(p, upsert, conformed)),
            (
                "executemany upsert, column-built tuples in key order",
                lambda p: executemany(p, upsert, lambda: arrow_load.sqlite_rows(in_key_order())),
            ),
            (
                "executemany plain INSERT, column-built tuples",
                lambda p: executemany(p, f"INSERT INTO {TABLE} ({cols}) VALUES ({marks})", conformed),
            ),
            ("executemany upsert, tuples with datetimes", lambda p: executemany(p, upsert, lambda: _tuples(data))),
            ("ADBC adbc_ingest (own connection)", adbc),
        ]
        for path_label, work in [p for _ in range(rounds) for p in paths]:
            target = fresh()
            _timed(f"SQLite real table: {path_label}", rows, lambda target=target, work=work: work(target), results)
            with sqlite3.connect(target) as conn:
                sample = conn.execute(f"SELECT snapshot_at, typeof(snapshot_at) FROM {TABLE} LIMIT 1").fetchone()
            print(f"    stored snapshot_at: {sample}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip", choices=["postgres", "sqlite"], action="append", default=[])
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternate the paths this many times, keep each one's best"
    )
    parser.add_argument("--no-tuples", action="store_true", help="leave out the psycopg paths that build tuples")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    data = synthetic(args.rows)
    print(f"{args.rows:,} rows x {data.num_columns} columns built in {time.perf_counter() - began:.1f} s")
    results: dict[str, float] = {}
    if "postgres" not in args.skip:
        postgres_paths(data, args.pg, results, args.rounds, not args.no_tuples)
    if "sqlite" not in args.skip:
        sqlite_paths(data, results, args.rounds)
    print()
    print(f"best of {args.rounds} rounds, {args.rows:,} rows")
    print(f"{'path':<72} {'rows/s':>10}")
    for label, rate in results.items():
        print(f"{label:<72} {rate:>10,.0f}")


if __name__ == "__main__":
    main()
