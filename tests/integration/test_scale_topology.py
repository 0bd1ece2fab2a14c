"""The Compose ``scale`` profile as processes (no Docker engine here): an S3 API (moto's server, for
MinIO), a Dask scheduler and two workers (``python -m dask scheduler|worker``, as the profile runs them
from the app image), and the pipeline pointing at them. Live runs put bronze in the object store and
silver in the lake; ``replay --engine dask`` (the CLI) has the workers read bronze from the object
store themselves, and ends with the same warehouse and the same lake as before; on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from deltalake import DeltaTable
from distributed import Client

from pipeline.flow import run_pipeline
from tests.conftest import REPO_ROOT, make_settings, settings_env
from tests.fakes.dask_cluster import loopback_cluster
from tests.fakes.s3_server import FakeS3
from tests.replay_compare import contents

pytestmark = pytest.mark.slow


def lake_options(env: dict[str, str]) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
        "AWS_ENDPOINT_URL": env["AWS_ENDPOINT_URL"],
        "AWS_REGION": env["AWS_DEFAULT_REGION"],
        "AWS_ALLOW_HTTP": "true",
    }


def test_scale_profile_as_processes(database_url, tmp_path, fake_coingecko):
    with FakeS3() as s3:
        bucket = s3.new_bucket()
        store = {**s3.env(f"s3://{bucket}/bronze"), "LAKE_URL": f"s3://{bucket}/lake"}
        settings = make_settings(database_url, tmp_path / "data", fake_coingecko.base_url, extra_env=store)
        for _ in range(2):
            assert run_pipeline(settings, source="api").status == "success"
            time.sleep(1.05 - time.time() % 1)  # the next snapshot in another second
        assert not (tmp_path / "data" / "raw").exists()  # bronze went to the object store only
        assert sum(key.endswith("manifest.json") for key in s3.keys(bucket, "bronze")) == 2
        before = contents(database_url)
        lake = f"s3://{bucket}/lake"
        lake_rows = DeltaTable(lake, storage_options=lake_options(store)).to_pyarrow_table().num_rows
        assert lake_rows == int(before["staging_crypto_market"].split("(")[1].split()[0]) > 0

        with loopback_cluster(2, env=store, logs=tmp_path / "cluster.log") as cluster:
            env = {
                **settings_env(settings),  # the same settings as the live runs (classes and sectors off)
                "PIPELINE_REPLAY_BATCH_RECORDS": "100",  # several partitions from two snapshots
                **store,
            }
            done = subprocess.run(
                [sys.executable, "-m", "pipeline", "replay", "--engine", "dask", "--scheduler", cluster.address],
                env=env,
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            assert f"transforming on Dask scheduler {cluster.address}" in done.stderr + done.stdout
            with Client(cluster.address, timeout="20s") as client:
                # The workers ran the transforms: the scheduler's log of task transitions names them.
                log = client.run_on_scheduler(lambda dask_scheduler: repr(list(dask_scheduler.transition_log)))
            assert "prepare_batch" in log
        assert store["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr
        assert contents(database_url) == before  # the distributed replay rebuilt the same warehouse
        replayed = DeltaTable(lake, storage_options=lake_options(store)).to_pyarrow_table()
        assert replayed.num_rows == lake_rows  # and the same lake, without duplicates
