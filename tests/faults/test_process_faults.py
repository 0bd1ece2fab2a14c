"""Fault suite, process family: dead runs, runs killed between silver and gold, runs that
cannot record their own failure, two runs in the same instant, and a failing schedule.

Each case checks what the operator sees (run status, message), that the published gold is
unchanged and readable, and that the next run succeeds. Both databases.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from pipeline import bronze, flow, runs
from pipeline.db import make_engine
from pipeline.errors import DatabaseUnavailable
from pipeline.flow import replay, run_pipeline
from pipeline.runs import RunLog, current_holder, effective_status, reap_dead_runs
from pipeline.scheduler import retry_delay_minutes
from pipeline.silver.load import unused_snapshot_time
from pipeline.status import format_status
from tests.conftest import REPO_ROOT, settings_env
from tests.helpers import wait_for


def query(settings, sql: str, **params) -> list[tuple]:
    with make_engine(settings.database_url).connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def gold(settings) -> tuple[list[tuple], list[tuple]]:
    mart = query(settings, "SELECT id, current_price, snapshot_at FROM crypto_analytics_mart ORDER BY id")
    history = query(settings, "SELECT snapshot_at, coin_count FROM market_history ORDER BY snapshot_at")
    return mart, history


def run_row(settings, run_id: str) -> dict:
    with make_engine(settings.database_url).connect() as conn:
        return dict(conn.execute(text("SELECT * FROM pipeline_runs WHERE run_id = :r"), {"r": run_id}).mappings().one())


def running_run_ids(settings) -> list[str]:
    return [r[0] for r in query(settings, "SELECT run_id FROM pipeline_runs WHERE status = 'running'")]


# -- a dead run (item 8) ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sigkilled_cli_run_is_seen_dead_at_once_everywhere(settings, fake_coingecko):
    """One liveness rule: status, the dashboard's follower and the lock all call it dead within seconds."""
    from dashboard import refresh

    run_pipeline(settings, source="api")
    before = gold(settings)
    fake_coingecko.add_fault("hang", hang_seconds=1.5, times=50)
    env = settings_env(settings)
    env.update({"COINGECKO_TIMEOUT_SECONDS": "1", "COINGECKO_MAX_RETRIES": "40"})
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    dead_id = wait_for(lambda: (running_run_ids(settings) or [None])[0], 30, what="the child run to start")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    engine = make_engine(settings.database_url)
    assert current_holder(engine) is None, "a dead process's lease must not count as held"
    assert effective_status(run_row(settings, dead_id), current_holder(engine)) == "abandoned"

    started = time.monotonic()
    seen = refresh.follow_external(settings, dead_id, lambda _run: None, timeout=60, poll=0.1)
    assert time.monotonic() - started < 5, "the dashboard waited on a dead run"
    assert seen.status == "abandoned" and not seen.timed_out
    assert run_row(settings, dead_id)["status"] == "abandoned"
    assert gold(settings) == before

    fake_coingecko.clear_faults()
    assert run_pipeline(settings, source="api", trigger="button").status == "success"


def test_status_shows_a_dead_run_as_abandoned_without_writing(settings, fake_coingecko):
    """A run row left `running` by a process that is gone reads as abandoned before anyone reaps it."""
    engine = flow.prepare_database(settings)
    log_ = RunLog(engine, "ghost-run", trigger="cli", source="api")
    log_.start()  # no lease at all: its process is gone
    row = run_row(settings, "ghost-run")
    assert row["status"] == "running"
    assert effective_status(row, current_holder(engine)) == "abandoned"
    report = format_status(settings)
    assert "running now: nothing" in report
    assert next(line for line in report.splitlines() if line.startswith("ghost-run")).split()[3] == "abandoned"
    assert run_row(settings, "ghost-run")["status"] == "running"  # reading wrote nothing
    assert reap_dead_runs(engine) == ["ghost-run"]
    assert run_row(settings, "ghost-run")["status"] == "abandoned"


# -- killed between silver and gold (item 9) -----------------------------------------------------


def test_gold_catches_up_with_a_snapshot_left_behind_by_a_failed_publish(settings, fake_coingecko, monkeypatch):
    run_pipeline(settings, source="api")
    real_build = flow.build_gold

    def crash(*args, **kwargs):
        raise OperationalError("INSERT INTO market_history ...", {}, Exception("server closed the connection"))

    monkeypatch.setattr(flow, "build_gold", crash)
    with pytest.raises(DatabaseUnavailable):
        run_pipeline(settings, source="api")
    monkeypatch.setattr(flow, "build_gold", real_build)

    silver_snapshots = [
        r[0] for r in query(settings, "SELECT DISTINCT snapshot_at FROM staging_crypto_market ORDER BY snapshot_at")
    ]
    assert len(silver_snapshots) == 2
    assert len(gold(settings)[1]) == 1  # the failed run's snapshot is in silver only

    run_pipeline(settings, source="api")
    history = [r[0] for r in gold(settings)[1]]
    assert len(history) == 3
    assert silver_snapshots[1] in history, "the snapshot left behind never reached market_history"


# -- a failure that cannot be recorded (item 11) ----------------------------------------------------


