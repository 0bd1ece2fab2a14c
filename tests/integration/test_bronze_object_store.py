"""Bronze on an S3-compatible object store (BRONZE_URL=s3://bucket/prefix), against moto's real S3 API on
loopback, on SQLite and PostgreSQL: live runs write there, replay, verify and prune read there, and the
faults (unreachable store, no credentials) fail fast as one line without ever printing the secret key."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from operator import methodcaller
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from pipeline import bronze
from pipeline.config import Settings
from pipeline.db import make_engine
from pipeline.errors import ConfigError, Interrupted, ObjectStoreUnavailable
from pipeline.flow import replay, run_pipeline
from pipeline.prune import prune
from pipeline.storage import ObjectStore
from pipeline.verify import verify
from tests.conftest import REPO_ROOT, make_settings
from tests.fakes.s3_server import ACCESS_KEY, SECRET_KEY, FakeS3

PREFIX = "lake/bronze"


@pytest.fixture(scope="module")
def fake_s3():
    with FakeS3() as s3:
        yield s3


@pytest.fixture
def bucket(fake_s3) -> str:
    return fake_s3.new_bucket()


@pytest.fixture
def s3_settings(database_url, tmp_path, fake_coingecko, fake_s3, bucket) -> Settings:
    """Settings on the parametrized database whose bronze lives in a fresh bucket of the fake S3."""
    return make_settings(
        database_url, tmp_path / "data", fake_coingecko.base_url, extra_env=fake_s3.env(f"s3://{bucket}/{PREFIX}")
    )


def read(settings: Settings, sql: str) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(text(sql), conn)


def gold_fingerprint(settings: Settings) -> tuple[dict[str, int], str]:
    """Row counts of silver and gold, and a sha256 of the whole gold mart (floats to 12 digits, times as text)."""
    counts = {
        table: int(read(settings, f"SELECT COUNT(*) AS n FROM {table}").n[0])
        for table in (
            "staging_crypto_market",
            "staging_global_market",
            "quarantine_crypto_market",
            "crypto_analytics_mart",
            "market_segment_analysis",
            "market_history",
        )
    }
    mart = read(settings, "SELECT * FROM crypto_analytics_mart ORDER BY id")
    for column in mart.columns:
        if "_at" in column or column == "last_updated":
            mart[column] = pd.to_datetime(mart[column]).astype(str)
    rows = [
        tuple(None if pd.isna(v) else f"{v:.12g}" if isinstance(v, float) else str(v) for v in row)
        for row in mart.itertuples(index=False)
    ]
    return counts, hashlib.sha256(repr((list(mart.columns), rows)).encode()).hexdigest()


def next_second() -> None:
    """Snapshots are stamped to the second: make the next run's snapshot a different one."""
    time.sleep(1.05 - time.time() % 1)


def copy_bucket_to(fake_s3: FakeS3, bucket: str, raw_dir: Path) -> int:
    """Every bronze object, as files under ``raw_dir`` in the same layout (what a local copy of the runs is)."""
    keys = fake_s3.keys(bucket, PREFIX)
    for key in keys:
        path = raw_dir / key[len(PREFIX) + 1 :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fake_s3.read(bucket, key))
    return len(keys)


def test_live_run_writes_bronze_to_the_object_store(s3_settings, fake_s3, bucket, caplog):
    caplog.set_level(logging.DEBUG)
    result = run_pipeline(s3_settings, source="api", top_n=250)

    assert result.status == "success"
    day = result.snapshot_at.strftime("%Y-%m-%d")
    keys = fake_s3.keys(bucket, PREFIX)
    folder = f"{PREFIX}/{day}/{result.run_id}/"
    assert f"{folder}manifest.json" in keys
    assert {k.rsplit(".", 1)[1] for k in keys if k.startswith(folder)} == {"json", "parquet"}
    manifest = json.loads(fake_s3.read(bucket, f"{folder}manifest.json"))
    assert manifest["complete"] is True and manifest["run_id"] == result.run_id
    for entry in manifest["entries"]:  # every body whole, as the manifest recorded it
        body = fake_s3.read(bucket, folder + entry["file"])
        assert len(body) == entry["bytes"] and hashlib.sha256(body).hexdigest() == entry["sha256"]
    assert not (s3_settings.data_dir / "raw").exists()  # nothing local
    assert int(read(s3_settings, "SELECT COUNT(*) AS n FROM crypto_analytics_mart").n[0]) == 250

    run = bronze.find_run(s3_settings.bronze, result.run_id)
    assert run.location == f"s3://{bucket}/{folder.rstrip('/')}"
    # The run travels as its location: the secret is in no repr, pickle, description or log line.
    shown = [repr(s3_settings), repr(run), str(s3_settings.describe()), caplog.text]
    assert all(SECRET_KEY not in text for text in shown)
    assert SECRET_KEY.encode() not in pickle.dumps(run) and ACCESS_KEY.encode() not in pickle.dumps(run)


