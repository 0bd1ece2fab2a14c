"""Bronze: every body exactly as received, a Parquet copy, a manifest; never overwritten."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import atomic
from pipeline.bronze import MANIFEST, BronzeRun, BronzeWriter, DamagedRun, check_run, find_run, list_runs, scan_runs
from pipeline.errors import BronzeError
from pipeline.providers.coingecko import fetch_global, fetch_markets
from pipeline.providers.coingecko.client import ApiResponse, CoinGeckoClient
from pipeline.silver.batches import bronze_snapshot
from pipeline.silver.transform import RAW_KEYS as SILVER_RAW_KEYS
from pipeline.silver.transform import Snapshot, transform_snapshots
from tests.fakes.coingecko import DEFAULT_GLOBAL, FIXTURES_DIR

STARTED = datetime(2024, 3, 5, 23, 59, 58, 123456)
FETCHED = datetime(2024, 3, 5, 23, 59, 59, 654321)
MARKETS_10 = (FIXTURES_DIR / "markets/markets_10_2020-07-04_rudijs-coin-bot.json").read_bytes()  # pretty-printed
MARKETS_100 = (FIXTURES_DIR / "markets/madjin-daily-crypto/prices_2025-01-01_015307Z_482a5d639c.json").read_bytes()
GLOBAL = (FIXTURES_DIR / DEFAULT_GLOBAL).read_bytes()
PARAMS = {"vs_currency": "usd", "order": "market_cap_desc", "per_page": 100, "page": 1}


def response(
    body: bytes,
    *,
    endpoint="markets",
    path="/coins/markets",
    params=None,
    status=200,
    attempt=1,
    page=1,
    fetched_at=FETCHED,
):
    return ApiResponse(
        endpoint=endpoint,
        path=path,
        params=dict(PARAMS if params is None else params),
        status=status,
        body=body,
        fetched_at=fetched_at,
        attempt=attempt,
        page=page,
    )


def writer(raw_dir: Path, run_id="run-a", started_at=STARTED, **kw) -> BronzeWriter:
    return BronzeWriter(raw_dir, run_id, source="api", started_at=started_at, vs_currency="usd", top_n=100, **kw)


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


# ---- bodies and Parquet ----------------------------------------------------------


@pytest.mark.parametrize("body", [MARKETS_10, MARKETS_100], ids=["pretty-printed", "compact"])
def test_body_written_byte_for_byte(tmp_path, body):
    w = writer(tmp_path)
    w.add(response(body))
    path = w.folder / "markets_p001.json"
    assert w.folder == tmp_path / "2024-03-05" / "run-a"
    assert path.read_bytes() == body
    entry = w.entries[0]
    assert entry["sha256"] == hashlib.sha256(body).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["bytes"] == len(body)


def test_parquet_per_good_body(tmp_path):
    w = writer(tmp_path)
    w.add(response(MARKETS_100, page=1))
    w.add(response(MARKETS_10, page=2))
    w.add(response(GLOBAL, endpoint="global", path="/global", params={}, page=None))
    files = sorted(p.name for p in w.folder.glob("*.parquet"))
    assert files == ["global.parquet", "markets_p001.parquet", "markets_p002.parquet"]
    t1 = pq.read_table(w.folder / "markets_p001.parquet")
    assert t1.num_rows == 100 == len(json.loads(MARKETS_100))
    assert t1.column("id").to_pylist() == [r["id"] for r in json.loads(MARKETS_100)]
    assert pq.read_table(w.folder / "markets_p002.parquet").num_rows == 10
    g = pq.read_table(w.folder / "global.parquet")
    assert g.num_rows == 1 and "total_market_cap" in g.column_names
    assert [e["parquet"] for e in w.entries] == ["markets_p001.parquet", "markets_p002.parquet", "global.parquet"]
    assert [e["records"] for e in w.entries] == [100, 10, 1]


def test_no_parquet_when_disabled(tmp_path):
    w = writer(tmp_path, write_parquet=False)
    w.add(response(MARKETS_10))
    assert list(w.folder.glob("*.parquet")) == [] and w.entries[0]["parquet"] is None
    assert w.entries[0]["used"] is True


@pytest.mark.parametrize(
    "body, rows",
    [
        (b'[{"id":"a","current_price":1.5},{"id":"b","current_price":"n/a"}]', 2),
        (b'[{"id":"a","roi":null},{"id":"b","roi":[1,"x"]}]', 2),
        (b'[{"id":"a"},7,"text",null]', 4),
        (b"[]", 0),
        (b'[{"id":"a","total_supply":1.5},{"id":"b","total_supply":1' + b"0" * 400 + b"}]", 2),  # beyond a float
    ],
)
def test_mixed_types_fall_back_to_json_text(tmp_path, body, rows):
    w = writer(tmp_path)
    w.add(response(body))
    table = pq.read_table(w.folder / "markets_p001.parquet")
    assert table.num_rows == rows
    if rows:
        assert table.column_names == ["record_json"]
        assert [json.loads(v) for v in table.column("record_json").to_pylist()] == json.loads(body)
    assert (w.folder / "markets_p001.json").read_bytes() == body


def test_an_integer_beyond_2_53_among_floats_gets_a_typed_copy_replay_reads(tmp_path):
    """CoinGecko sends some supplies as integers beyond 2**53 (156124856092293500) in a column of floats.
    pyarrow refuses to type such a column; the whole page then fell back to JSON text, and one such page
    sent a whole-market snapshot (68 pages) down the slow JSON path. Silver reads every number as a
    float64, so the copy holds the float silver reads, typed, and replay reads it: same silver rows."""
    records = json.loads(MARKETS_100)
    records[3]["total_supply"] = 156124856092293500
    records[4]["max_supply"] = -(2**60) - 1
    body = json.dumps(records).encode()
    w = writer(tmp_path)
    w.add(response(body))
    w.finish(snapshot_at=FETCHED, complete=True)
    table = pq.read_table(w.folder / "markets_p001.parquet")
    assert "record_json" not in table.column_names
    assert table.column("total_supply")[3].as_py() == float(156124856092293500)
    assert table.column("max_supply")[4].as_py() == float(-(2**60) - 1)
    assert manifest_of(w.folder)["entries"][0]["parquet_exact"] is True
    run = find_run(tmp_path, "run-a")
    assert run.markets_pages(SILVER_RAW_KEYS)[0].table is not None  # replay reads the copy, not the JSON
    from_copy = bronze_snapshot(run)
    assert from_copy.table is not None and from_copy.records == []
    from_json = Snapshot("run-a", FETCHED, "api", records, from_copy.fetched_at)
    copied, parsed = transform_snapshots([from_copy]), transform_snapshots([from_json])
    assert copied.table.equals(parsed.table)
    assert copied.table.column("total_supply")[3].as_py() == float(156124856092293500)


def test_empty_object_field_still_yields_parquet(tmp_path):
    w = writer(tmp_path)
    body = b'[{"id":"a","roi":{}},{"id":"b","roi":{}}]'
    w.add(response(body))
    assert pq.read_table(w.folder / "markets_p001.parquet").num_rows == 2
    assert w.entries[0]["used"] is True


# ---- manifest ----------------------------------------------------------------


def test_manifest_fields(tmp_path):
    w = writer(tmp_path)
    w.add(response(MARKETS_100))
    snapshot = datetime(2024, 3, 6, 0, 0, 1)
    path = w.finish(snapshot_at=snapshot, complete=True)
    assert path == w.folder / MANIFEST
    m = manifest_of(w.folder)
    assert m["run_id"] == "run-a" and m["source"] == "api" and m["vs_currency"] == "usd" and m["top_n"] == 100
    assert m["started_at"] == "2024-03-05T23:59:58.123456"
    assert m["snapshot_at"] == "2024-03-06T00:00:01.000000"
    assert m["complete"] is True and m["error"] is None
    (e,) = m["entries"]
    assert e["file"] == "markets_p001.json" and e["parquet"] == "markets_p001.parquet"
    assert e["endpoint"] == "markets" and e["path"] == "/coins/markets"
    assert e["params"] == PARAMS
    assert e["fetched_at"] == "2024-03-05T23:59:59.654321"
    assert e["status"] == 200 and e["attempt"] == 1 and e["page"] == 1
    assert e["records"] == 100 and e["used"] is True
    assert e["sha256"] == hashlib.sha256(MARKETS_100).hexdigest()


def test_incomplete_run_records_its_error(tmp_path):
    w = writer(tmp_path)
    w.finish(snapshot_at=None, complete=False, error="HTTP 500")
    m = manifest_of(w.folder)
    assert m["complete"] is False and m["error"] == "HTTP 500" and m["snapshot_at"] is None


# ---- never overwritten -----------------------------------------------------------


def test_files_are_read_only_and_never_overwritten(tmp_path):
    w = writer(tmp_path)
    w.add(response(MARKETS_10))
    w.finish(snapshot_at=FETCHED, complete=True)
    for path in w.folder.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0, (path.name, oct(mode))
    with pytest.raises(FileExistsError):
        w.add(response(b'[{"id":"other"}]'))  # same name: markets_p001.json
    assert (w.folder / "markets_p001.json").read_bytes() == MARKETS_10
    with pytest.raises(FileExistsError):
        w.finish(snapshot_at=FETCHED, complete=False)
    assert manifest_of(w.folder)["complete"] is True
    with pytest.raises(FileExistsError):
        writer(tmp_path)  # same run folder again


def test_failed_attempts_are_kept_unused(tmp_path):
    w = writer(tmp_path)
    body_429 = b'{"status":{"error_code":429,"error_message":"You\'ve exceeded the Rate Limit."}}'
    truncated = MARKETS_100[: len(MARKETS_100) // 2]
    w.add(response(body_429, status=429, attempt=1))
    w.add(response(truncated, status=200, attempt=2))
    w.add(response(MARKETS_100, status=200, attempt=3))
    names = [e["file"] for e in w.entries]
    assert names == ["markets_p001_a1_429.json", "markets_p001_a2_200.json", "markets_p001_a3_200.json"]
    assert (w.folder / names[0]).read_bytes() == body_429
    assert (w.folder / names[1]).read_bytes() == truncated
    assert [e["used"] for e in w.entries] == [False, False, True]
    assert [e["parquet"] for e in w.entries][:2] == [None, None]
    assert w.entries[0]["records"] is None and w.entries[0]["status"] == 429
    assert "not valid JSON" in w.entries[1]["error"]
    w.finish(snapshot_at=FETCHED, complete=True)
    run = find_run(tmp_path, "run-a")
    assert len(run.markets_records()) == 100  # only the used body is replayed


# ---- the API key never lands in bronze ---------------------------------------------


def test_api_key_never_in_any_bronze_file(tmp_path, fake_coingecko):
    key = "secret-demo-key-123"
    w = writer(tmp_path)
    fake_coingecko.add_fault("429", retry_after=0)
    fake_coingecko.add_fault("truncated", endpoint="global")
    client = CoinGeckoClient(
        fake_coingecko.base_url, api_key=key, calls_per_minute=0, backoff_base_seconds=0.01, on_response=w.add
    )
    pages = list(fetch_markets(client, vs_currency="usd", top_n=250))
    fetch_global(client)
    w.finish(snapshot_at=FETCHED, complete=True)
    assert all(r.headers.get("x-cg-demo-api-key") == key for r in fake_coingecko.requests)  # it was sent
    files = [p for p in w.folder.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == [
        "global.json",  # the truncated first attempt, kept (no Parquet: not JSON)
        "global_a2_200.json",
        "global_a2_200.parquet",
        "manifest.json",
        "markets_p001_a1_429.json",
        "markets_p001_a2_200.json",
        "markets_p001_a2_200.parquet",
    ]
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data, path.name
        assert b"secret-demo" not in data, path.name
    m = manifest_of(w.folder)
    assert [(e["endpoint"], e["status"], e["used"]) for e in m["entries"]] == [
        ("markets", 429, False),
        ("markets", 200, True),
        ("global", 200, False),
        ("global", 200, True),
    ]
    assert len(pages) == 1
    assert find_run(tmp_path, "run-a").markets_records() == pages[0].json()


# ---- reading back ------------------------------------------------------------------


def _complete_run(raw_dir, run_id, started, snapshot, pages):
    w = BronzeWriter(raw_dir, run_id, source="api", started_at=started, vs_currency="usd", top_n=10)
    for number, body in pages:
        w.add(response(body, page=number))
    w.finish(snapshot_at=snapshot, complete=snapshot is not None)
    return w


def test_list_runs_skips_incomplete_and_sorts_by_snapshot(tmp_path):
    _complete_run(tmp_path, "run-late", datetime(2024, 1, 1, 0, 0), datetime(2024, 1, 3, 12, 0), [(1, MARKETS_10)])
    _complete_run(tmp_path, "run-early", datetime(2024, 1, 2, 0, 0), datetime(2024, 1, 2, 0, 5), [(1, MARKETS_10)])
    _complete_run(tmp_path, "run-b-tie", datetime(2024, 1, 2, 0, 0), datetime(2024, 1, 2, 0, 5), [(1, MARKETS_10)])
    _complete_run(tmp_path, "run-failed", datetime(2024, 1, 2, 1, 0), None, [])
    unfinished = writer(tmp_path, run_id="run-no-manifest", started_at=datetime(2024, 1, 2, 2, 0))
    unfinished.add(response(MARKETS_10))
    runs = list_runs(tmp_path)
    assert [r.run_id for r in runs] == ["run-b-tie", "run-early", "run-late"]
    assert all(isinstance(r, BronzeRun) for r in runs)
    assert runs[0].snapshot_at == datetime(2024, 1, 2, 0, 5) and runs[0].source == "api"
    assert runs[0].top_n == 10 and runs[0].vs_currency == "usd"
    with_incomplete = [r.run_id for r in list_runs(tmp_path, include_incomplete=True)]
    assert "run-failed" in with_incomplete and "run-no-manifest" not in with_incomplete
    assert list_runs(tmp_path / "nothing-here") == []


def test_list_runs_leaves_out_an_unreadable_manifest_and_keeps_the_rest(tmp_path, caplog):
    _complete_run(tmp_path, "run-good", STARTED, FETCHED, [(1, MARKETS_10)])
    folder = tmp_path / "2024-01-01" / "run-x"
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text("{not json")
    assert [r.run_id for r in list_runs(tmp_path)] == ["run-good"]  # no longer raises
    assert "run-x" in caplog.text and "not valid JSON" in caplog.text  # but says so
    with pytest.raises(BronzeError, match=r"run-x is damaged .*not valid JSON"):
        find_run(tmp_path, "run-x")


def test_markets_records_in_page_order(tmp_path):
    p1 = json.dumps([{"id": "a"}, {"id": "b"}]).encode()
    p2 = json.dumps([{"id": "c"}]).encode()
    _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(2, p2), (1, p1)])
    run = find_run(tmp_path, "run-a")
    assert [r["id"] for r in run.markets_records()] == ["a", "b", "c"]
    assert run.global_body() is None


def test_tampered_file_is_detected(tmp_path):
    _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, MARKETS_10)])
    run = find_run(tmp_path, "run-a")
    assert len(run.markets_records()) == 10
    path = run.folder / "markets_p001.json"
    os.chmod(path, 0o644)
    path.write_bytes(MARKETS_10.replace(b'"bitcoin"', b'"bitcoim"'))
    with pytest.raises(BronzeError, match="sha256"):
        run.markets_records()
    path.unlink()
    with pytest.raises(BronzeError, match="missing"):
        run.markets_records()


def test_find_run_unknown(tmp_path):
    with pytest.raises(BronzeError, match="run-zzz"):
        find_run(tmp_path, "run-zzz")


# ---- damage never blocks the other runs ----------------------------------------------


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Change one byte in place, keeping the size (what a bad sector or a stray edit does)."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def replace_manifest(folder: Path, data: bytes) -> None:
    path = folder / MANIFEST
    if path.exists():
        os.chmod(path, 0o644)
    path.write_bytes(data)


def edit_manifest(folder: Path, change) -> None:
    manifest = manifest_of(folder)
    change(manifest)
    replace_manifest(folder, json.dumps(manifest).encode())


def _drop(key):
    return lambda m: m.pop(key)


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


def _entry(key, value):
    return lambda m: m["entries"][0].__setitem__(key, value)


MANIFEST_DAMAGE = {
    "empty file": (b"", "is empty (0 bytes)"),
    "blank": (b"  \n", "is empty (3 bytes)"),
    "truncated JSON": (b'{"manifest_version": 1, "run_id": "run-bad", "entr', "not valid JSON"),
    "binary garbage": (bytes(range(200, 256)) * 4, "not valid JSON"),
    "a JSON list": (b"[1, 2, 3]", "JSON array, not an object"),
    "a JSON string": (b'"manifest"', "JSON string, not an object"),
    "null": (b"null", "JSON null, not an object"),
}
MANIFEST_SHAPE_DAMAGE = {
    "no run_id": (_drop("run_id"), "has no run_id"),
    "another run's id": (_set("run_id", "run-other"), "is for run 'run-other', not for its folder 'run-bad'"),
    "no entries": (_drop("entries"), "no list of entries"),
    "entries not a list": (_set("entries", {"file": "x"}), "no list of entries"),
    "complete not a bool": (_set("complete", "yes"), "'complete' is not true or false"),
    "complete without snapshot": (_set("snapshot_at", None), "complete but has no snapshot_at"),
    "snapshot not a time": (_set("snapshot_at", "yesterday"), "snapshot_at is not a timestamp"),
    "entry without sha256": (lambda m: m["entries"][0].pop("sha256"), "entry 1: markets_p001.json: no valid sha256"),
    "entry outside the folder": (_entry("file", "../../etc/passwd"), "entry 1: no valid file name"),
    "entry not an object": (_set("entries", ["markets_p001.json"]), "entry 1: not an object"),
    "records not a count": (_entry("records", "ten"), "records is not a count"),
    "parquet outside the folder": (_entry("parquet", "/tmp/x.parquet"), "no valid Parquet file name"),
}


@pytest.mark.parametrize("data, reason", list(MANIFEST_DAMAGE.values()), ids=list(MANIFEST_DAMAGE))
def test_scan_runs_reports_an_unreadable_manifest_and_keeps_the_rest(tmp_path, data, reason):
    _complete_run(tmp_path, "run-good", STARTED, FETCHED, [(1, MARKETS_10)])
    bad = _complete_run(tmp_path, "run-bad", STARTED, FETCHED, [(1, MARKETS_10)])
    replace_manifest(bad.folder, data)
    runs, damaged = scan_runs(tmp_path)
    assert [r.run_id for r in runs] == ["run-good"]
    (item,) = damaged
    assert isinstance(item, DamagedRun) and item.folder == bad.folder and not item.incomplete
    assert reason in item.reason and "\n" not in item.reason
    assert item.run_id is None and item.name == "run-bad"
    assert item.line().startswith("damaged bronze run run-bad (")
    assert [r.run_id for r in list_runs(tmp_path)] == ["run-good"]
    assert [r.run_id for r in list_runs(tmp_path, include_incomplete=True)] == ["run-good"]


@pytest.mark.parametrize("change, reason", list(MANIFEST_SHAPE_DAMAGE.values()), ids=list(MANIFEST_SHAPE_DAMAGE))
def test_scan_runs_reports_a_manifest_of_the_wrong_shape(tmp_path, change, reason):
    _complete_run(tmp_path, "run-good", STARTED, FETCHED, [(1, MARKETS_10)])
    bad = _complete_run(tmp_path, "run-bad", STARTED, FETCHED, [(1, MARKETS_10)])
    edit_manifest(bad.folder, change)
    runs, damaged = scan_runs(tmp_path, include_incomplete=True)
    assert [r.run_id for r in runs] == ["run-good"]
    (item,) = damaged
    assert reason in item.reason, item.reason
    assert not item.incomplete and item.folder == bad.folder
    with pytest.raises(BronzeError, match="run-bad is damaged"):
        find_run(tmp_path, "run-bad")


def test_a_folder_without_manifest_is_incomplete_not_damaged(tmp_path):
    _complete_run(tmp_path, "run-good", STARTED, FETCHED, [(1, MARKETS_10)])
    _complete_run(tmp_path, "run-failed", STARTED, None, [])
    killed = writer(tmp_path, run_id="run-killed")
    killed.add(response(MARKETS_10))
    empty = tmp_path / "2024-03-05" / "run-empty"
    empty.mkdir()
    runs, damaged = scan_runs(tmp_path)
    assert [r.run_id for r in runs] == ["run-good"]
    assert [(d.name, d.incomplete) for d in damaged] == [("run-empty", True), ("run-killed", True)]
    assert "no manifest.json" in damaged[1].reason and "2 file(s)" in damaged[1].reason
    assert damaged[1].line().startswith("incomplete bronze run run-killed")
    runs, _ = scan_runs(tmp_path, include_incomplete=True)
    assert sorted(r.run_id for r in runs) == ["run-failed", "run-good"]
    with pytest.raises(BronzeError, match="no bronze manifest for run run-killed"):
        find_run(tmp_path, "run-killed")
    assert scan_runs(tmp_path / "nothing-here") == ([], [])


def test_check_run_healthy(tmp_path):
    w = _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, MARKETS_100), (2, MARKETS_10)])
    w2 = writer(tmp_path, run_id="run-b")
    w2.add(response(b'{"status":{"error_code":429}}', status=429))
    w2.add(response(MARKETS_10, attempt=2))
    w2.add(response(GLOBAL, endpoint="global", path="/global", params={}, page=None))
    w2.finish(snapshot_at=FETCHED, complete=True)
    for run in list_runs(tmp_path):
        assert check_run(run) == [] and check_run(run, deep=True) == [] and check_run(run, used_only=True) == []
    assert w.folder.exists()


def test_check_run_finds_a_flipped_byte_a_truncated_and_a_missing_body(tmp_path):
    _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, MARKETS_100), (2, MARKETS_10), (3, MARKETS_10)])
    run = find_run(tmp_path, "run-a")
    flip_byte(run.folder / "markets_p001.json")
    path = run.folder / "markets_p002.json"
    os.chmod(path, 0o644)
    path.write_bytes(MARKETS_10[:100])
    (run.folder / "markets_p003.json").unlink()
    assert check_run(run) == [
        "markets_p001.json: sha256 mismatch (changed since it was written)",
        f"markets_p002.json: 100 bytes, the manifest says {len(MARKETS_10)} (truncated or changed)",
        "markets_p003.json: missing",
    ]
    with pytest.raises(BronzeError, match="sha256"):  # reading still guards on its own
        run.markets_records()


def test_check_run_used_only_ignores_damaged_failed_attempts(tmp_path):
    w = writer(tmp_path)
    w.add(response(b'{"status":{"error_code":429}}', status=429))
    w.add(response(MARKETS_10, attempt=2))
    w.finish(snapshot_at=FETCHED, complete=True)
    run = find_run(tmp_path, "run-a")
    flip_byte(run.folder / "markets_p001_a1_429.json", offset=3)
    assert check_run(run) == ["markets_p001_a1_429.json: sha256 mismatch (changed since it was written)"]
    assert check_run(run, used_only=True) == []
    assert len(run.markets_records()) == 10


def test_parquet_copy_size_and_sha256_are_in_the_manifest(tmp_path):
    w = _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, MARKETS_100)])
    (entry,) = manifest_of(w.folder)["entries"]
    data = (w.folder / "markets_p001.parquet").read_bytes()
    assert entry["parquet_sha256"] == hashlib.sha256(data).hexdigest() and entry["parquet_bytes"] == len(data)
    assert manifest_of(w.folder)["manifest_version"] == 3  # 3: the manifest names its provider


RAW_KEYS = ["id", "symbol", "current_price", "market_cap"]


def _records_body(records: list[dict]) -> bytes:
    return json.dumps(records).encode()


def _bodies_read(run: BronzeRun, monkeypatch) -> list[str]:
    """The names of the files the run's store reads from now on."""
    read: list[str] = []
    store = type(run.files)
    original = store.read_bytes

    def recording(self, path):
        read.append(Path(str(path)).name)
        return original(self, path)

    monkeypatch.setattr(store, "read_bytes", recording)
    return read


