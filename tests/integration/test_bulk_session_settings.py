"""PostgreSQL: a batched silver load commits without waiting for each commit's WAL flush, and a full
gold rebuild sorts in memory; both settings stay with the work that asked for them (a pooled connection
goes back with the server's defaults, after a load that failed too), and what the load committed stays."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from pipeline import flow
from pipeline.db import GOLD_REBUILD_WORK_MEM, big_sorts, commits_flushed_later, make_engine
from pipeline.flow import replay, run_pipeline
from pipeline.gold import build_gold
from tests.conftest import make_settings


def show(conn, name: str) -> str:
    return str(conn.execute(text(f"SHOW {name}")).scalar())


def test_a_load_commits_without_waiting_for_the_flush_and_gives_the_setting_back(postgres_url):
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        default = show(conn, "synchronous_commit")
        assert default == "on"
        conn.execute(text("CREATE TABLE loaded (n integer)"))
        conn.commit()
        with commits_flushed_later(conn):
            assert show(conn, "synchronous_commit") == "off"
            conn.execute(text("INSERT INTO loaded VALUES (1)"))
            conn.commit()
            assert show(conn, "synchronous_commit") == "off"  # for every commit of the load, not the first
            conn.execute(text("INSERT INTO loaded VALUES (2)"))
            conn.commit()
        assert show(conn, "synchronous_commit") == default
    with engine.connect() as conn:  # the pooled connection, as the next user gets it
        assert show(conn, "synchronous_commit") == default
        assert conn.execute(text("SELECT count(*) FROM loaded")).scalar() == 2


def test_a_load_that_failed_gives_the_setting_back_and_keeps_what_it_committed(postgres_url):
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE loaded (n integer PRIMARY KEY)"))
        conn.commit()
    with pytest.raises(Exception, match="duplicate key"), engine.connect() as conn, commits_flushed_later(conn):
        conn.execute(text("INSERT INTO loaded VALUES (1)"))
        conn.commit()
        conn.execute(text("INSERT INTO loaded VALUES (2)"))
        conn.execute(text("INSERT INTO loaded VALUES (2)"))  # the transaction is aborted here
    with engine.connect() as conn:
        assert show(conn, "synchronous_commit") == "on"
        assert conn.execute(text("SELECT n FROM loaded")).scalars().all() == [1]


def test_a_replay_loads_silver_without_waiting_for_flushes_and_publishes_durably(postgres_url, tmp_path, monkeypatch):
    settings = make_settings(postgres_url, tmp_path / "data")
    run_pipeline(settings, source="sample")
    seen_by_loads: list[str] = []
    seen_by_gold: list[str] = []
    load_batch = flow.load_batch

    def watched(conn, prepared):
        seen_by_loads.append(show(conn, "synchronous_commit"))
        return load_batch(conn, prepared)

    def on_execute(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CRYPTO_ANALYTICS_MART"):
            cursor.execute("SHOW synchronous_commit")
            seen_by_gold.append(cursor.fetchone()[0])

    monkeypatch.setattr(flow, "load_batch", watched)
    engine = make_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        result = replay(settings)
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert result.silver_rows > 0
    assert seen_by_loads and set(seen_by_loads) == {"off"}
    assert seen_by_gold == ["on"]  # the publish's commit flushes the load's commits with its own


def test_a_full_gold_rebuild_sorts_with_more_memory_and_a_run_does_not(postgres_url, tmp_path):
    settings = make_settings(postgres_url, tmp_path / "data")
    run_pipeline(settings, source="sample")
    engine = make_engine(settings.database_url)
    seen: list[str] = []

    def on_execute(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO COIN_HISTORY_HOURLY"):
            cursor.execute("SHOW work_mem")
            seen.append(cursor.fetchone()[0])

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        build_gold(engine)
        full = list(seen)
        seen.clear()
        with engine.connect() as conn:
            since = conn.execute(text("SELECT max(snapshot_at) FROM staging_crypto_market")).scalar()
        build_gold(engine, since=since)
        incremental = list(seen)
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    with engine.connect() as conn:
        default = show(conn, "work_mem")
    assert full == [GOLD_REBUILD_WORK_MEM]
    assert incremental == [default] and default != GOLD_REBUILD_WORK_MEM


def test_sqlite_is_left_as_it_is(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    with engine.connect() as conn, commits_flushed_later(conn):
        big_sorts(conn)
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL, as every connection has
