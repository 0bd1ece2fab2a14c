"""A listed run is kept small: its manifest's top fields held, its entries read again when asked for."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from pipeline.bronze import (
    MANIFEST,
    ListedManifest,
    RunListing,
    check_run,
    healthy_runs,
    list_runs,
    run_folders,
    scan_runs,
)
from pipeline.errors import BronzeError
from pipeline.silver.batches import prepare_batch
from pipeline.storage import LocalStore
from tests.conftest import REPO_ROOT
from tests.unit.test_bronze import FETCHED, GLOBAL, MARKETS_10, STARTED, response, writer

RUNS = 150


def write_runs(raw_dir, count: int) -> None:
    for number in range(count):
        w = writer(raw_dir, run_id=f"run-{number:05d}", started_at=STARTED + timedelta(hours=number))
        at = FETCHED + timedelta(hours=number)
        w.add(response(MARKETS_10, fetched_at=at))
        w.add(response(GLOBAL, endpoint="global", path="/global", params={}, page=None, fetched_at=at))
        w.finish(snapshot_at=at, complete=True)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw")
    write_runs(folder, RUNS)
    return folder


#: Measured in a fresh interpreter: tracemalloc counts every thread's allocations, and a thread an
#: earlier test left running (a server, a pool) would be counted as the listing's.
_LISTING_MEMORY = """
import gc, sys, tracemalloc
from pipeline.bronze import healthy_runs
healthy_runs(sys.argv[1])  # the first listing interns the names every manifest shares
gc.collect()
tracemalloc.start()
runs, _ = healthy_runs(sys.argv[1])
gc.collect()
held, _ = tracemalloc.get_traced_memory()
print(len(runs), held)
"""


def test_listed_runs_hold_a_fraction_of_their_parsed_manifests(raw_dir):
    """A replay lists every run before loading one: 37,586 parsed manifests took 118 MB (3.2 KB a run)."""
    done = subprocess.run(
        [sys.executable, "-c", _LISTING_MEMORY, str(raw_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    listed, held = map(int, done.stdout.split())
    assert listed == RUNS
    # here: 3,010 bytes with whole manifests, ~990 as objects with a path of each run's own, ~700 with
    # the date folder shared, ~300 packed (RunListing)
    assert held / RUNS < 400, f"{held / RUNS:.0f} bytes a listed run"


def test_a_listed_manifest_answers_as_the_file_does(raw_dir):
    runs = list_runs(raw_dir)
    assert len({id(run.parent) for run in runs}) == len({run.parent for run in runs})  # one object a date folder
    for run in runs:
        assert run.folder == run.parent / run.name and run.run_id is run.name
        on_disk = json.loads((run.folder / MANIFEST).read_text())
        assert isinstance(run.manifest, ListedManifest)
        assert dict(run.manifest) == on_disk
        assert run.manifest["entries"] == on_disk["entries"]
        assert run.loaded().manifest == on_disk
        assert run.markets_record_count == 10
        assert ("partial_sweep" in run.manifest, run.manifest.get("partial_sweep")) == (False, None)


def test_top_fields_need_no_read(tmp_path):
    """Sorting, batching and the snapshot ledger ask only top fields: no file is read for them."""
    write_runs(tmp_path, 2)
    runs = list_runs(tmp_path)
    for run in runs:
        (run.folder / MANIFEST).chmod(0o600)
        (run.folder / MANIFEST).unlink()
    run = runs[0]
    assert (run.run_id, run.source, run.top_n, run.snapshot_at) == ("run-00000", "api", 100, FETCHED)
    assert run.markets_record_count == 10
    assert run.manifest.get("fetched_at") is None and run.manifest.get("partial_sweep") is None
    with pytest.raises(BronzeError, match="unreadable since the run was listed"):
        run.loaded()


def test_a_manifest_changed_after_listing_is_refused(tmp_path):
    """Bronze is never rewritten: a manifest that is not the one listed is damage, never read as if it were."""
    write_runs(tmp_path, 2)
    runs, _ = scan_runs(tmp_path)
    path = runs[1].folder / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["entries"][0]["records"] = 3
    path.chmod(0o600)
    path.write_text(json.dumps(manifest))
    with pytest.raises(BronzeError, match="changed since the run was listed"):
        runs[1].loaded()
    assert check_run(runs[1]) == [f"{path} changed since the run was listed (sha256 mismatch)"]
    with pytest.raises(BronzeError, match="changed since the run was listed"):
        prepare_batch(runs)
    assert check_run(runs[0]) == []


def test_a_listed_run_travels_to_a_worker(raw_dir):
    """Replay workers get their batch pickled: a listed run pickles small and reads its manifest there."""
    run = list_runs(raw_dir)[0]
    travelled = pickle.loads(pickle.dumps(run))
    assert travelled.manifest["entries"] == run.manifest["entries"]
    assert len(pickle.dumps(run)) < len(pickle.dumps(run.loaded()))
    batch = prepare_batch([travelled])
    assert batch.rows.num_rows == 10


def test_run_folders_are_listed_a_date_folder_at_a_time(raw_dir):
    """40,000 runs' paths listed at once took 12 MB during a replay's listing and left its memory
    fragmented: the folders come a date folder at a time, still in path order."""
    asked = []

    class Recording(LocalStore):
        def folders(self, path):
            asked.append(path)
            return super().folders(path)

    folders = run_folders(Recording(raw_dir))
    first = next(folders)
    assert asked == [raw_dir, first.parent]
    every = [first, *folders]
    assert every == sorted(folder for day in raw_dir.iterdir() for folder in day.iterdir())
    assert len(every) == RUNS and asked == [raw_dir, *sorted({folder.parent for folder in every})]


def test_a_run_listing_builds_each_run_when_asked_for(raw_dir):
    """The replay's listing is packed: indexing, iterating, slicing and selecting give the runs
    scan_runs gives, each built when asked for; moved snapshot times stay with their runs."""
    listing, _ = healthy_runs(raw_dir)
    runs = list_runs(raw_dir)
    assert isinstance(listing, RunListing) and len(listing) == len(runs) == RUNS
    assert [(r.run_id, r.folder, r.snapshot_at) for r in listing] == [(r.run_id, r.folder, r.snapshot_at) for r in runs]
    assert listing[-1].run_id == runs[-1].run_id and listing[7].manifest["entries"] == runs[7].manifest["entries"]
    assert listing[3].markets_record_count == 10 and listing[3].loaded().manifest == runs[3].loaded().manifest
    part = listing[10:20]
    assert isinstance(part, RunListing) and [r.run_id for r in part] == [r.run_id for r in runs[10:20]]
    odd = listing.select(lambda r: int(r.run_id[-1]) % 2 == 1)
    assert [r.run_id for r in odd] == [r.run_id for r in runs if int(r.run_id[-1]) % 2 == 1]
    assert [r.run_id for r in odd[2:4]] == [runs[5].run_id, runs[7].run_id]
    moved = odd.with_snapshot_times({1: "2030-01-01T00:00:00"})
    assert moved[1].run_id == runs[3].run_id and moved[1].snapshot_at == datetime(2030, 1, 1)
    assert moved[1].manifest["entries"] == runs[3].manifest["entries"]
    assert moved[0:2][1].snapshot_at == datetime(2030, 1, 1) and moved[0].snapshot_at == runs[1].snapshot_at
    assert odd[1].snapshot_at == runs[3].snapshot_at  # the listing it came from is unchanged
    assert prepare_batch(list(moved[1:2])).rows.column("snapshot_at").to_pylist() == [datetime(2030, 1, 1)] * 10
