"""A batch's quarantined records keep their raw text without holding every run's parsed page."""

from __future__ import annotations

import json as json_module
import weakref
from datetime import timedelta

import pipeline.bronze as bronze_module
from pipeline.bronze import healthy_runs
from pipeline.silver.batches import prepare_batch
from tests.unit.test_bronze import FETCHED, MARKETS_100, STARTED, response, writer


def test_a_batch_holds_one_parsed_page_at_a_time_for_its_quarantined_records(tmp_path, monkeypatch):
    """A quarantined record keeps its raw text, read from its page's JSON. A batch of runs that each
    had one (a coin's absurd price for months) parsed every run's page and held them all until the
    batch was done (~1.5 MB a whole-market page): they are now let go a page at a time."""
    records = json_module.loads(MARKETS_100)
    records[7]["current_price"] = 5e12  # absurd: quarantined
    body = json_module.dumps(records).encode()
    for number in range(12):
        w = writer(tmp_path, run_id=f"run-{number:05d}", started_at=STARTED + timedelta(hours=number))
        at = FETCHED + timedelta(hours=number)
        w.add(response(body, fetched_at=at))
        w.finish(snapshot_at=at, complete=True)
    runs, _ = healthy_runs(tmp_path)
    assert all(entry.get("parquet_exact") for entry in runs[0].loaded().manifest["entries"])

    class Page(list):
        __hash__ = object.__hash__  # type: ignore[assignment]

    alive: weakref.WeakSet[Page] = weakref.WeakSet()
    most = 0
    page_records = bronze_module.BronzeRun.page_records

    def counted(self, entry):
        nonlocal most
        page = Page(page_records(self, entry))
        alive.add(page)
        most = max(most, len(alive))
        return page

    monkeypatch.setattr(bronze_module.BronzeRun, "page_records", counted)
    batch = prepare_batch(list(runs))
    assert batch.quarantine.num_rows == 12
    assert set(batch.quarantine.column("reason").to_pylist()) == {"absurd current_price: 5000000000000.0"}
    raw = batch.quarantine.column("raw_record").to_pylist()
    assert all(json_module.loads(text)["id"] == records[7]["id"] for text in raw)
    assert most <= 2, f"{most} parsed pages alive at once (one a run before)"