def test_replay_from_the_object_store_matches_replay_from_a_local_copy(
    s3_settings, fake_s3, bucket, second_database_url, tmp_path
):
    run_pipeline(s3_settings, source="sample")
    run_pipeline(s3_settings, source="api")
    next_second()
    run_pipeline(s3_settings, source="api")

    from_s3 = replay(s3_settings)
    local = make_settings(second_database_url, tmp_path / "copy", s3_settings.coingecko_base_url)
    assert copy_bucket_to(fake_s3, bucket, local.raw_dir) > 6
    from_local = replay(local)

    assert from_s3.bronze_runs == from_local.bronze_runs and len(from_s3.bronze_runs) >= 3
    assert from_s3.silver_rows == from_local.silver_rows > 0
    assert gold_fingerprint(s3_settings) == gold_fingerprint(local)


def test_verify_reports_healthy_then_flags_a_tampered_object(s3_settings, fake_s3, bucket):
    result = run_pipeline(s3_settings, source="api")
    report = verify(s3_settings.bronze)
    assert report.healthy and report.checked == 1, report.lines()
    assert f"s3://{bucket}/{PREFIX}" in report.summary()

    run = bronze.find_run(s3_settings.bronze, result.run_id)
    key = f"{PREFIX}/{run.folder.parent.name}/{run.run_id}/markets_p001.json"
    body = bytearray(fake_s3.read(bucket, key))
    body[10] ^= 0x01
    fake_s3.write(bucket, key, bytes(body))  # same size, one bit changed

    report = verify(s3_settings.bronze)
    assert not report.healthy and [d.run_id for d in report.damaged] == [result.run_id]
    line = report.damaged[0].line()
    assert "markets_p001.json: sha256 mismatch" in line and f"s3://{bucket}/" in line
    quick = verify(s3_settings.bronze, deep=False)
    assert [d.run_id for d in quick.damaged] == [result.run_id]
    # The command: exit 1 (BronzeError) naming the damaged run's s3:// folder, and no key in its output.
    env = {**fake_s3.env(f"s3://{bucket}/{PREFIX}"), "DATA_DIR": str(s3_settings.data_dir)}
    done, _took = run_cli(["verify", "--run", result.run_id], env)
    assert done.returncode == 1 and f"s3://{bucket}/{PREFIX}/" in done.stdout and "sha256 mismatch" in done.stdout
    assert SECRET_KEY not in done.stdout + done.stderr


def test_prune_removes_old_run_folders_from_the_object_store(s3_settings, fake_s3, bucket):
    sample = run_pipeline(s3_settings, source="sample")
    older = run_pipeline(s3_settings, source="api")
    next_second()
    newest = run_pipeline(s3_settings, source="api")
    folders = {k.split("/")[3] for k in fake_s3.keys(bucket, PREFIX)}
    assert {sample.run_id.split("-s")[0], older.run_id, newest.run_id} <= {f.split("-s")[0] for f in folders}

    dry = prune(s3_settings, keep_days=30, now=newest.snapshot_at + timedelta(days=400), dry_run=True)
    assert len(dry.folders) == len(folders) - 1 and all(f.bytes > 0 for f in dry.folders)
    assert {k.split("/")[3] for k in fake_s3.keys(bucket, PREFIX)} == folders  # a dry run changes nothing

    report = prune(s3_settings, keep_days=30, now=newest.snapshot_at + timedelta(days=400))
    assert report.gold_runs == [newest.run_id]
    listed = [line for line in report.lines() if older.run_id in line]
    assert listed and all(line.startswith(f"  s3://{bucket}/{PREFIX}/") for line in listed), report.lines()
    left = fake_s3.keys(bucket, PREFIX)
    assert {k.split("/")[3] for k in left} == {newest.run_id}
    assert f"{PREFIX}/{newest.snapshot_at:%Y-%m-%d}/{newest.run_id}/manifest.json" in left
    assert verify(s3_settings.bronze).healthy