def test_a_plain_body_marks_its_copy_exact_and_replay_reads_the_copy_alone(tmp_path, monkeypatch):
    _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, MARKETS_100)])
    run = find_run(tmp_path, "run-a")
    assert run.manifest["entries"][0]["parquet_exact"] is True
    read = _bodies_read(run, monkeypatch)

    (page,) = run.markets_pages(RAW_KEYS)

    assert page.table is not None and page.table.num_rows == 100
    assert read == ["markets_p001.parquet"]  # the body was checked when it was written, not again


@pytest.mark.parametrize(
    "records",
    [
        [{"id": "a", "current_price": 1.0, "is_listed": True}],  # a JSON bool: pyarrow would write 1.0 among floats
        [{"id": "a", "current_price": 1.0}, {"id": "b", "current_price": 2.0, "market_cap": 5.0}],  # a late key
        [{"id": "a", "current_price": 1.0}, {"id": "b", "current_price": "2.0"}],  # mixed types: the JSON-text form
    ],
    ids=["json-bool", "key-only-in-a-later-record", "json-text-form"],
)
def test_a_body_the_copy_cannot_stand_for_is_not_marked_and_replay_reads_the_json(tmp_path, records):
    _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, _records_body(records))])
    run = find_run(tmp_path, "run-a")
    assert "parquet_exact" not in run.manifest["entries"][0]
    assert run.markets_pages(RAW_KEYS)[0].table is None
    assert [r["id"] for r in run.markets_records()] == [r["id"] for r in records]


