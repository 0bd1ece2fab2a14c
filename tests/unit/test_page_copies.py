"""A replayed snapshot reads each page from its bronze Parquet copy where that copy stands for the
body, and only the other pages' JSON: the result equals reading every page's JSON.

Pages are cut from a real recorded /coins/markets body with sparklines (250 records), written by
BronzeWriter as a live run writes them, with faults injected per page at random (seeded): text
among numbers, a true/false, an integer beyond 2**53, a record that is no object, a key missing
from a page's first record, sparklines of the wrong shape or with integer points, duplicates
across pages, quarantined rows on pages whose copy stands.
"""

from __future__ import annotations

import json
import random
from datetime import datetime

import pyarrow as pa
import pytest

from pipeline.bronze import BronzeRun, BronzeWriter, find_run
from pipeline.providers.base import Body
from pipeline.silver.batches import PreparedBatch, prepare_batch
from tests.fakes.coingecko import FIXTURES_DIR

SNAPSHOT_AT = datetime(2024, 12, 19, 12, 0)
FETCHED_AT = datetime(2024, 12, 19, 12, 1)
RECORDS = json.loads(
    (
        FIXTURES_DIR / "markets" / "markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json"
    ).read_text()
)
PAGE_SIZE = 50


def _not_an_object(page, rng):
    page[rng.randrange(len(page))] = "oops"


def _text_price(page, rng):
    page[rng.randrange(len(page))]["current_price"] = "n/a"


def _bool_cap(page, rng):
    page[rng.randrange(len(page))]["market_cap"] = True


def _huge_supply(page, rng):
    page[rng.randrange(len(page))]["total_supply"] = 156124856092293500


def _negative_price(page, rng):  # a copy that stands, with a quarantined row
    page[rng.randrange(len(page))]["current_price"] = -1.0


def _integer_points(page, rng):
    page[rng.randrange(len(page))]["sparkline_in_7d"] = {"price": [1, 2, 3.5, 4]}


def _text_point(page, rng):
    page[rng.randrange(len(page))]["sparkline_in_7d"] = {"price": [1.0, "2", None]}


def _null_points(page, rng):
    page[rng.randrange(len(page))]["sparkline_in_7d"] = {"price": [None, 1.5, 2e9, -3.0]}


def _sparkline_a_list(page, rng):
    page[rng.randrange(len(page))]["sparkline_in_7d"] = [1.0, 2.0]


def _every_sparkline_a_list(page, rng):  # a copy that stands, its sparkline column no struct
    for record in page:
        if isinstance(record, dict):
            record["sparkline_in_7d"] = [1.0, 2.0]


def _no_sparkline(page, rng):
    page[rng.randrange(len(page))]["sparkline_in_7d"] = None


def _key_missing_first(page, rng):
    page[0].pop("market_cap_rank", None)


def _duplicate_elsewhere(page, rng):
    page[rng.randrange(len(page))]["id"] = RECORDS[rng.randrange(len(RECORDS))]["id"]


def _numeric_id(page, rng):
    page[rng.randrange(len(page))]["id"] = 12345


FAULTS = [
    _not_an_object,
    _text_price,
    _bool_cap,
    _huge_supply,
    _negative_price,
    _integer_points,
    _text_point,
    _null_points,
    _sparkline_a_list,
    _every_sparkline_a_list,
    _no_sparkline,
    _key_missing_first,
    _duplicate_elsewhere,
    _numeric_id,
]


def _pages(seed: int, faults: int) -> list[list]:
    rng = random.Random(seed)
    records = json.loads(json.dumps(RECORDS))
    pages = [records[i : i + PAGE_SIZE] for i in range(0, len(records), PAGE_SIZE)]
    for _ in range(faults):
        rng.choice(FAULTS)(rng.choice(pages), rng)
    return pages


