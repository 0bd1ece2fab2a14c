"""Fault suite, database family: the database goes away or refuses a statement mid-run.

PostgreSQL faults use the real server: the run's own backend is terminated in the middle of
the gold transaction (``pg_terminate_backend``, as a DBA or a failover would), the database
stops accepting connections (``ALLOW_CONNECTIONS false``), a gold table is changed under the
pipeline. Each case checks what the operator sees (exit code 5 and one line without SQL, the
run's status and message), that the published gold is unchanged and readable, and that the
next run succeeds once the fault is cleared.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import event, text

from pipeline.db import as_pipeline_error, describe_db_error, make_engine
from pipeline.errors import DatabaseError, DatabaseUnavailable, PipelineError, RunLocked
from pipeline.flow import run_pipeline
from tests.conftest import ADMIN_URL, REPO_ROOT, _admin_connect, make_settings, settings_env
from tests.helpers import allow_inserts, refuse_inserts

pytestmark = pytest.mark.slow

#: Fragments of a SQL statement or of the driver's extra lines: never in a one-line message.
SQL_FRAGMENTS = ("INSERT INTO", "DELETE FROM", "SELECT ", "[SQL", "[parameters", "LINE 1", "DETAIL", "Traceback")


@pytest.fixture
def pg(postgres_url, tmp_path, fake_coingecko):
    """Settings on a fresh PostgreSQL database (the faults below need the real server)."""
    settings = make_settings(postgres_url, tmp_path / "data", fake_coingecko.base_url)
    yield settings
    set_allow_connections(database_name(settings), True)


def database_name(settings) -> str:
    return settings.database_url.rsplit("/", 1)[1]


def set_allow_connections(name: str, allowed: bool) -> None:
    with _admin_connect() as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')


def terminate(pid: int) -> None:
    """pg_terminate_backend, then wait until the backend is really gone."""
    with _admin_connect() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        ):
            time.sleep(0.05)


def query(settings, sql: str, **params) -> list[tuple]:
    with make_engine(settings.database_url).connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def gold(settings) -> dict[str, list[tuple]]:
    return {
        "mart": query(settings, "SELECT id, current_price, snapshot_at, run_id FROM crypto_analytics_mart ORDER BY id"),
        "segments": query(
            settings, "SELECT market_cap_category, coin_count, total_market_cap FROM market_segment_analysis ORDER BY 1"
        ),
        "history": query(settings, "SELECT snapshot_at, coin_count, total_market_cap FROM market_history ORDER BY 1"),
    }


def runs(settings) -> dict[str, dict]:
    with make_engine(settings.database_url).connect() as conn:
        return {r["run_id"]: dict(r) for r in conn.execute(text("SELECT * FROM pipeline_runs")).mappings()}


def lock_rows(settings) -> list[tuple]:
    return query(settings, "SELECT run_id, pid FROM pipeline_lock")


def assert_one_line_without_sql(message: str) -> None:
    assert message and "\n" not in message.strip(), message
    for fragment in SQL_FRAGMENTS:
        assert fragment not in message, message


def kill_backend_on(engine, statement_start: str, *, then_refuse: str | None = None) -> dict:
    """The first time ``engine`` starts a statement beginning with ``statement_start``, its own
    backend is terminated (after the database stops accepting connections, with ``then_refuse``)."""
    fired = {"count": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def kill(conn, cursor, statement, parameters, context, executemany):
        if fired["count"] or not statement.lstrip().startswith(statement_start):
            return
        fired["count"] += 1
        if then_refuse:
            set_allow_connections(then_refuse, False)
        terminate(cursor.connection.info.backend_pid)

    fired["remove"] = lambda: event.remove(engine, "before_cursor_execute", kill)
    return fired


#: A CLI run whose database connection is terminated mid-gold (the same hook, in the child).
KILLER = f"""
import sys, time
import psycopg
from sqlalchemy import event
from pipeline.cli import main
from pipeline.config import Settings
from pipeline.db import make_engine

engine = make_engine(Settings.from_env().database_url)
refuse = sys.argv[1] == "refuse"
done = []

