"""A run killed between its silver commit and recording its snapshot: the next run publishes the
snapshot it left (both databases), and finding such snapshots searches the newest part of silver
by time instead of reading all of it (at 10M rows the read took 5.5 s of every refresh)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from pipeline import flow, gold
from pipeline.db import make_engine
from pipeline.errors import DatabaseUnavailable
from pipeline.flow import run_pipeline


def _times(settings, sql: str) -> list:
    with make_engine(settings.database_url).connect() as conn:
        return [row[0] for row in conn.execute(text(sql))]


def test_the_next_run_publishes_a_snapshot_left_without_a_ledger_row(settings, fake_coingecko, monkeypatch):
    run_pipeline(settings, source="api")

    def killed(*args, **kwargs):
        raise OperationalError("INSERT INTO snapshots ...", {}, Exception("server closed the connection"))

    monkeypatch.setattr(flow, "_record_snapshots", killed)
    with pytest.raises(DatabaseUnavailable):
        run_pipeline(settings, source="api")
    monkeypatch.undo()
    silver = _times(settings, "SELECT DISTINCT snapshot_at FROM staging_crypto_market ORDER BY snapshot_at")
    assert len(silver) == 2 and len(_times(settings, "SELECT snapshot_at FROM snapshots")) == 1
    left = silver[1]

    run_pipeline(settings, source="api")

    history = _times(settings, "SELECT snapshot_at FROM market_history ORDER BY snapshot_at")
    assert len(history) == 3 and left in history, "the snapshot left behind never reached gold"
    reasons = _times(settings, "SELECT reasons FROM snapshots WHERE status = 'published' ORDER BY snapshot_at")
    assert reasons[1].startswith("recovered:")


def test_finding_left_snapshots_searches_silver_by_time(tmp_path):
    from pipeline.config import Settings
    from pipeline.db import prepare_database

    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}", "DATA_DIR": str(tmp_path)})
    engine = prepare_database(settings)
    compiled = gold.RECOVER_ORPHAN_SNAPSHOTS.compile(dialect=engine.dialect)
    with engine.connect() as conn:
        plan = [
            row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", ("2026-01-01 00:00:00.000000",))
        ]
    silver = [step for step in plan if "staging_crypto_market" in step]
    assert silver and all(step.startswith("SEARCH") and "snapshot_at>?" in step for step in silver), plan


#: Tables that grow with the history kept: a run's incremental build must search them by time.
HISTORY_TABLES = ("staging_crypto_market", "coin_history_hourly", "coin_history_daily", "staging_coin_history")


def test_a_run_reads_history_tables_by_time_only(tmp_path, fake_coingecko):
    """Every statement of a run (a refresh: silver, ledger, incremental gold) searches the history tables
    through an index; a scan of one is work that grows with the history kept (SQLite's plans, no
    statistics). Two such scans cost a refresh 5.5 s (PostgreSQL) and 1 s (SQLite) at 10M rows."""
    from sqlalchemy import event

    from tests.conftest import make_settings

    settings = make_settings(f"sqlite:///{tmp_path / 'w.db'}", tmp_path / "data", fake_coingecko.base_url)
    run_pipeline(settings, source="api")
    engine = make_engine(settings.database_url)
    statements: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if not executemany and statement.lstrip().upper().startswith(("SELECT", "INSERT", "DELETE", "UPDATE", "WITH")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    run_pipeline(settings, source="api", engine=engine)
    event.remove(engine, "before_cursor_execute", keep)

    scans = []
    with engine.connect() as conn:
        for statement, parameters in statements:
            if statement.rstrip().upper().endswith("LIMIT 1"):
                continue  # a probe for any row stops at the first
            for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters):
                step = row[-1]
                if step.startswith("SCAN") and any(f" {table}" in f" {step.split()[1]}" for table in HISTORY_TABLES):
                    scans.append((step, " ".join(statement.split())[:160]))
    assert not scans, scans