def test_an_older_manifest_without_the_mark_still_checks_the_body(tmp_path, monkeypatch):
    _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, MARKETS_100)])
    manifest = manifest_of(tmp_path / "2024-03-05" / "run-a")
    del manifest["entries"][0]["parquet_exact"]
    (tmp_path / "2024-03-05" / "run-a" / MANIFEST).write_text(json.dumps(manifest))
    run = find_run(tmp_path, "run-a")
    read = _bodies_read(run, monkeypatch)

    assert run.markets_pages(RAW_KEYS)[0].table is not None
    assert "markets_p001.json" in read


def test_a_mark_that_is_not_true_or_false_damages_the_manifest(tmp_path):
    _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, MARKETS_100)])
    folder = tmp_path / "2024-03-05" / "run-a"
    manifest = manifest_of(folder)
    manifest["entries"][0]["parquet_exact"] = "yes"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    runs, damaged = scan_runs(tmp_path)
    assert runs == [] and "'parquet_exact' is not true or false" in damaged[0].reason


def test_deep_check_finds_a_garbled_parquet_copy(tmp_path):
    _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, MARKETS_100)])
    run = find_run(tmp_path, "run-a")
    flip_byte(run.folder / "markets_p001.parquet")
    assert check_run(run) == []  # bodies are fine: replay is not affected
    assert check_run(run, deep=True) == ["markets_p001.parquet: sha256 mismatch (changed since it was written)"]
    (run.folder / "markets_p001.parquet").unlink()
    assert check_run(run, deep=True) == ["markets_p001.parquet: missing"]
    assert len(run.markets_records()) == 100