@event.listens_for(engine, "before_cursor_execute")
def kill(conn, cursor, statement, parameters, context, executemany):
    if done or not statement.lstrip().startswith("INSERT INTO market_history"):
        return
    done.append(1)
    pid = cursor.connection.info.backend_pid
    name = conn.engine.url.database
    with psycopg.connect({ADMIN_URL!r}, autocommit=True) as admin:
        if refuse:
            admin.execute(f'ALTER DATABASE "{{name}}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            time.sleep(0.05)

sys.exit(main(["run", "--source", "sample"]))
"""


def cli(
    settings, *args: str, script: str | None = None, timeout: float = 120, **env_overrides: str
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "pipeline", *args]
    env = settings_env(settings)
    env.update(env_overrides)
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


# -- the connection is terminated mid-run ---------------------------------------------------


@pytest.mark.postgres
def test_connection_terminated_mid_gold_fails_the_run_and_keeps_gold(pg):
    first = run_pipeline(pg, source="api")
    before = gold(pg)
    engine = make_engine(pg.database_url)
    killer = kill_backend_on(engine, "INSERT INTO market_history")
    try:
        with pytest.raises(BaseException) as failure:
            run_pipeline(pg, source="sample")
    finally:
        killer["remove"]()
    assert killer["count"] == 1

    error = as_pipeline_error(failure.value)
    assert isinstance(error, DatabaseUnavailable) and error.exit_code == 5
    assert_one_line_without_sql(str(error))
    assert "terminat" in str(error) or "closed" in str(error)
    failed = next(r for run_id, r in runs(pg).items() if run_id != first.run_id)
    assert failed["status"] == "failed" and failed["stage"] == "gold"
    assert lock_rows(pg) == []
    assert gold(pg) == before  # the gold transaction died with its backend

    after = run_pipeline(pg, source="api")
    assert after.status == "success"
    assert {row[3] for row in gold(pg)["mart"]} == {after.run_id}


@pytest.mark.postgres
def test_cli_run_whose_connection_is_terminated_exits_5_with_one_line(pg):
    first = run_pipeline(pg, source="api")
    before = gold(pg)

    result = cli(pg, "keep", script=KILLER)

    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("error: database unavailable:")
    assert_one_line_without_sql(result.stderr)
    failed = next(r for run_id, r in runs(pg).items() if run_id != first.run_id)
    assert failed["status"] == "failed"
    assert lock_rows(pg) == []
    assert gold(pg) == before
    assert run_pipeline(pg, source="api").status == "success"


# -- the database refuses connections -----------------------------------------------------


@pytest.mark.postgres
def test_database_refusing_connections_before_a_run(pg):
    run_pipeline(pg, source="api")
    before = gold(pg)
    before_runs = runs(pg)
    name = database_name(pg)
    # The server trusts local connections, so a password in the URL is ignored, and must never be shown.
    with_password = pg.database_url.replace("postgres@", "postgres:sekrit-pw@")
    set_allow_connections(name, False)
    try:
        result = cli(pg, "run", "--source", "sample", DATABASE_URL=with_password)
        status = cli(pg, "status", DATABASE_URL=with_password)
    finally:
        set_allow_connections(name, True)

    for failed in (result, status):
        assert failed.returncode == 5, failed.stderr
        assert failed.stderr.startswith("error: cannot open database")
        assert "not currently accepting connections" in failed.stderr
        assert_one_line_without_sql(failed.stderr)
        assert "sekrit-pw" not in failed.stderr + failed.stdout
    assert runs(pg) == before_runs  # nothing was started, nothing is left running
    assert lock_rows(pg) == []
    assert gold(pg) == before
    assert cli(pg, "run", "--source", "sample").returncode == 0


@pytest.mark.postgres
def test_database_lost_mid_run_cli_exits_5_and_the_next_run_takes_over(pg):
    """The run can record neither its failure nor release its lock; a later process takes over."""
    first = run_pipeline(pg, source="api")
    before = gold(pg)

    result = cli(pg, "refuse", script=KILLER)
    set_allow_connections(database_name(pg), True)

    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("error: ")
    assert_one_line_without_sql(result.stderr)
    assert gold(pg) == before
    lost = next(run_id for run_id in runs(pg) if run_id != first.run_id)

    after = cli(pg, "run", "--source", "sample")
    assert after.returncode == 0, after.stderr
    states = runs(pg)
    assert states[lost]["status"] in ("abandoned", "failed")
    assert lock_rows(pg) == []


@pytest.mark.postgres
def test_database_lost_mid_run_in_process_leaves_a_lock_taken_over_at_once(pg):
    """Scheduler and dashboard runs share one process: a lock this process could not release
    (its failure could not be recorded either) must not block its next run until the lease
    expires. Depends on runs.py taking over such a lock at once, and flow.py raising
    ``as_pipeline_error``."""
    first = run_pipeline(pg, source="api")
    before = gold(pg)
    engine = make_engine(pg.database_url)
    killer = kill_backend_on(engine, "INSERT INTO market_history", then_refuse=database_name(pg))
    try:
        with pytest.raises(BaseException) as failure:
            run_pipeline(pg, source="sample")
    finally:
        killer["remove"]()
        set_allow_connections(database_name(pg), True)

    assert isinstance(failure.value, PipelineError) and failure.value.exit_code == 5, repr(failure.value)
    assert_one_line_without_sql(str(failure.value))
    assert gold(pg) == before
    lost = next(run_id for run_id in runs(pg) if run_id != first.run_id)

    started = time.monotonic()
    try:
        after = run_pipeline(pg, source="sample")
    except RunLocked as exc:
        pytest.fail(f"the lost run's lock blocks this process's next run: {exc}")
    assert after.status == "success" and time.monotonic() - started < 30
    assert runs(pg)[lost]["status"] in ("abandoned", "failed")


# -- the database refuses a statement -----------------------------------------------------


def test_gold_statement_refused_records_one_line_and_keeps_gold(settings):
    """A changed gold table: the run fails with DatabaseError (exit 5) and the run log keeps
    one line without the SQL. Depends on flow.py raising/recording ``as_pipeline_error``."""
    first = run_pipeline(settings, source="sample")
    before = gold(settings)
    with make_engine(settings.database_url).begin() as conn:
        refuse_inserts(conn, "market_history", "coin_count refused by a test trigger")

    with pytest.raises(BaseException) as failure:
        run_pipeline(settings, source="sample")

    assert isinstance(failure.value, DatabaseError) and failure.value.exit_code == 5, repr(failure.value)
    assert "coin_count" in str(failure.value)
    failed = next(r for run_id, r in runs(settings).items() if run_id != first.run_id)
    assert failed["status"] == "failed"
    assert_one_line_without_sql(failed["error_message"])
    assert "coin_count" in failed["error_message"]
    assert lock_rows(settings) == []
    with make_engine(settings.database_url).begin() as conn:
        allow_inserts(conn, "market_history")
    assert gold(settings) == before
    assert run_pipeline(settings, source="sample").status == "success"


@pytest.mark.postgres
def test_check_constraint_refusing_gold_rows_exits_5_with_one_line(pg):
    run_pipeline(pg, source="sample")
    before = gold(pg)
    with make_engine(pg.database_url).begin() as conn:
        conn.execute(text("ALTER TABLE market_history ADD CONSTRAINT sabotage CHECK (coin_count < 0) NOT VALID"))

    result = cli(pg, "run", "--source", "sample")

    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("error: database error:")
    assert "sabotage" in result.stderr  # the constraint's name: what to look at
    assert_one_line_without_sql(result.stderr)
    assert gold(pg) == before
    assert lock_rows(pg) == []
    with make_engine(pg.database_url).begin() as conn:
        conn.execute(text("ALTER TABLE market_history DROP CONSTRAINT sabotage"))
    assert cli(pg, "run", "--source", "sample").returncode == 0


# -- the translator itself ----------------------------------------------------------------


def test_describe_db_error_keeps_the_drivers_first_line_only(settings):
    run_pipeline(settings, source="sample")
    engine = make_engine(settings.database_url)
    statement = "INSERT INTO market_history (snapshot_at, nope) SELECT snapshot_at, 1 FROM market_history -- long"
    with pytest.raises(Exception) as failure:
        with engine.begin() as conn:
            conn.execute(text(statement))
    assert "[SQL" in str(failure.value)  # what SQLAlchemy itself says: the statement
    line = describe_db_error(failure.value)
    assert "nope" in line
    assert_one_line_without_sql(line)
    error = as_pipeline_error(failure.value)
    assert isinstance(error, DatabaseError) and error.exit_code == 5 and str(error).endswith(line)
    assert error.__cause__ is failure.value
    assert as_pipeline_error(KeyboardInterrupt()).__class__ is KeyboardInterrupt
    plain = ValueError("x")
    assert as_pipeline_error(plain) is plain
