"""Bulk loads from Arrow, on both databases: an Arrow table and the same rows as tuples leave
identical silver; overlaps upsert (last row of a key wins, existing rows updated, a new time
range appended); NULL, NaN, NUL, micro-cap prices and microseconds survive exactly; the load
is part of the caller's transaction."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
from sqlalchemy import select, text

from pipeline.arrow_load import arrow_schema
from pipeline.db import copy_or_upsert, copy_rows, ensure_month_partitions, ensure_schema, make_engine, upsert_rows
from pipeline.schema import staging_coin_history, staging_crypto_market, staging_sparkline
from pipeline.silver import load
from pipeline.silver.transform import SILVER_COLUMNS

T0 = datetime(2026, 3, 1, 12, 0, 0, 123_456)
SCHEMA = arrow_schema(staging_crypto_market, SILVER_COLUMNS)
KEY = ["id", "snapshot_at"]


def silver_row(coin: str, at: datetime, price: float | None, **changes: object) -> dict[str, object]:
    """One silver row with every column set (or NULL where the API may leave it out)."""
    row: dict[str, object] = {}
    for field in SCHEMA:
        kind = field.type
        if pa.types.is_string(kind):
            row[field.name] = f"{field.name}-{coin}"
        elif pa.types.is_timestamp(kind):
            row[field.name] = at - timedelta(seconds=7, microseconds=1)
        elif pa.types.is_boolean(kind):
            row[field.name] = False
        elif pa.types.is_integer(kind):
            row[field.name] = 7
        else:
            row[field.name] = 1234.5678901234567
    row.update(id=coin, snapshot_at=at, run_id=f"run-{at:%H%M%S%f}", current_price=price, max_supply=None)
    row.update(changes)
    return row


def as_tuples(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [tuple(row[c] for c in SILVER_COLUMNS) for row in rows]


def as_arrow(rows: list[dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def silver(engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(staging_crypto_market).order_by(*KEY)).all()]


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    ensure_schema(engine)
    with engine.begin() as conn:
        ensure_month_partitions(conn, staging_crypto_market.name, ["2026-03"])
    return engine


def odd_rows() -> list[dict[str, object]]:
    return [
        silver_row("micro", T0, 1e-12, market_cap=3.3e-7, total_volume=0.0),
        silver_row("bit\x00coin", T0, 65_000.123456789, name="Bit\x00coin", symbol="b\x00"),
        silver_row("nulls", T0, None, symbol=None, market_cap_rank=None, stale_record=None, ath_date=None),
        silver_row("micro", T0 + timedelta(microseconds=1), 2.5e-12),
        silver_row("tiny-time", T0.replace(microsecond=1), 1.0),
    ]


def test_arrow_and_tuples_leave_identical_rows(engine):
    rows = odd_rows()
    with engine.begin() as conn:
        assert load.load_market_rows(conn, as_tuples(rows)) == len(rows)
    from_tuples = silver(engine)
    with engine.begin() as conn:
        conn.execute(staging_crypto_market.delete())
        assert load.load_market_rows(conn, as_arrow(rows)) == len(rows)
    assert silver(engine) == from_tuples
    assert len(from_tuples) == len(rows)


def test_values_survive_exactly(engine):
    with engine.begin() as conn:
        load.load_market_rows(conn, as_arrow(odd_rows()))
    got = {(r[0], r[1]): dict(zip(SILVER_COLUMNS, r, strict=True)) for r in silver(engine)}
    assert got[("micro", T0)]["current_price"] == 1e-12
    assert got[("micro", T0)]["market_cap"] == 3.3e-7
    assert got[("micro", T0 + timedelta(microseconds=1))]["current_price"] == 2.5e-12
    assert got[("micro", T0)]["high_24h"] == 1234.5678901234567  # double precision, not float4
    nul = got[("bitcoin", T0)]  # NUL stripped from the key too: the same silver on both databases
    assert (nul["name"], nul["symbol"]) == ("Bitcoin", "b")
    nulls = got[("nulls", T0)]
    assert [nulls[c] for c in ("current_price", "symbol", "market_cap_rank", "stale_record", "ath_date")] == [None] * 5
    assert got[("tiny-time", T0.replace(microsecond=1))]["last_updated"] == T0.replace(microsecond=1) - timedelta(
        seconds=7, microseconds=1
    )
    if engine.dialect.name == "sqlite":  # SQLAlchemy's own text format, so comparisons see one format
        with engine.connect() as conn:
            stored = conn.exec_driver_sql(
                "SELECT snapshot_at, last_updated FROM staging_crypto_market WHERE id = 'tiny-time'"
            ).one()
        assert tuple(stored) == ("2026-03-01 12:00:00.000001", "2026-03-01 11:59:53.000000")


def test_nan_becomes_null(engine):
    row = silver_row("nan", T0, math.nan, market_cap=math.nan)
    with engine.begin() as conn:
        load.load_market_rows(conn, as_arrow([row]))
    with engine.connect() as conn:
        got = conn.execute(select(staging_crypto_market.c.current_price, staging_crypto_market.c.market_cap)).one()
    assert tuple(got) == (None, None)


@pytest.mark.parametrize("make", [as_arrow, as_tuples], ids=["arrow", "tuples"])
def test_overlap_updates_existing_and_appends_new_range(engine, make):
    first = [silver_row("a", T0, 1.0), silver_row("b", T0, 2.0)]
    later = T0 + timedelta(minutes=5)
    overlap = [
        silver_row("a", T0, 10.0),  # existing row: updated
        silver_row("c", T0, 3.0),  # new coin at an existing time
        silver_row("a", later, 11.0),  # new time in the same batch: appended
    ]
    with engine.begin() as conn:
        load.load_market_rows(conn, make(first))
        load.load_market_rows(conn, make(overlap))
    prices = {(r[0], r[1]): r[SILVER_COLUMNS.index("current_price")] for r in silver(engine)}
    assert prices == {("a", T0): 10.0, ("b", T0): 2.0, ("c", T0): 3.0, ("a", later): 11.0}


def test_a_key_twice_in_one_arrow_batch_keeps_the_last(engine):
    """Both paths: the straight COPY into an empty range, and the upsert over existing rows."""
    twice = [silver_row("a", T0, 1.0), silver_row("b", T0, 2.0), silver_row("a", T0, 3.0)]
    with engine.begin() as conn:
        assert load.load_market_rows(conn, as_arrow(twice)) in (2, 3)
    assert {(r[0], r[SILVER_COLUMNS.index("current_price")]) for r in silver(engine)} == {("a", 3.0), ("b", 2.0)}
    again = [silver_row("a", T0, 4.0), silver_row("a", T0, 5.0)]
    with engine.begin() as conn:
        load.load_market_rows(conn, as_arrow(again))
    assert {(r[0], r[SILVER_COLUMNS.index("current_price")]) for r in silver(engine)} == {("a", 5.0), ("b", 2.0)}


def test_copy_or_upsert_reads_the_time_range_and_column_order_is_free(engine):
    """An Arrow table may hold its columns in any order (and extra ones): they are matched by name."""
    table = as_arrow([silver_row("a", T0, 1.0)])
    shuffled = table.select(list(reversed(table.column_names))).append_column("extra", pa.array([1]))
    with engine.begin() as conn:
        copy_or_upsert(conn, staging_crypto_market, shuffled, SILVER_COLUMNS, KEY, time_column="snapshot_at")
    assert [r[:2] for r in silver(engine)] == [("a", T0)]


def test_the_load_is_part_of_the_callers_transaction(engine):
    with pytest.raises(RuntimeError), engine.begin() as conn:
        load.load_market_rows(conn, as_arrow(odd_rows()))
        raise RuntimeError("a later step of the batch failed")
    assert silver(engine) == []
    with engine.begin() as conn:  # and the connection is usable again (no savepoint or COPY left open)
        load.load_market_rows(conn, as_arrow(odd_rows()))
    assert len(silver(engine)) == len(odd_rows())


def test_sparklines_from_arrow_keep_the_newest_per_coin(engine):
    older, newer = T0, T0 + timedelta(hours=1)
    rows = pa.table(
        {
            "id": ["a", "a", "b"],
            "snapshot_at": pa.array([newer, older, older], pa.timestamp("us")),
            "run_id": ["new", "old", "old"],
            "sparkline_7d": ["[2]", "[1]", "[3]"],
        }
    )
    with engine.begin() as conn:
        load.load_sparklines(conn, rows)
        load.load_sparklines(conn, rows.slice(1, 1))  # an older replay never replaces a newer one
    with engine.connect() as conn:
        got = conn.execute(select(staging_sparkline.c.id, staging_sparkline.c.run_id).order_by("id")).all()
    assert [tuple(r) for r in got] == [("a", "new"), ("b", "old")]


def test_a_sparkline_batch_replaces_only_coins_whose_stored_one_is_not_newer(engine):
    def batch(rows: list[tuple[str, datetime, str]]) -> pa.Table:
        return pa.table(
            {
                "id": [r[0] for r in rows],
                "snapshot_at": pa.array([r[1] for r in rows], pa.timestamp("us")),
                "run_id": [r[2] for r in rows],
                "sparkline_7d": [f"[{r[2]}]" for r in rows],
            }
        )

    later = T0 + timedelta(hours=2)
    with engine.begin() as conn:
        load.load_sparklines(conn, batch([("kept", later, "stored"), ("old", T0, "stored"), ("same", T0, "stored")]))
    with engine.begin() as conn:
        load.load_sparklines(
            conn,
            batch(
                [
                    ("kept", T0 + timedelta(hours=1), "replay"),  # older than the stored one: not written
                    ("old", T0 + timedelta(hours=1), "run"),  # newer: replaces it
                    ("same", T0, "run"),  # the same time: the later load wins, as an upsert's
                    ("new", T0, "run"),  # a coin not stored yet
                ]
            ),
        )
    with engine.connect() as conn:
        got = conn.execute(select(staging_sparkline.c.id, staging_sparkline.c.run_id).order_by("id")).all()
    assert [tuple(r) for r in got] == [("kept", "stored"), ("new", "run"), ("old", "run"), ("same", "run")]


def test_coin_history_from_arrow_matches_tuples(engine):
    tuples = [("a", T0, "r1", 1e-12, None, 5.0), ("a", T0, "r2", 2e-12, 3.0, 6.0), ("b", T0, "r1", 1.0, 2.0, 3.0)]
    columns = ["id", "ts", "run_id", "price", "market_cap", "total_volume"]
    arrow = pa.table(
        {name: [row[i] for row in tuples] for i, name in enumerate(columns)},
    ).cast(
        pa.schema(
            [
                ("id", pa.string()),
                ("ts", pa.timestamp("us")),
                ("run_id", pa.string()),
                ("price", pa.float64()),
                ("market_cap", pa.float64()),
                ("total_volume", pa.float64()),
            ]
        )
    )
    results = []
    for rows in (tuples, arrow):
        with engine.begin() as conn:
            conn.execute(staging_coin_history.delete())
            assert load.load_coin_history(conn, rows, provider="coingecko") == 2
        with engine.connect() as conn:
            results.append([tuple(r) for r in conn.execute(select(staging_coin_history).order_by("id")).all()])
    assert results[0] == results[1]
    assert results[0][0][3] == 2e-12


def test_upsert_rows_only_if_newer_from_arrow(engine):
    def sparkline(at: datetime, run: str) -> pa.Table:
        return pa.table(
            {"id": ["a"], "snapshot_at": pa.array([at], pa.timestamp("us")), "run_id": [run], "sparkline_7d": ["[]"]}
        )

    columns = ["id", "snapshot_at", "run_id", "sparkline_7d"]
    with engine.begin() as conn:
        upsert_rows(conn, staging_sparkline, sparkline(T0, "new"), columns, ["id"], only_if_newer="snapshot_at")
        upsert_rows(
            conn, staging_sparkline, sparkline(T0 - timedelta(1), "old"), columns, ["id"], only_if_newer="snapshot_at"
        )
    with engine.connect() as conn:
        assert conn.execute(text("SELECT run_id FROM staging_sparkline")).scalar() == "new"


def test_copy_rows_into_a_table_outside_the_schema_casts_like_a_schema_table(engine):
    """The benchmark's ceiling: a bare table with silver's columns; Arrow's int64 rank still
    arrives as PostgreSQL's integer because ``like`` names the types."""
    if engine.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    table = as_arrow(odd_rows())
    table = table.set_column(
        SILVER_COLUMNS.index("market_cap_rank"), "market_cap_rank", table.column("market_cap_rank").cast(pa.int64())
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bare (LIKE staging_crypto_market)")
        with conn.connection.driver_connection.cursor() as cur:
            copy_rows(cur, "bare", SILVER_COLUMNS, table, like=staging_crypto_market)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*), sum(market_cap_rank) FROM bare").one() == (5, 28)


