"""Never two runs at once, across processes, on both databases; a killed run never blocks forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from pipeline.db import make_engine, utcnow
from pipeline.errors import RunLocked, SourceError
from pipeline.flow import prepare_database, run_pipeline
from pipeline.runs import RunLease, RunLog, current_holder
from tests.conftest import REPO_ROOT, settings_env

HOLDER = """
import sys, time
from pipeline.config import Settings
from pipeline.flow import prepare_database
from pipeline.runs import RunLease, RunLog
settings = Settings.from_env()
engine = prepare_database(settings)
lease = RunLease(engine, "held-by-child", ttl_seconds=float(sys.argv[1])).acquire()
RunLog(engine, "held-by-child", trigger="schedule", source="api").start()
print("locked", flush=True)
time.sleep(120)
"""


def start_holder(settings, ttl: float = 60.0) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ttl)],
        env=settings_env(settings),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def runs_by_id(settings) -> dict[str, dict]:
    with make_engine(settings.database_url).connect() as conn:
        rows = conn.execute(text("SELECT run_id, status, trigger, error_message FROM pipeline_runs")).mappings()
        return {r["run_id"]: dict(r) for r in rows}


@pytest.mark.slow
def test_second_run_is_refused_while_another_process_runs(settings):
    prepare_database(settings)
    child = start_holder(settings)
    try:
        with pytest.raises(RunLocked, match="held-by-child is already in progress") as caught:
            run_pipeline(settings, source="sample", trigger="button")
        assert caught.value.holder_run_id == "held-by-child"
        assert current_holder(make_engine(settings.database_url))["run_id"] == "held-by-child"
        # The refused attempt leaves no trace in the run log.
        assert list(runs_by_id(settings)) == ["held-by-child"]
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
def test_sigkilled_run_does_not_block_the_next_and_is_marked_abandoned(settings):
    prepare_database(settings)
    child = start_holder(settings, ttl=3600)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # Same host, holder pid gone: taken over at once, long before the lease would expire.
    result = run_pipeline(settings, source="sample")
    runs = runs_by_id(settings)
    assert runs[result.run_id]["status"] == "success"
    assert runs["held-by-child"]["status"] == "abandoned"
    assert "killed or crashed" in runs["held-by-child"]["error_message"]
    assert current_holder(make_engine(settings.database_url)) is None


def test_expired_lease_from_another_host_is_taken_over(settings):
    engine = prepare_database(settings)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO pipeline_lock (name, run_id, host, pid, acquired_at, expires_at) "
                "VALUES ('pipeline', 'elsewhere', 'other-host', 1, :a, :e)"
            ),
            {"a": utcnow(), "e": utcnow()},
        )
    time.sleep(0.01)
    with RunLease(engine, "mine", ttl_seconds=30):
        assert current_holder(engine)["run_id"] == "mine"


def test_live_lease_from_another_host_blocks(settings):
    engine = prepare_database(settings)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO pipeline_lock (name, run_id, host, pid, acquired_at, expires_at) "
                "VALUES ('pipeline', 'elsewhere', 'other-host', 1, :a, :e)"
            ),
            {"a": utcnow(), "e": utcnow().replace(year=utcnow().year + 1)},
        )
    with pytest.raises(RunLocked, match="elsewhere"):
        RunLease(engine, "mine", ttl_seconds=30).acquire()


def test_lease_is_renewed_while_the_run_works(settings):
    engine = prepare_database(settings)
    lease = RunLease(engine, "long-run", ttl_seconds=1.5).acquire()
    try:
        first = current_holder(engine)["expires_at"]
        time.sleep(1.2)
        holder = current_holder(engine)
        assert holder is not None and holder["expires_at"] > first
    finally:
        lease.release()
    assert current_holder(engine) is None


def test_lock_is_released_when_a_run_fails(settings, fake_coingecko):
    fake_coingecko.add_fault("500", times=10)
    with pytest.raises(SourceError):
        run_pipeline(settings, source="api")
    assert current_holder(make_engine(settings.database_url)) is None
    result = run_pipeline(settings, source="sample")
    assert result.status == "success"


def test_run_log_rejects_unknown_trigger(settings):
    engine = prepare_database(settings)
    with pytest.raises(ValueError):
        RunLog(engine, "x", trigger="cron", source="api")


@pytest.mark.slow
def test_sigkill_of_a_real_run_midway_keeps_gold_and_frees_the_next_run(settings, fake_coingecko):
    first = run_pipeline(settings, source="api")
    engine = make_engine(settings.database_url)

    def gold() -> list[tuple]:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text("SELECT id, current_price, snapshot_at FROM crypto_analytics_mart ORDER BY id")
                )
            ]

    before = gold()
    fake_coingecko.add_fault("hang", hang_seconds=1.5, times=20)  # the next run sits in its fetch
    env = settings_env(settings)
    env.update({"COINGECKO_TIMEOUT_SECONDS": "1", "COINGECKO_MAX_RETRIES": "20"})
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(r["status"] == "running" for r in runs_by_id(settings).values()):
        time.sleep(0.1)
    killed = next(run_id for run_id, r in runs_by_id(settings).items() if r["status"] == "running")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    assert gold() == before  # the killed run never touched gold
    fake_coingecko.clear_faults()
    result = run_pipeline(settings, source="api")  # not blocked by the dead run's lock
    runs = runs_by_id(settings)
    assert runs[killed]["status"] == "abandoned"
    assert runs[result.run_id]["status"] == "success" and result.run_id != first.run_id


class _Stop(BaseException):
    """What a signal handler raises (the scheduler's Shutdown, the CLI's Interrupted)."""


@pytest.fixture
def stop_on_sigusr1():
    """SIGUSR1 raises _Stop the way SIGTERM raises Shutdown in the sidecar (pipeline.interrupts)."""
    from pipeline import interrupts

    def handler(_signum, _frame):
        interrupts.raise_or_defer(_Stop())

    previous = signal.signal(signal.SIGUSR1, handler)
    yield lambda: signal.raise_signal(signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, previous)


def lock_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM pipeline_lock")).scalar()


def test_a_stop_right_after_the_lock_commits_gives_the_lock_back(settings, monkeypatch, stop_on_sigusr1):
    """CI saw a sidecar stopped while it took the lock for a refresh request leave the lock row
    behind: the stop landed after the row was committed, before any ``with`` owned the lease."""
    engine = prepare_database(settings)
    original = RunLease._try_acquire

    def commit_then_signal(self):
        original(self)
        stop_on_sigusr1()  # the handler runs here, the lock row already committed

    monkeypatch.setattr(RunLease, "_try_acquire", commit_then_signal)
    with pytest.raises(_Stop):
        with RunLease(engine, "stopped-on-the-way-in"):
            pytest.fail("the stop must not let the run begin")
    assert lock_rows(engine) == 0


def test_a_stop_during_the_release_lets_the_release_finish(settings, monkeypatch, stop_on_sigusr1):
    engine = prepare_database(settings)
    original = RunLease._release

    def signal_then_release(self):
        stop_on_sigusr1()  # the handler runs before the row is deleted
        original(self)

    monkeypatch.setattr(RunLease, "_release", signal_then_release)
    with pytest.raises(_Stop):
        with RunLease(engine, "stopped-on-the-way-out"):
            assert lock_rows(engine) == 1
    assert lock_rows(engine) == 0
    assert current_holder(engine) is None


def test_a_stop_while_the_run_row_is_written_ends_the_run_failed(settings, monkeypatch, stop_on_sigusr1):
    """The 'running' row committed, then the stop: the run is recorded failed, never left running."""
    from pipeline.run_context import run_context

    engine = prepare_database(settings)
    original = RunLog.start

    def write_then_signal(self):
        original(self)
        stop_on_sigusr1()

    monkeypatch.setattr(RunLog, "start", write_then_signal)
    with pytest.raises(_Stop):
        with run_context(settings, trigger="cli", origin="replay", engine=engine):
            pytest.fail("the stop must not let the run's work begin")
    with engine.connect() as conn:
        statuses = conn.execute(text("SELECT status FROM pipeline_runs")).scalars().all()
    assert statuses == ["failed"]
    assert lock_rows(engine) == 0


def test_a_gold_build_longer_than_the_lease_keeps_the_run_alive(settings, monkeypatch, caplog):
    """SQLite has one writer: during the run's own long gold transaction (200 s at 10M rows) the lease
    could not be renewed, so it expired and the live run looked dead to every other process."""
    from pipeline import flow

    settings = settings.with_overrides(lock_ttl_seconds=1.0)
    real_build = flow.build_gold
    seen = {}

    def slow_build(engine, since=None, **kwargs):
        with engine.begin() as conn:  # a write transaction that outlasts the lease's TTL
            conn.execute(text("UPDATE snapshots SET reasons = reasons"))
            time.sleep(2.5)
            other = make_engine(settings.database_url)  # another connection, as another process reads it
            seen["holder"] = current_holder(other)
            other.dispose()
        return real_build(engine, since=since, **kwargs)

    monkeypatch.setattr(flow, "build_gold", slow_build)
    result = run_pipeline(settings, source="sample")

    assert result.status == "success"
    assert seen["holder"] is not None and seen["holder"]["run_id"] == result.run_id
    assert "could not renew" not in caplog.text
    assert current_holder(make_engine(settings.database_url)) is None  # and given back at the end


def test_the_long_write_lease_ends_with_the_write(settings):
    from datetime import datetime, timedelta

    from pipeline.runs import LONG_WRITE_LEASE

    engine = prepare_database(settings)
    lease = RunLease(engine, "run-long", ttl_seconds=5.0).acquire()
    try:

        def expires_in() -> timedelta:
            with engine.connect() as conn:
                expires = conn.execute(text("SELECT expires_at FROM pipeline_lock")).scalar()
            return (datetime.fromisoformat(expires) if isinstance(expires, str) else expires) - utcnow()

        assert expires_in() <= timedelta(seconds=5)
        with lease.long_write():
            during = expires_in()
        after = expires_in()
    finally:
        lease.release()
    if engine.dialect.name == "sqlite":
        assert during > LONG_WRITE_LEASE - timedelta(minutes=1)
    else:  # PostgreSQL renews beside the transaction: the lease stays short
        assert during <= timedelta(seconds=5)
    assert after <= timedelta(seconds=5)
