"""Bronze: every body exactly as received, a Parquet copy, a manifest; never overwritten."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.bronze import MANIFEST, BronzeRun, BronzeWriter, find_run, list_runs
from pipeline.errors import BronzeError
from pipeline.sources.coingecko import fetch_global, fetch_markets
from pipeline.sources.coingecko.client import ApiResponse, CoinGeckoClient
from tests.fakes.coingecko import DEFAULT_GLOBAL, FIXTURES_DIR

STARTED = datetime(2024, 3, 5, 23, 59, 58, 123456)
FETCHED = datetime(2024, 3, 5, 23, 59, 59, 654321)
MARKETS_10 = (FIXTURES_DIR / "markets/markets_10_2020-07-04_rudijs-coin-bot.json").read_bytes()  # pretty-printed
MARKETS_100 = (FIXTURES_DIR / "markets/madjin-daily-crypto/prices_2025-01-01_015307Z_482a5d639c.json").read_bytes()
GLOBAL = (FIXTURES_DIR / DEFAULT_GLOBAL).read_bytes()
PARAMS = {"vs_currency": "usd", "order": "market_cap_desc", "per_page": 100, "page": 1}


def response(body: bytes, *, endpoint="markets", path="/coins/markets", params=None, status=200, attempt=1,
             page=1, fetched_at=FETCHED):
    return ApiResponse(endpoint=endpoint, path=path, params=dict(PARAMS if params is None else params),
                       status=status, body=body, fetched_at=fetched_at, attempt=attempt, page=page)


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


@pytest.mark.parametrize("body, rows", [
    (b'[{"id":"a","current_price":1.5},{"id":"b","current_price":"n/a"}]', 2),
    (b'[{"id":"a","roi":null},{"id":"b","roi":[1,"x"]}]', 2),
    (b'[{"id":"a"},7,"text",null]', 4),
    (b'[]', 0),
])
def test_mixed_types_fall_back_to_json_text(tmp_path, body, rows):
    w = writer(tmp_path)
    w.add(response(body))
    table = pq.read_table(w.folder / "markets_p001.parquet")
    assert table.num_rows == rows
    if rows:
        assert table.column_names == ["record_json"]
        assert [json.loads(v) for v in table.column("record_json").to_pylist()] == json.loads(body)
    assert (w.folder / "markets_p001.json").read_bytes() == body


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
        w.add(response(b'[{"id":"other"}]'))            # same name: markets_p001.json
    assert (w.folder / "markets_p001.json").read_bytes() == MARKETS_10
    with pytest.raises(FileExistsError):
        w.finish(snapshot_at=FETCHED, complete=False)
    assert manifest_of(w.folder)["complete"] is True
    with pytest.raises(FileExistsError):
        writer(tmp_path)                                  # same run folder again


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
    assert len(run.markets_records()) == 100               # only the used body is replayed


# ---- the API key never lands in bronze ---------------------------------------------

def test_api_key_never_in_any_bronze_file(tmp_path, fake_coingecko):
    key = "secret-demo-key-123"
    w = writer(tmp_path)
    fake_coingecko.add_fault("429", retry_after=0)
    fake_coingecko.add_fault("truncated", endpoint="global")
    client = CoinGeckoClient(fake_coingecko.base_url, api_key=key, calls_per_minute=0, backoff_base_seconds=0.01,
                             on_response=w.add)
    pages = list(fetch_markets(client, vs_currency="usd", top_n=250))
    fetch_global(client)
    w.finish(snapshot_at=FETCHED, complete=True)
    assert all(r.headers.get("x-cg-demo-api-key") == key for r in fake_coingecko.requests)  # it was sent
    files = [p for p in w.folder.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == [
        "global.json",          # the truncated first attempt, kept (no Parquet: not JSON)
        "global_a2_200.json", "global_a2_200.parquet",
        "manifest.json",
        "markets_p001_a1_429.json",
        "markets_p001_a2_200.json", "markets_p001_a2_200.parquet",
    ]
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data, path.name
        assert b"secret-demo" not in data, path.name
    m = manifest_of(w.folder)
    assert [(e["endpoint"], e["status"], e["used"]) for e in m["entries"]] == [
        ("markets", 429, False), ("markets", 200, True), ("global", 200, False), ("global", 200, True)]
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


def test_list_runs_reports_an_unreadable_manifest(tmp_path):
    folder = tmp_path / "2024-01-01" / "run-x"
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(BronzeError, match="manifest"):
        list_runs(tmp_path)


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
