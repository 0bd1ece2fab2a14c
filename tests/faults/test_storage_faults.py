"""Storage faults: a full disk and damaged bronze files lose nothing and block nothing.

* A run that fills the disk fails with one clear line; only whole files (or none) sit
  under final names; earlier bronze runs and gold stay as they were; replay and the
  next run still work.
* A damaged bronze run (a flipped byte, a truncated or missing body, a 0-byte or
  malformed manifest, a garbled Parquet copy) is skipped and reported by replay and
  prune, and found by ``python -m pipeline verify`` (exit 1).

The full disk is a real 16 MB tmpfs when this process may mount one (root with
CAP_SYS_ADMIN, as in CI containers that allow it); elsewhere (or with
TEST_SIMULATED_DISK=1) the same folder with a simulated quota: ``os.write`` to a
file under it writes what fits, then raises ENOSPC, as the kernel does. Either
way the tests run; none is skipped.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from pipeline import bronze
from pipeline.atomic import is_temp_name
from pipeline.db import make_engine
from pipeline.errors import BronzeError, PipelineError
from pipeline.flow import replay, run_pipeline
from pipeline.prune import prune
from tests.conftest import REPO_ROOT, make_settings, settings_env

MiB = 1024 * 1024


class SmallDisk:
    """A folder on a small filesystem: ``leave_free(n)`` fills it so only ``n`` bytes remain."""

    SIZE = 16 * MiB

    def __init__(self, root: Path, monkeypatch):
        self.root = root
        root.mkdir()
        self.real = self._mount()
        self._free: int | None = None  # simulated quota: bytes left, None = no limit
        if not self.real:
            self._simulate(monkeypatch)

    def _mount(self) -> bool:
        if os.environ.get("TEST_SIMULATED_DISK") or os.geteuid() != 0 or shutil.which("mount") is None:
            return False
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.SIZE},mode=0755", "tmpfs", str(self.root)],
            capture_output=True,
            text=True,
        )
        return done.returncode == 0

    def _simulate(self, monkeypatch) -> None:
        real_write = os.write
        prefix = str(self.root.resolve()) + os.sep

        def on_disk(fd: int) -> bool:
            try:
                return os.readlink(f"/proc/self/fd/{fd}").startswith(prefix)
            except OSError:
                return False

        def write(fd, data):
            if self._free is None or not on_disk(fd):
                return real_write(fd, data)
            if self._free <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written = real_write(fd, memoryview(data)[: self._free])
            self._free -= written
            return written

        monkeypatch.setattr(os, "write", write)

    @property
    def kind(self) -> str:
        return "tmpfs" if self.real else "simulated quota"

    def usage(self, paths) -> int:
        """The space these files take on this disk (whole pages on tmpfs)."""
        return sum(p.stat().st_blocks * 512 if self.real else p.stat().st_size for p in paths)

    def leave_free(self, nbytes: int) -> None:
        self.release()
        if not self.real:
            self._free = nbytes
            return
        stats = os.statvfs(self.root)
        page = stats.f_frsize
        fill = stats.f_bavail * page - -(-nbytes // page) * page
        assert fill > 0, "the test disk is too small for this test"
        fd = os.open(self.root / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, fill)
        finally:
            os.close(fd)

    def release(self) -> None:
        self._free = None
        if self.real:
            (self.root / "filler").unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True)


@pytest.fixture
def disk(tmp_path, monkeypatch):
    small = SmallDisk(tmp_path / "disk", monkeypatch)
    yield small
    small.unmount()


def read(settings, sql: str, **params) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def _same_to_12_digits(value):
    """Floats as 12 significant digits: a full rebuild may sum in another order (last-bit differences)."""
    return f"{value:.12g}" if isinstance(value, float) else str(value)


def gold_rows(settings) -> dict[str, list[tuple]]:
    return {
        t: [
            tuple(_same_to_12_digits(v) for v in r)
            for r in read(settings, f"SELECT * FROM {t} ORDER BY {o}").itertuples(index=False)
        ]
        for t, o in [
            ("crypto_analytics_mart", "id"),
            ("market_segment_analysis", "market_cap_category"),
            ("market_history", "snapshot_at"),
        ]
    }


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def next_second() -> None:
    """Snapshots are stamped to the second: make the next run's snapshot a different one."""
    time.sleep(1.05 - time.time() % 1)


@pytest.fixture
def served(monkeypatch) -> dict[tuple[Path, str], bytes]:
    """Every body handed to bronze, by (run folder, file name): what a whole file must hold."""
    bodies: dict[tuple[Path, str], bytes] = {}
    original = bronze.BronzeWriter.add

    def add(self, response):
        bodies[(self.folder, bronze._file_stem(response) + ".json")] = response.body
        return original(self, response)

    monkeypatch.setattr(bronze.BronzeWriter, "add", add)
    return bodies