def _write(raw_dir, run_id: str, pages: list[list], top_n: int | None) -> BronzeRun:
    writer = BronzeWriter(raw_dir, run_id, source="api", started_at=SNAPSHOT_AT, vs_currency="usd", top_n=top_n)
    for number, page in enumerate(pages, start=1):
        body = json.dumps(page).encode()
        writer.add(Body("markets", "/coins/markets", {"page": number}, 200, body, FETCHED_AT, 1, page=number))
    writer.finish(snapshot_at=SNAPSHOT_AT, complete=True)
    return find_run(raw_dir, run_id)


def _outputs(batch: PreparedBatch) -> dict:
    return {
        "rows": batch.rows.to_pylist(),
        "quarantine": batch.quarantine.to_pylist(),
        "sparklines": batch.sparklines,
        "duplicates": batch.duplicates_dropped,
    }


def _from_json_only(run: BronzeRun, monkeypatch) -> PreparedBatch:
    with monkeypatch.context() as patch:
        patch.setattr(BronzeRun, "markets_pages", lambda self, keys: None)
        return prepare_batch([run], with_sparklines=True)


def _parsed_pages(run: BronzeRun, monkeypatch) -> tuple[PreparedBatch, list[int]]:
    """The batch, and which pages' JSON it parsed (by page number)."""
    parsed = []
    original = BronzeRun.page_records

    def counting(self, entry):
        parsed.append(entry["page"])
        return original(self, entry)

    with monkeypatch.context() as patch:
        patch.setattr(BronzeRun, "page_records", counting)
        return prepare_batch([run], with_sparklines=True), parsed


@pytest.mark.parametrize("top_n", [None, 120])
@pytest.mark.parametrize("seed", range(12))
def test_pages_from_their_copies_equal_every_page_from_json(tmp_path, monkeypatch, seed, top_n):
    run = _write(tmp_path, f"run-{seed}", _pages(seed, faults=4), top_n)
    expected = _from_json_only(run, monkeypatch)
    got, _ = _parsed_pages(run, monkeypatch)
    assert _outputs(got) == _outputs(expected)
    assert got.rows.equals(expected.rows) and got.quarantine.equals(expected.quarantine)  # types too


def test_one_malformed_page_costs_only_its_own_copy(tmp_path, monkeypatch):
    """Page 2's copy is JSON text (a price "n/a"); pages 1 and 3-5 are read from their copies, page 4's
    JSON only for the raw text of its quarantined record. Before, all five pages went through JSON."""
    pages = _pages(0, faults=0)
    pages[1][7]["current_price"] = "n/a"
    pages[3][3]["current_price"] = -5.0
    pages[4][0]["sparkline_in_7d"] = {"price": [1, 2]}
    run = _write(tmp_path, "run-mixed", pages, None)
    got, parsed = _parsed_pages(run, monkeypatch)
    assert sorted(parsed) == [2, 4]
    assert _outputs(got) == _outputs(_from_json_only(run, monkeypatch))
    reasons = {q["record_id"]: q["reason"] for q in got.quarantine.to_pylist()}
    assert set(reasons) == {pages[1][7]["id"], pages[3][3]["id"]} and "n/a" in reasons[pages[1][7]["id"]]
    texts = {coin_id: text for coin_id, _, _, text in got.sparklines}
    assert texts[pages[4][0]["id"]] == "[1.0,2.0]"
    assert len(got.sparklines) == len(RECORDS) - 2  # every kept row's sparkline, from the copies


def test_whole_copy_path_reads_no_json_and_keeps_sparklines(tmp_path, monkeypatch):
    run = _write(tmp_path, "run-clean", _pages(0, faults=0), None)
    got, parsed = _parsed_pages(run, monkeypatch)
    assert parsed == []  # no quarantine, no note: no page's JSON is read, sparklines included
    expected = _from_json_only(run, monkeypatch)
    assert _outputs(got) == _outputs(expected)
    assert len(got.sparklines) == len(RECORDS)
    first = RECORDS[0]["sparkline_in_7d"]["price"]
    assert json.loads(got.sparklines[0][3]) == pytest.approx([float(p) for p in first])
    assert isinstance(got.rows, pa.Table)