def _as_version_1(folder: Path) -> None:
    def strip(m):
        m["manifest_version"] = 1
        for e in m["entries"]:
            e.pop("parquet_sha256", None)
            e.pop("parquet_bytes", None)

    edit_manifest(folder, strip)


def test_deep_check_of_an_old_manifest_reads_the_parquet_copy(tmp_path):
    _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, MARKETS_100), (2, MARKETS_10)])
    run_folder = find_run(tmp_path, "run-a").folder
    _as_version_1(run_folder)
    run = find_run(tmp_path, "run-a")
    assert "parquet_sha256" not in run.manifest["entries"][0]
    assert check_run(run, deep=True) == []  # version 1 manifests stay valid
    # A garbled footer: pyarrow cannot read it.
    path = run_folder / "markets_p001.parquet"
    flip_byte(path, offset=path.stat().st_size - 6)
    # A readable Parquet file with the wrong number of rows.
    other = run_folder / "markets_p002.parquet"
    os.chmod(other, 0o644)
    pq.write_table(pq.read_table(other).slice(0, 3), other)
    problems = check_run(run, deep=True)
    assert len(problems) == 2
    assert problems[0].startswith("markets_p001.parquet: not a readable Parquet file (")
    assert problems[1] == "markets_p002.parquet: 3 rows, the manifest says 10 records"