def test_a_run_that_cannot_record_its_failure_does_not_block_the_next(settings, fake_coingecko, monkeypatch):
    run_pipeline(settings, source="api")
    before = gold(settings)

    def broken_fail(self, message, **counts):
        raise OperationalError("UPDATE pipeline_runs ...", {}, Exception("database or disk is full"))

    real_delete = runs.delete

    def broken_delete(*args, **kwargs):
        raise OperationalError("DELETE FROM pipeline_lock ...", {}, Exception("database or disk is full"))

    monkeypatch.setattr(RunLog, "fail", broken_fail)
    monkeypatch.setattr(runs, "delete", broken_delete)
    fake_coingecko.add_fault("500", times=20)
    with pytest.raises(Exception) as failure:
        run_pipeline(settings, source="api")
    assert "500" in str(failure.value)  # the original error, not the recording error
    monkeypatch.setattr(runs, "delete", real_delete)
    monkeypatch.undo()
    fake_coingecko.clear_faults()

    engine = make_engine(settings.database_url)
    stuck = running_run_ids(settings)
    assert len(stuck) == 1  # its row could not be written, and its lease row is still there ...
    assert query(settings, "SELECT run_id FROM pipeline_lock") == [(stuck[0],)]
    assert current_holder(engine) is None  # ... but nobody counts it as held
    result = run_pipeline(settings, source="api")  # taken over at once, not after the lease expires
    assert result.status == "success"
    assert run_row(settings, stuck[0])["status"] == "abandoned"
    assert gold(settings) != before and len(gold(settings)[1]) == 2


# -- two runs in the same instant (item 16) ---------------------------------------------------------


def test_a_snapshot_time_already_taken_moves_to_the_next_free_microsecond(settings, fake_coingecko):
    first = run_pipeline(settings, source="api")
    engine = make_engine(settings.database_url)
    assert unused_snapshot_time(engine, first.snapshot_at) == first.snapshot_at + timedelta(microseconds=1)
    later = first.snapshot_at + timedelta(seconds=5)
    assert unused_snapshot_time(engine, later) == later


def test_snapshot_times_keep_sub_second_precision(settings, fake_coingecko):
    results = [run_pipeline(settings, source="api") for _ in range(3)]
    times = [r.snapshot_at for r in results]
    assert len(set(times)) == 3
    stored = query(
        settings,
        "SELECT snapshot_at, count(*), count(DISTINCT run_id) FROM staging_crypto_market "
        "GROUP BY snapshot_at ORDER BY snapshot_at",
    )
    assert len(stored) == 3
    assert all(n_runs == 1 for _, _, n_runs in stored), "a snapshot holds rows of two runs"
    for result, (_, rows, _) in zip(results, stored):
        assert result.silver_rows == rows
        assert run_row(settings, result.run_id)["silver_rows"] == rows


def test_two_runs_fetched_in_the_same_instant_keep_both_snapshots(settings, fake_coingecko, monkeypatch):
    """Even when the clock gives both runs the same fetch time, neither overwrites the other,
    and each run log reports what silver really holds for it."""
    first = run_pipeline(settings, source="api")
    fake_coingecko.add_fault("negative", times=1)  # the second body differs (one record quarantined)
    frozen = first.snapshot_at
    real_unused = flow.unused_snapshot_time
    monkeypatch.setattr(flow, "unused_snapshot_time", lambda engine, wanted: real_unused(engine, frozen))
    second = run_pipeline(settings, source="api")
    assert second.snapshot_at != first.snapshot_at
    counts = dict(query(settings, "SELECT run_id, count(*) FROM staging_crypto_market GROUP BY run_id"))
    assert counts[first.run_id] == first.silver_rows == run_row(settings, first.run_id)["silver_rows"]
    assert counts[second.run_id] == second.silver_rows == run_row(settings, second.run_id)["silver_rows"]


def test_replay_keeps_apart_old_bronze_runs_that_share_a_second(settings, fake_coingecko):
    """Bronze written before times kept microseconds: two runs stamped with the same second."""
    first = run_pipeline(settings, source="api")
    fake_coingecko.add_fault("negative", times=1)
    second = run_pipeline(settings, source="api")
    shared = first.snapshot_at.replace(microsecond=0)
    for run_id in (first.run_id, second.run_id):
        manifest_path = bronze.find_run(settings.raw_dir, run_id).folder / bronze.MANIFEST
        manifest = json.loads(manifest_path.read_text())
        manifest["snapshot_at"] = shared.isoformat()
        os.chmod(manifest_path, 0o644)
        manifest_path.write_text(json.dumps(manifest))

    with make_engine(settings.database_url).begin() as conn:  # as if replayed into a new database
        conn.execute(text("DELETE FROM staging_crypto_market"))
    result = replay(settings)
    stored = query(
        settings,
        "SELECT snapshot_at, count(DISTINCT run_id), count(*) FROM staging_crypto_market "
        "WHERE snapshot_at < :later GROUP BY snapshot_at ORDER BY snapshot_at",
        later=shared + timedelta(seconds=1),
    )
    assert len(stored) == 2 and all(n_runs == 1 for _, n_runs, _ in stored)
    assert sum(rows for *_, rows in stored) == first.silver_rows + second.silver_rows
    assert result.status == "success"
    # Replaying again gives the same tables (the moved time is deterministic).
    replay(settings)
    assert query(settings, "SELECT count(*) FROM staging_crypto_market")[0][0] == first.silver_rows + second.silver_rows


# -- a failing schedule (item 15) -------------------------------------------------------------------


@pytest.mark.parametrize(("failures", "expected"), [(0, 15), (1, 15), (2, 30), (3, 60), (4, 60), (10, 60)])
def test_the_scheduler_backs_off_after_failures_up_to_the_cap(failures, expected):
    assert retry_delay_minutes(15, failures, cap=60) == expected


def test_backoff_never_shortens_a_long_interval():
    assert retry_delay_minutes(120, 5, cap=60) == 120
