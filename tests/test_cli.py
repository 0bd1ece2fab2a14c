"""The command line as a person uses it: ``python -m pipeline ...`` in a subprocess."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import site
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from pipeline.cli import build_parser
from pipeline.config import is_setting
from pipeline.db import make_engine
from tests.conftest import REPO_ROOT, _admin_connect, settings_env
from tests.helpers import refuse_inserts, wait_for


def _admin():
    return _admin_connect()


def _subcommands() -> list[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("build_parser() has no subcommands")


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not is_setting(k)}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}",
            "COINGECKO_BASE_URL": "http://127.0.0.1:9/api/v3",  # nothing listens on the discard port
            "COINGECKO_MAX_RETRIES": "0",
            "COINGECKO_CALLS_PER_MINUTE": "0",
            "COINGECKO_TIMEOUT_SECONDS": "2",
        }
    )
    env.update(extra)
    return env


def pipeline(*args, env, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_parser_has_the_documented_subcommands():
    assert {"run", "replay", "schedule", "status", "schema"} <= set(_subcommands())


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help_with_an_example(command, tmp_path):
    result = pipeline(command, "--help", env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout
    assert "python -m pipeline" in result.stdout  # the example is a real command line
    assert result.stderr == ""


def test_top_level_help_lists_every_subcommand(tmp_path):
    result = pipeline("--help", env=_env(tmp_path))
    assert result.returncode == 0
    for command in _subcommands():
        assert command in result.stdout


@pytest.mark.slow
def test_unreachable_api_gives_one_error_line(tmp_path):
    result = pipeline("run", env=_env(tmp_path))
    assert result.returncode not in (0, None)
    assert result.returncode == 3  # SourceError.exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "127.0.0.1:9" in lines[0]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("argv", [("--verbose", "run"), ("run", "--verbose")])
def test_verbose_shows_the_details(tmp_path, argv):
    result = pipeline(*argv, env=_env(tmp_path))
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) > 1
    assert "Traceback" in result.stderr and "SourceError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error:")


@pytest.mark.slow
def test_bad_database_url_is_a_one_line_config_error(tmp_path):
    result = pipeline("run", env=_env(tmp_path, DATABASE_URL="mysql://x"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_sample_run_then_status(tmp_path):
    env = _env(tmp_path)
    run = pipeline("run", "--source", "sample", env=env)
    assert run.returncode == 0, run.stderr
    assert "succeeded" in run.stdout and "source sample" in run.stdout
    assert (tmp_path / "warehouse.db").exists()
    assert any((tmp_path / "data" / "raw").rglob("manifest.json"))
    status = pipeline("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "sample" in status.stdout
    assert "success" in status.stdout


# -- the database misbehaving: one line, exit 5 -------------------------------------


def _sabotage_gold(database_url: str) -> None:
    """market_history refuses every insert: the next gold build fails mid-run."""
    with make_engine(database_url).begin() as conn:
        refuse_inserts(conn, "market_history", "coin_count refused by a test trigger")


def _assert_one_line_without_sql(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("error:"), line
    for fragment in ("INSERT INTO", "DELETE FROM", "[SQL", "[parameters", "Traceback", "LINE 1", "DETAIL"):
        assert fragment not in line, line
    assert not re.search(r"SELECT .* FROM ", line), line
    return line


@pytest.mark.slow
def test_database_error_mid_run_is_one_line_and_exit_5(database_url, tmp_path):
    env = _env(tmp_path, DATABASE_URL=database_url)
    assert pipeline("run", "--source", "sample", env=env).returncode == 0
    _sabotage_gold(database_url)

    result = pipeline("run", "--source", "sample", env=env)

    assert result.returncode == 5, result.stderr
    line = _assert_one_line_without_sql(result.stderr)
    assert "coin_count" in line  # what went wrong, in the driver's words
    verbose = pipeline("--verbose", "run", "--source", "sample", env=env)
    assert verbose.returncode == 5
    assert "INSERT INTO market_history" in verbose.stderr  # the statement, for whoever asked
    assert verbose.stderr.strip().splitlines()[-1].startswith("error:")


@pytest.mark.slow
@pytest.mark.parametrize("command", [("run", "--source", "sample"), ("status",), ("replay",)])
def test_unreachable_database_is_one_line_and_exit_5(tmp_path, command):
    env = _env(tmp_path, DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere")
    result = pipeline(*command, env=env)
    assert result.returncode == 5, result.stderr
    line = _assert_one_line_without_sql(result.stderr)
    assert "127.0.0.1" in line


# -- read-only commands never write ---------------------------------------------------


def _sample_database(tmp_path, database_url: str) -> dict:
    env = _env(tmp_path, DATABASE_URL=database_url)
    run = pipeline("run", "--source", "sample", env=env)
    assert run.returncode == 0, run.stderr
    return env


def _assert_status_printed(result) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "data as of 2022-10-16" in result.stdout
    assert "success" in result.stdout and "running now: nothing" in result.stdout


@pytest.mark.slow
def test_status_on_a_read_only_sqlite_database(tmp_path):
    db = tmp_path / "warehouse.db"
    _sample_database(tmp_path, f"sqlite:///{db}")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    env = _env(tmp_path, DATABASE_URL=f"sqlite:///file:{db}?mode=ro&uri=true")

    result = pipeline("status", env=env)

    _assert_status_printed(result)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not (REPO_ROOT / "file:").exists()  # the URI form is not taken for a folder name
    # A command that writes fails in one line instead.
    run = pipeline("run", "--source", "sample", env=env)
    assert run.returncode != 0
    _assert_one_line_without_sql(run.stderr)


def _unprivileged_python() -> list[str] | None:
    """A way to run the pipeline as 'nobody' (root ignores file modes), or None."""
    system_python = shutil.which("python3", path="/usr/bin")
    if os.geteuid() != 0:
        return [sys.executable]
    if not (system_python and shutil.which("setpriv")):
        return None
    version = subprocess.run(
        [system_python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        return None
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", system_python]


@pytest.mark.slow
@pytest.mark.parametrize("wal", ["left by the writer", "checkpointed"])
def test_status_by_a_user_who_cannot_write_the_file_or_its_folder(tmp_path, wal):
    python = _unprivileged_python()
    if python is None:
        pytest.skip("running as root without setpriv and a matching /usr/bin/python3")
    folder = Path(tempfile.mkdtemp(prefix="pipeline-ro-"))  # pytest's tmp_path is private to root
    db = folder / "warehouse.db"
    try:
        _sample_database(tmp_path, f"sqlite:///{db}")
        if wal == "checkpointed":
            last = sqlite3.connect(db)
            last.execute("SELECT COUNT(*) FROM pipeline_runs").fetchone()
            last.close()  # the last connection to close removes -wal and -shm
            assert not Path(f"{db}-wal").exists()
        files = sorted(p.name for p in folder.iterdir())
        env = _env(tmp_path, DATABASE_URL=f"sqlite:///{db}", DATA_DIR=str(folder / "data"), HOME=str(folder))
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *site.getsitepackages()])
        for path in folder.iterdir():
            path.chmod(0o444)
        folder.chmod(0o555)
        result = subprocess.run(
            [*python, "-m", "pipeline", "status"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )
        _assert_status_printed(result)
        assert sorted(p.name for p in folder.iterdir()) == files
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


@pytest.mark.slow
@pytest.mark.postgres
def test_status_on_a_read_only_postgresql_database(postgres_url, tmp_path):
    env = _sample_database(tmp_path, postgres_url)
    name = postgres_url.rsplit("/", 1)[1]
    with _admin() as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')

    result = pipeline("status", env=env)

    _assert_status_printed(result)
    run = pipeline("run", "--source", "sample", env=env)
    assert run.returncode == 5
    assert "read-only transaction" in _assert_one_line_without_sql(run.stderr)


@pytest.mark.slow
def test_status_on_an_empty_database_says_how_to_create_the_schema(database_url, tmp_path):
    result = pipeline("status", env=_env(tmp_path, DATABASE_URL=database_url))
    assert result.returncode == 1
    line = _assert_one_line_without_sql(result.stderr)
    assert "python -m pipeline schema --apply" in line
    assert inspect(make_engine(database_url)).get_table_names() == []  # and created nothing


# -- SIGTERM / SIGINT: the run is recorded as failed and the lock released ----------


def _gold(settings) -> list[tuple]:
    with make_engine(settings.database_url).connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT id, current_price, snapshot_at, run_id FROM crypto_analytics_mart ORDER BY id")
            )
        ]


def _runs(settings) -> dict[str, dict]:
    with make_engine(settings.database_url).connect() as conn:
        return {r["run_id"]: dict(r) for r in conn.execute(text("SELECT * FROM pipeline_runs")).mappings()}


@pytest.mark.slow
@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_fetch_fails_the_run_and_frees_the_lock(settings, fake_coingecko, signum, exit_code):
    from pipeline.flow import run_pipeline

    first = run_pipeline(settings, source="api")
    before = _gold(settings)
    fake_coingecko.clear_requests()
    fake_coingecko.add_fault("hang", hang_seconds=30, times=5)  # the next run sits in its fetch
    env = settings_env(settings)
    env.update({"COINGECKO_TIMEOUT_SECONDS": "60", "COINGECKO_MAX_RETRIES": "0"})
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: (
                fake_coingecko.calls_to("markets") >= 1
                and any(r["status"] == "running" for r in _runs(settings).values())
            ),
            timeout=30,
            what="the run is fetching",
        )
        started = time.monotonic()
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert child.returncode == exit_code, stderr
    assert time.monotonic() - started < 10  # promptly, not after the hang
    assert stderr.strip().splitlines() == ["interrupted"]
    runs = _runs(settings)
    interrupted = next(r for run_id, r in runs.items() if run_id != first.run_id)
    assert interrupted["status"] == "failed"
    assert signal.Signals(signum).name in interrupted["error_message"]
    assert interrupted["finished_at"] is not None
    with make_engine(settings.database_url).connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM pipeline_lock")).scalar() == 0
    assert _gold(settings) == before

    fake_coingecko.clear_faults()
    after = run_pipeline(settings, source="api")
    assert after.status == "success"
    assert _runs(settings)[after.run_id]["status"] == "success"


@pytest.mark.parametrize(
    "argv, writes",
    [
        (["run"], True),
        (["replay"], True),
        (["backfill"], True),
        (["prune", "--keep-days", "30"], True),
        (["publish", "some-run-id", "--force"], True),
        (["import", "somewhere"], True),
        (["status"], False),
        (["verify"], False),
        (["schedule"], False),
        (["schema"], False),
    ],
)
def test_commands_that_take_the_lock_are_interruptible(argv, writes):
    """A writing command is declared where it is registered; SIGTERM then records its run and frees the lock."""
    from pipeline.cli import _writes, build_parser

    assert _writes(build_parser().parse_args(argv)) is writes