# ---- a full disk: whole files or none ------------------------------------------------


def disk_full_after(monkeypatch, limit: int) -> None:
    real_write = os.write
    left = [limit]

    def write(fd, data):
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, memoryview(data)[: left[0]])
        left[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)


def visible_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_full_disk_while_writing_a_body_leaves_no_part_of_it(tmp_path, monkeypatch):
    w = writer(tmp_path)
    w.add(response(MARKETS_10, page=1))
    disk_full_after(monkeypatch, 1000)
    with pytest.raises(BronzeError, match=r"could not write bronze file .*markets_p002.json: No space left on device"):
        w.add(response(MARKETS_100, page=2))
    files = visible_files(w.folder)
    assert sorted(files) == ["markets_p001.json", "markets_p001.parquet"]
    assert files["markets_p001.json"] == MARKETS_10


def test_a_full_disk_while_writing_a_parquet_copy_keeps_the_body_listed(tmp_path, monkeypatch):
    w = writer(tmp_path)
    disk_full_after(monkeypatch, len(MARKETS_100) + 100)
    with pytest.raises(BronzeError, match=r"markets_p001.parquet: No space left on device"):
        w.add(response(MARKETS_100, page=1))
    assert sorted(visible_files(w.folder)) == ["markets_p001.json"]
    assert [(e["file"], e["parquet"]) for e in w.entries] == [("markets_p001.json", None)]
    monkeypatch.undo()
    w.finish(snapshot_at=None, complete=False, error="disk full")
    run = list_runs(tmp_path, include_incomplete=True)[0]
    assert check_run(run, deep=True) == []