def assert_only_whole_files(folder: Path, served: dict) -> None:
    """Under final names: complete bodies, readable Parquet copies of them, a valid manifest. No temp files."""
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        assert not is_temp_name(path.name), f"temporary file left behind: {path.name}"
        assert data, f"0-byte file under a final name: {path.name}"
        if path.name == bronze.MANIFEST:
            manifest = json.loads(data)
            assert manifest["complete"] is False and "No space left on device" in manifest["error"]
        elif path.suffix == ".json":
            assert data == served[(folder, path.name)], f"truncated body: {path.name}"
        elif path.suffix == ".parquet":
            body = json.loads(served[(folder, path.stem + ".json")])
            assert pq.read_table(path).num_rows == (len(body) if isinstance(body, list) else 1), path.name
        else:
            raise AssertionError(f"unexpected file {path.name}")


# ---- a full disk -------------------------------------------------------------------

#: Where the second run meets the full disk: free space left, from run A's file sizes.
FULL_AT = {
    "in the markets body": lambda disk, a: 64 * 1024,
    "in its Parquet copy": lambda disk, a: disk.usage([a / "markets_p001.json"]) + 64 * 1024,
    "in the manifest": lambda disk, a: disk.usage([p for p in a.iterdir() if p.name != bronze.MANIFEST]),
}


@pytest.mark.parametrize("where", list(FULL_AT))
def test_a_full_disk_fails_the_run_cleanly_and_blocks_nothing(settings, disk, served, where):
    settings = settings.with_overrides(data_dir=disk.root / "data")
    first = run_pipeline(settings, source="api")
    first_folder = bronze.find_run(settings.raw_dir, first.run_id).folder
    first_files, gold_before = hashes(first_folder), gold_rows(settings)
    next_second()

    disk.leave_free(FULL_AT[where](disk, first_folder))
    with pytest.raises(PipelineError) as failure:
        run_pipeline(settings, source="api")
    message = str(failure.value)
    assert isinstance(failure.value, BronzeError), f"{disk.kind}: {type(failure.value).__name__}: {message}"
    assert "No space left on device" in message and "bronze" in message and "\n" not in message

    # The failed run: logged with that line; whole files or none on disk.
    runs = read(settings, "SELECT run_id, status, error_message FROM pipeline_runs ORDER BY started_at")
    assert list(runs.status) == ["success", "failed"] and runs.error_message[1] == message
    (failed_folder,) = [p for p in settings.raw_dir.glob("*/*") if p.name == runs.run_id[1]]
    assert_only_whole_files(failed_folder, served)
    # Nothing earlier was touched.
    assert hashes(first_folder) == first_files
    assert gold_rows(settings) == gold_before
    assert [r.run_id for r in bronze.list_runs(settings.raw_dir)] == [first.run_id]

    # Nothing is stuck: replay skips the failed run, verify finds no damage, the next run works.
    disk.release()
    replayed = replay(settings)
    assert replayed.bronze_runs == [first.run_id] and replayed.silver_rows == 250
    assert gold_rows(settings) == gold_before
    from pipeline.verify import verify

    report = verify(settings.raw_dir)
    assert report.healthy and report.checked in (1, 2), report.lines()
    next_second()
    assert run_pipeline(settings, source="api").status == "success"


# ---- damaged bronze runs -------------------------------------------------------------


def writable(path: Path) -> Path:
    os.chmod(path, 0o644)
    return path


