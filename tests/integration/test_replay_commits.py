"""A replay commits its silver load every ``flow.COMMIT_RECORDS`` rows whatever its batch size (a SQLite
commit costs disk I/O, so small batches for memory need not mean more commits) and gives the same
warehouse as committing every batch; an error during the load fails the replay, and what was not
committed yet is rolled back, never half written. Unset, the batch size is the database's own."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from pipeline import flow
from pipeline.config import Settings
from pipeline.db import make_engine
from pipeline.flow import REPLAY_BATCH_RECORDS, replay, run_pipeline
from tests.replay_compare import BATCH, COINS, SNAPSHOTS, contents, settings_for


def visible_rows(database_url: str) -> int:
    """Silver rows another connection sees: committed ones only."""
    with make_engine(database_url).connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM staging_crypto_market")).scalar() or 0)


def test_batches_share_commits_and_give_the_warehouse_of_one_commit_a_batch(
    replay_bronze, database_url, second_database_url, monkeypatch
):
    monkeypatch.setattr(flow, "COMMIT_RECORDS", 1)  # a commit after every batch, as before
    replay(settings_for(second_database_url, replay_bronze))
    expected = contents(second_database_url)

    monkeypatch.setattr(flow, "COMMIT_RECORDS", 4 * BATCH - 100)  # batches of ~600 rows: a commit every 4
    settings = settings_for(database_url, replay_bronze)
    engine = make_engine(settings.database_url)
    batches: list[int] = []
    committed_after: list[int] = []  # batches loaded at each commit
    load_batch = flow.load_batch

    def counted(conn, prepared):
        batches.append(prepared.rows.num_rows)
        return load_batch(conn, prepared)

    def on_commit(conn) -> None:
        if batches and (not committed_after or committed_after[-1] != len(batches)):
            committed_after.append(len(batches))

    monkeypatch.setattr(flow, "load_batch", counted)
    event.listen(engine, "commit", on_commit)
    try:
        result = replay(settings)
    finally:
        event.remove(engine, "commit", on_commit)

    assert contents(database_url) == expected
    assert len(batches) >= 12
    assert committed_after[:2] == [4, 8]  # every fourth batch, not every batch
    assert visible_rows(database_url) == result.silver_rows == sum(batches)


def test_an_error_during_the_load_fails_the_replay_and_rolls_back_what_was_not_committed(
    replay_bronze, database_url, monkeypatch
):
    monkeypatch.setattr(flow, "COMMIT_RECORDS", 4 * BATCH - 100)
    settings = settings_for(database_url, replay_bronze)
    load_batch = flow.load_batch
    calls: list[int] = []

    def breaks_at_the_sixth(conn, prepared):
        calls.append(prepared.rows.num_rows)
        if len(calls) == 6:
            raise RuntimeError("the load broke")
        return load_batch(conn, prepared)

    monkeypatch.setattr(flow, "load_batch", breaks_at_the_sixth)
    with pytest.raises(RuntimeError, match="the load broke"):
        replay(settings)

    committed = visible_rows(settings.database_url)
    # Batches 1-4 were committed together; batch 5 was loaded but not committed.
    assert committed == sum(calls[:4])
    assert committed <= COINS * SNAPSHOTS


def test_unset_the_batch_size_is_the_databases_own():
    assert Settings.from_env({}).replay_batch_records is None
    assert Settings.from_env({"PIPELINE_REPLAY_BATCH_RECORDS": "2500"}).replay_batch_records == 2_500
    assert REPLAY_BATCH_RECORDS["sqlite"] < REPLAY_BATCH_RECORDS["postgresql"]


def writes_to_the_database(database_url: str, seen: list[str]):
    """A progress callback that writes to the warehouse, as a run request's progress does; on SQLite
    it gives up after 200 ms instead of 30 s, so a write kept waiting fails the run."""

    def progress(stage: str, message: str) -> None:
        if stage != "silver" or "rows loaded" not in message:
            return
        with make_engine(database_url).connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                conn.exec_driver_sql("PRAGMA busy_timeout=200")
            try:
                conn.execute(text("UPDATE run_requests SET state = state WHERE request_id = 'none'"))
                conn.commit()
            finally:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA busy_timeout=30000")
        seen.append(message)

    return progress


def test_a_progress_line_that_writes_to_the_database_never_waits_on_the_load(replay_bronze, database_url, monkeypatch):
    """The refresh button's run reports its progress into run_requests from the loading thread: the
    silver load's transaction is committed before each progress line (found when every refresh of the
    benchmark's dashboard took 32 s: the write waited out SQLite's 30 s busy timeout)."""
    monkeypatch.setattr(flow, "COMMIT_RECORDS", 4 * BATCH - 100)
    settings = settings_for(database_url, replay_bronze)
    seen: list[str] = []
    replay(settings, progress=writes_to_the_database(settings.database_url, seen))
    assert len(seen) >= 3

    live: list[str] = []
    run_pipeline(settings, source="sample", progress=writes_to_the_database(settings.database_url, live))
    assert live
