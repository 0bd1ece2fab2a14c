"""The Compare page's daily closes are read from one index (``schema.COMPARE_DAILY_INDEX``), never from
the rollup's rows, which lie one coin-day to a heap page: after a full gold rebuild PostgreSQL has
the table vacuumed so the read is index-only with no heap fetch, SQLite plans it on the covering index;
a database made before the index has it after its next start. The coins are asked for as an IN list
(``dashboard.data._any_of``), which PostgreSQL can read from the index alone."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from dashboard import data
from pipeline.db import ensure_schema, make_engine
from pipeline.gold import build_gold
from pipeline.schema import COMPARE_DAILY_INDEX
from tests.integration.test_rollups import COINS, add_snapshot, engine  # noqa: F401 (fixture)


def compare_daily_sql(conn) -> str:
    """The Compare page's "max" read of the daily rollup, as the page sends it, with its values inlined."""
    (statement,) = data._compare_rollup_statements(tuple(COINS), "daily", None)
    return str(statement.compile(conn, compile_kwargs={"literal_binds": True}))


@pytest.fixture
def rebuilt(engine):  # noqa: F811 (the fixture's name)
    for n in range(90):  # three coins every 20 minutes for 30 hours
        add_snapshot(engine, n)
    build_gold(engine)  # a full rebuild, as replay and prune do
    return engine


def test_the_compare_pages_daily_read_never_touches_the_rollups_rows(rebuilt):
    with rebuilt.connect() as conn:
        sql = compare_daily_sql(conn)
        # an IN list: PostgreSQL plans "id = a OR id = b ..." as a bitmap of index scans, which reads the rows
        assert " IN (" in sql and " OR " not in sql, sql
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: make the planner show its index path
            conn.exec_driver_sql("SET enable_bitmapscan = off")
            (plan,) = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").scalar()
            plan = plan if isinstance(plan, dict) else json.loads(plan)[0]
            node = plan["Plan"]
            assert node["Node Type"] == "Index Only Scan" and node["Index Name"] == COMPARE_DAILY_INDEX.name
            assert node["Heap Fetches"] == 0  # vacuumed after the rebuild: no row read from the table
            assert node["Actual Rows"] == len(conn.exec_driver_sql(sql).all()) > 0
        else:
            details = " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert f"USING COVERING INDEX {COMPARE_DAILY_INDEX.name}" in details, details


def test_a_database_made_before_the_index_gets_it_on_its_next_start(engine):  # noqa: F811 (the fixture's name)
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {COMPARE_DAILY_INDEX.name}"))
    make_engine.cache_clear()
    ensure_schema(engine)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            found = conn.execute(text("SELECT 1 FROM pg_indexes WHERE indexname = :n"), {"n": COMPARE_DAILY_INDEX.name})
        else:
            found = conn.execute(
                text("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = :n"), {"n": COMPARE_DAILY_INDEX.name}
            )
        assert found.first() is not None