def flip_byte(path: Path) -> None:
    data = bytearray(writable(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = writable(path).read_bytes()
    path.write_bytes(data[: len(data) // 3])


def set_manifest(folder: Path, data: bytes) -> None:
    writable(folder / bronze.MANIFEST).write_bytes(data)


DAMAGE = {
    "a flipped byte in a body": lambda f: flip_byte(f / "markets_p001.json"),
    "a truncated body": lambda f: truncate(f / "markets_p001.json"),
    "a missing body": lambda f: writable(f / "global.json").unlink(),
    "a 0-byte manifest": lambda f: set_manifest(f, b""),
    "a manifest that is not JSON": lambda f: set_manifest(f, b'{"run_id": "x", "entries": [{"fi'),
    "a manifest of the wrong shape": lambda f: set_manifest(f, json.dumps({"run_id": f.name, "files": []}).encode()),
    # What a full disk left before writes were atomic.
    "truncated bodies and a 0-byte manifest": lambda f: (
        truncate(f / "markets_p001.json"),
        truncate(f / "markets_p001.parquet"),
        set_manifest(f, b""),
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_replay_skips_and_reports_a_damaged_run(settings, damage, tmp_path):
    """Needs flow.replay to skip runs that scan_runs/check_run find damaged, with a warning naming each."""
    good = run_pipeline(settings, source="sample")
    damaged = run_pipeline(settings, source="api")
    folder = bronze.find_run(settings.raw_dir, damaged.run_id).folder
    DAMAGE[damage](folder)

    result = replay(settings)

    assert result.status == "success"
    assert result.bronze_runs == [good.run_id] and result.silver_rows == 250
    assert any(damaged.run_id in w for w in result.warnings), result.warnings
    # Into an empty warehouse: silver and gold hold the good run only.
    fresh = settings.with_overrides(database_url=f"sqlite:///{tmp_path / 'rebuilt.db'}")
    assert replay(fresh).bronze_runs == [good.run_id]
    silver = read(fresh, "SELECT run_id, COUNT(*) AS n FROM staging_crypto_market GROUP BY run_id")
    assert dict(zip(silver.run_id, silver.n)) == {good.run_id: 250}
    assert list(read(fresh, "SELECT DISTINCT run_id FROM crypto_analytics_mart").run_id) == [good.run_id]


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_run_never_blocks_listing_verify_or_prune(settings, damage):
    good = run_pipeline(settings, source="sample")
    damaged = run_pipeline(settings, source="api")
    folder = bronze.find_run(settings.raw_dir, damaged.run_id).folder
    DAMAGE[damage](folder)

    runs, problems = bronze.scan_runs(settings.raw_dir)
    checked = {r.run_id: bronze.check_run(r) for r in runs}
    found = [p.reason for p in problems if p.folder == folder] + checked.get(damaged.run_id, [])
    assert len(found) >= 1 and checked[good.run_id] == []
    from pipeline.verify import verify

    report = verify(settings.raw_dir)
    assert [d.folder for d in report.damaged] == [folder] and report.checked == 2

    pruned = prune(settings, keep_days=30, dry_run=True)  # does not raise
    sample_folder = bronze.find_run(settings.raw_dir, good.run_id).folder
    assert [f.folder for f in pruned.folders] == [sample_folder]  # recorded in 2022; the damaged run is today's
    assert [d.folder for d in pruned.damaged] == [p.folder for p in problems]


def test_garbled_parquet_copy_is_found_by_a_deep_check_only(settings):
    result = run_pipeline(settings, source="api")
    run = bronze.find_run(settings.raw_dir, result.run_id)
    flip_byte(run.folder / "markets_p001.parquet")
    assert bronze.check_run(run) == []
    assert bronze.check_run(run, deep=True) == ["markets_p001.parquet: sha256 mismatch (changed since it was written)"]
    assert replay(settings).bronze_runs == [result.run_id]  # replay reads the JSON bodies only


# ---- python -m pipeline verify -------------------------------------------------------


def verify_cli(settings, *args):
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "verify", *args],
        env=settings_env(settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def sqlite_settings(tmp_path):
    """verify reads files only: one database kind is enough."""
    return make_settings(f"sqlite:///{tmp_path / 'warehouse.db'}", tmp_path / "data")


def test_verify_exit_codes(sqlite_settings):
    settings = sqlite_settings
    first = run_pipeline(settings, source="sample").run_id
    next_second()
    second = run_pipeline(settings, source="sample").run_id

    healthy = verify_cli(settings)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.splitlines()[-1].startswith("verify: 2 runs checked, 0 damaged")
    assert healthy.stderr == ""

    # A folder left without a manifest (a killed run) is listed, and is not an error.
    killed = settings.raw_dir / "2020-01-01" / "20200101T000000Z-dead00"
    killed.mkdir(parents=True)
    (killed / "markets_p001.json").write_bytes(b"[]")
    result = verify_cli(settings)
    assert result.returncode == 0
    assert "incomplete bronze run 20200101T000000Z-dead00" in result.stdout
    assert "2 runs checked, 0 damaged, 1 incomplete" in result.stdout

    # A garbled Parquet copy: damage for the default (deep) check, invisible to --quick.
    flip_byte(bronze.find_run(settings.raw_dir, second).folder / "markets_p001.parquet")
    deep = verify_cli(settings)
    assert deep.returncode == 1
    (line,) = [row for row in deep.stdout.splitlines() if row.startswith("damaged")]
    assert line.startswith(f"damaged bronze run {second} (") and "markets_p001.parquet: sha256 mismatch" in line
    assert "2 runs checked, 1 damaged" in deep.stdout
    assert deep.stderr.strip() == "error: 1 of 2 bronze runs damaged (listed above)"
    assert "Traceback" not in deep.stderr
    assert verify_cli(settings, "--deep").returncode == 1
    assert verify_cli(settings, "--quick").returncode == 0

    # --run checks one run; an unknown one is an error.
    assert verify_cli(settings, "--run", first).returncode == 0
    assert "1 runs checked, 0 damaged" in verify_cli(settings, "--run", first).stdout
    assert verify_cli(settings, "--run", second).returncode == 1
    unknown = verify_cli(settings, "--run", "20990101T000000Z-nope00")
    assert unknown.returncode == 1 and "no bronze run 20990101T000000Z-nope00" in unknown.stderr

    # A 0-byte manifest: listed as damaged, with its folder.
    set_manifest(bronze.find_run(settings.raw_dir, first).folder, b"")
    both = verify_cli(settings)
    assert both.returncode == 1
    assert f"damaged bronze run {first} (" in both.stdout and "manifest.json is empty (0 bytes)" in both.stdout
    assert "2 runs checked, 2 damaged" in both.stdout
