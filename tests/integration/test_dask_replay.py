"""``replay --engine dask``: the batch transforms run on Dask workers (a LocalCluster, or a scheduler and
two worker processes on loopback), the database load and gold stay in the replaying process, and the
result is identical to the single-process replay (silver, quarantine, gold and rollups, row for row) on
SQLite and PostgreSQL, also when a worker is killed mid-replay. An unreachable scheduler is one line and
exit code 8 within the connect deadline."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from pipeline import engines
from pipeline.flow import replay
from tests.conftest import REPO_ROOT
from tests.fakes.dask_cluster import loopback_cluster
from tests.replay_compare import contents, settings_for


def local_replay(database_url, data_dir):
    result = replay(settings_for(database_url, data_dir), plan=engines.EnginePlan("local", workers=0))
    return result, contents(database_url)


def test_a_local_cluster_replay_equals_the_single_process_replay(replay_bronze, database_url, second_database_url):
    single, expected = local_replay(database_url, replay_bronze)
    assert single.quarantined > 0 and single.silver_rows > 0

    plan = engines.plan("dask", workers=2, scheduler=None, worker_memory="1GiB", timeout=30)
    result = replay(settings_for(second_database_url, replay_bronze), plan=plan)
    assert (result.silver_rows, result.quarantined, result.bronze_runs) == (
        single.silver_rows,
        single.quarantined,
        single.bronze_runs,
    )
    assert contents(second_database_url) == expected


def test_a_worker_killed_mid_replay_has_its_batches_rerun_and_the_result_is_identical(
    replay_bronze, database_url, second_database_url, tmp_path
):
    from distributed import Client

    _, expected = local_replay(database_url, replay_bronze)
    with loopback_cluster(2, logs=tmp_path / "cluster.log") as cluster:
        plan = engines.plan("dask", workers=2, scheduler=cluster.address, worker_memory="1GiB", timeout=30)
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                outcome["result"] = replay(settings_for(second_database_url, replay_bronze), plan=plan)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        with Client(cluster.address, timeout="20s") as watcher:
            pids = watcher.run(lambda: __import__("os").getpid())
            thread = threading.Thread(target=run)
            thread.start()
            killed = None
            deadline = time.monotonic() + 120
            while killed is None and thread.is_alive() and time.monotonic() < deadline:
                busy = [address for address, tasks in watcher.processing().items() if tasks]
                if busy:
                    killed = busy[0]
                    cluster.kill_worker(pids[killed])
                time.sleep(0.01)
            thread.join(timeout=300)
            assert killed is not None, "no worker was ever seen busy: the replay did not use the cluster"
            assert killed not in watcher.scheduler_info()["workers"]  # it is gone for good (no nanny)
    assert "error" not in outcome, outcome.get("error")
    assert contents(second_database_url) == expected


@pytest.mark.parametrize("given_by", ["--scheduler", "DASK_SCHEDULER_ADDRESS"])
def test_an_unreachable_scheduler_is_one_line_with_its_exit_code_within_the_deadline(replay_bronze, tmp_path, given_by):
    env = {
        "DATA_DIR": str(replay_bronze),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
        "PYTHONPATH": str(REPO_ROOT),
        "PATH": "/usr/bin:/bin",
    }
    command = [sys.executable, "-m", "pipeline", "replay", "--engine", "dask"]
    if given_by == "--scheduler":
        command += ["--scheduler", "tcp://127.0.0.1:9"]
    else:
        env["DASK_SCHEDULER_ADDRESS"] = "tcp://127.0.0.1:9"  # Dask's own variable, read through the settings
    started = time.monotonic()
    done = subprocess.run(
        command,
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == engines.ClusterUnavailable.exit_code == 8, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tcp://127.0.0.1:9" in errors[0] and "unreachable" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < engines.CONNECT_TIMEOUT_SECONDS + 20


@pytest.mark.parametrize(
    ("engine", "scheduler", "message"),
    [
        ("local", "tcp://127.0.0.1:8786", "--scheduler needs --engine dask"),
        ("dask", "127.0.0.1:8786", "must look like tcp://"),
        ("spark", None, "--engine must be one of"),
    ],
)
def test_engine_choices_are_checked_before_any_work(engine, scheduler, message):
    with pytest.raises(engines.ConfigError, match=message):
        engines.plan(engine, workers=2, scheduler=scheduler, worker_memory="1GiB", timeout=1)