def test_a_run_interrupted_before_its_manifest_is_incomplete_and_replay_skips_it(
    s3_settings, fake_s3, bucket, monkeypatch
):
    good = run_pipeline(s3_settings, source="api")

    def killed(self, **kwargs):
        raise Interrupted(signal.SIGTERM)  # the process stops before the manifest is written

    next_second()
    with monkeypatch.context() as patch:
        patch.setattr(bronze.BronzeWriter, "finish", killed)
        with pytest.raises(Interrupted):
            run_pipeline(s3_settings, source="api")
    runs, damaged = bronze.scan_runs(s3_settings.bronze, include_incomplete=True)
    assert [r.run_id for r in runs] == [good.run_id]
    (cut,) = damaged
    assert cut.incomplete and "no manifest.json" in cut.reason and cut.location.startswith(f"s3://{bucket}/")
    assert fake_s3.keys(bucket, f"{PREFIX}/{cut.folder.parent.name}/{cut.folder.name}")  # its bodies are there

    report = verify(s3_settings.bronze)
    assert report.healthy and [d.name for d in report.incomplete] == [cut.name]
    replayed = replay(s3_settings)
    assert replayed.bronze_runs == [good.run_id]


def test_a_bronze_run_pickles_as_its_location_and_a_worker_process_reads_the_store(s3_settings, fake_s3, monkeypatch):
    """Replay workers (and remote Dask workers) get a run by value and connect with their own credentials."""
    result = run_pipeline(s3_settings, source="api")
    run = bronze.find_run(s3_settings.bronze, result.run_id)
    for name, value in fake_s3.env("unused").items():
        if name.startswith("AWS_") and name != "AWS_ENDPOINT_URL":
            monkeypatch.setenv(name, value)  # the worker's own environment
    copy = pickle.loads(pickle.dumps(run))
    assert isinstance(copy.store, ObjectStore) and copy.store == run.store
    assert copy.markets_records() == run.markets_records()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(methodcaller("markets_records"), run).result(timeout=120) == run.markets_records()


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BRONZE_"))}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env={**base, **env, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("command", [["verify"], ["run", "--source", "sample"], ["replay"]])
def test_an_unreachable_object_store_fails_fast_as_one_line(command, fake_s3, tmp_path):
    env = {
        **fake_s3.env("s3://bronze/prefix", endpoint_url="http://127.0.0.1:9"),  # nothing listens on port 9
        "DATA_DIR": str(tmp_path / "data"),
        "PIPELINE_CLASSES_REFRESH_HOURS": "0",
        "PIPELINE_SECTORS_EVERY_MINUTES": "0",
    }
    done, took = run_cli(command, env)

    assert done.returncode == ObjectStoreUnavailable.exit_code == 7, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: object store s3://bronze/prefix"), done.stderr
    assert took < 15
    assert SECRET_KEY not in done.stderr + done.stdout
    assert not (tmp_path / "data" / "raw").exists()


def test_an_unreachable_object_store_fails_within_the_deadline_in_process(fake_s3, tmp_path):
    settings = Settings.from_env(
        {"DATA_DIR": str(tmp_path), **fake_s3.env("s3://bronze/prefix", endpoint_url="http://127.0.0.1:9")}
    )
    started = time.monotonic()
    with pytest.raises(ObjectStoreUnavailable) as caught:
        bronze.scan_runs(settings.bronze)
    assert time.monotonic() - started < 10
    assert "\n" not in str(caught.value) and SECRET_KEY not in str(caught.value)