def test_a_full_disk_while_writing_the_manifest_leaves_no_manifest(tmp_path, monkeypatch):
    w = writer(tmp_path)
    w.add(response(MARKETS_10))
    disk_full_after(monkeypatch, 50)
    with pytest.raises(BronzeError, match=r"could not write bronze manifest .*: No space left on device"):
        w.finish(snapshot_at=FETCHED, complete=True)
    assert MANIFEST not in visible_files(w.folder)  # not a 0-byte or half manifest
    assert not any(atomic.is_temp_name(name) for name in visible_files(w.folder))
    runs, damaged = scan_runs(tmp_path)
    assert runs == [] and [(d.name, d.incomplete) for d in damaged] == [("run-a", True)]


def test_manifests_share_their_repeated_names_in_memory(tmp_path):
    """A replay holds every run's manifest: 40,000 runs at 10M records. Their keys and short texts
    are one object each, not one per manifest."""
    _complete_run(tmp_path, "run-a", STARTED, FETCHED, [(1, MARKETS_10)])
    _complete_run(tmp_path, "run-b", datetime(2024, 3, 6), datetime(2024, 3, 6, 0, 1), [(1, MARKETS_10)])
    first, second = (run.manifest for run in scan_runs(tmp_path)[0])
    assert first["run_id"] != second["run_id"]
    entry_a, entry_b = first["entries"][0], second["entries"][0]
    assert entry_a["endpoint"] is entry_b["endpoint"] and entry_a["path"] is entry_b["path"]
    assert next(iter(entry_a)) is next(iter(entry_b))  # the keys too
    assert entry_a == {**entry_b, "fetched_at": entry_a["fetched_at"]}  # the same values as before