@pytest.mark.postgres
def test_sparklines_are_stored_uncompressed_inline_on_a_new_and_an_upgraded_database(postgres_url):
    """PostgreSQL keeps a ~3 kB sparkline row as it is (schema.SPARKLINE_STORAGE), in silver and in
    the mart: created so, and a version-6 database gains it; the values read back the same."""

    def target(engine) -> list[list[str] | None]:
        with engine.connect() as conn:
            found = "SELECT relname, reloptions FROM pg_class WHERE relname IN ('staging_sparkline', 'crypto_analytics_mart')"
            return [options for _, options in sorted(conn.execute(text(found)).all())]

    engine = make_engine(postgres_url)
    ensure_schema(engine)
    assert target(engine) == [["toast_tuple_target=8160"]] * 2
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE staging_sparkline RESET (toast_tuple_target)"))
        conn.execute(text("ALTER TABLE crypto_analytics_mart RESET (toast_tuple_target)"))
        conn.execute(text("UPDATE schema_version SET version = 6 WHERE version = 7"))
    assert target(engine) == [None, None]
    assert ensure_schema(engine) == 7
    assert target(engine) == [["toast_tuple_target=8160"]] * 2
    text_3kb = "[" + ",".join(f"{1234.5678901234 + i / 7:.10f}" for i in range(168)) + "]"
    rows = pa.table(
        {"id": ["a"], "snapshot_at": pa.array([T0], pa.timestamp("us")), "run_id": ["r"], "sparkline_7d": [text_3kb]}
    )
    with engine.begin() as conn:
        load.load_sparklines(conn, rows)
    with engine.connect() as conn:
        assert conn.execute(select(staging_sparkline.c.sparkline_7d)).scalar() == text_3kb
        # stored inline: nothing went to the TOAST table
        toast = conn.execute(
            text("SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'staging_sparkline'")
        ).scalar()
        assert conn.execute(text(f"SELECT count(*) FROM {toast}")).scalar() == 0