def test_a_missing_bucket_is_named_before_any_work(fake_s3, tmp_path):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), **fake_s3.env("s3://no-such-bucket/prefix")})
    with pytest.raises(ObjectStoreUnavailable, match="bucket 'no-such-bucket' not found"):
        verify(settings.bronze)


def test_an_object_store_without_credentials_is_a_configuration_error(fake_s3, tmp_path):
    for missing in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env = fake_s3.env("s3://bronze/prefix")
        del env[missing]
        with pytest.raises(ConfigError, match=missing):
            Settings.from_env(env)
    for url in ("s3://", "s3://key:secret@bronze/prefix", "gs://bronze/prefix"):
        with pytest.raises(ConfigError):
            Settings.from_env({**fake_s3.env(url)})

    env = {**fake_s3.env("s3://bronze/prefix"), "DATA_DIR": str(tmp_path / "data")}
    del env["AWS_SECRET_ACCESS_KEY"]
    done, _took = run_cli(["run", "--source", "sample"], env)
    assert done.returncode == ConfigError.exit_code == 2
    assert "AWS_SECRET_ACCESS_KEY" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # before any work: no database, no bronze


def test_the_default_stays_the_local_raw_folder(tmp_path):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)})
    assert settings.bronze_url is None and settings.bronze.location() == str(tmp_path / "raw")
    local = Settings.from_env({"DATA_DIR": str(tmp_path), "BRONZE_URL": str(tmp_path / "elsewhere")})
    assert local.bronze.location() == str(tmp_path / "elsewhere")
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_object_store_writes_each_object_once_and_whole(fake_s3, bucket):
    store = Settings.from_env(fake_s3.env(f"s3://{bucket}/{PREFIX}")).bronze
    small, big = store.root / "d" / "small.json", store.root / "d" / "big.bin"
    store.write_once(small, b"[1, 2]")
    data = os.urandom(12 * 1024 * 1024)  # past the part size: a multipart upload, visible only when whole
    store.write_once(big, data)
    with pytest.raises(FileExistsError):
        store.write_once(small, b"[3]")  # bronze never overwrites
    assert store.read_bytes(small) == b"[1, 2]" and store.read_bytes(big) == data
    assert store.size(big) == len(data) and [p.name for p in store.files(store.root / "d")] == ["big.bin", "small.json"]
    with pytest.raises(FileNotFoundError):
        store.read_bytes(store.root / "d" / "missing.json")
    store.remove_tree(store.root / "d")
    assert fake_s3.keys(bucket, PREFIX) == []


def test_backfill_import_and_classes_keep_their_bronze_in_the_object_store(s3_settings, bucket, fake_coingecko):
    from pipeline import classes
    from pipeline.backfill import run_backfill
    from pipeline.importer import import_bodies
    from tests.integration.test_backfill import BODIES, COINS, NOW_2020
    from tests.integration.test_import import MARKETS_2023

    for coin_id, body in BODIES.items():
        fake_coingecko.set_market_chart(coin_id, body)
    settings = s3_settings.with_overrides(classes_refresh_hours=24)
    live = run_pipeline(settings, source="api")
    backfill = run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020)
    imported = import_bodies(settings, [MARKETS_2023])

    runs, damaged = bronze.scan_runs(settings.bronze, include_incomplete=True)
    assert not damaged and {r.source for r in runs} == {"api", classes.BRONZE_SOURCE, "backfill", "import"}
    assert all(r.location.startswith(f"s3://{bucket}/{PREFIX}/") for r in runs)
    assert backfill.bronze_folder.startswith(f"s3://{bucket}/{PREFIX}/") and backfill.points > 0
    assert not (settings.data_dir / "raw").exists()
    points = int(read(settings, "SELECT COUNT(*) AS n FROM staging_coin_history").n[0])

    replayed = replay(settings)
    assert set(replayed.bronze_runs) == {live.run_id, *imported.run.bronze_runs}
    assert int(read(settings, "SELECT COUNT(*) AS n FROM staging_coin_history").n[0]) == points
    assert verify(settings.bronze).healthy
