"""Bronze runs → load-ready silver batches (``pipeline.silver.load.load_batch`` loads them).

``prepare_batch`` does the CPU work (read the bronze Parquet copies, validate, type,
derive, all column-wise in Arrow) and touches no database, so a replay can run it in a
worker process while the main process loads the previous batch. The batch crosses the
process boundary as Arrow tables (pickled as their buffers), not as Python rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, overload

import numpy as np
import pyarrow as pa

from pipeline.bronze import BronzeRun, PageCopy
from pipeline.errors import SchemaDrift
from pipeline.providers.base import TOTALS
from pipeline.silver.transform import (
    GLOBAL_COLUMNS,
    PRICE_LISTS,
    RAW_KEYS,
    SPARKLINE_KEY,
    STALE_RECORD_AFTER,
    Row,
    Snapshot,
    global_dominance_rows,
    limit_columns,
    limit_records,
    merge_columns,
    page_columns,
    parquet_sparkline_prices,
    records_table,
    transform_global,
    transform_snapshots,
)


@dataclass
class PreparedBatch:
    """Everything one batch writes to silver: the rows and the quarantine as Arrow tables
    (``staging_crypto_market``'s and ``quarantine_crypto_market``'s columns), the rest small."""

    rows: Any  # pyarrow.Table
    months: list[str]
    quarantine: Any  # pyarrow.Table
    quarantine_run_ids: list[str]
    sparklines: list[Row]
    globals: list[Row]
    duplicates_dropped: int = 0
    #: CoinGecko's own dominance per symbol, (snapshot_at, symbol, dominance_pct).
    global_dominance: list[Row] = field(default_factory=list)


def _fetched_at(run: BronzeRun) -> datetime | None:
    entries = run.role_entries(TOTALS)
    raw = entries[-1].get("fetched_at") if entries else None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=None) if raw else None
    except (TypeError, ValueError):
        return None


def _coins_times(rows: Any) -> dict[datetime, datetime]:
    """Snapshot time -> the newest ``last_updated`` of its coins (when the coins' data is from)."""
    if not rows.num_rows:
        return {}
    newest = rows.group_by("snapshot_at").aggregate([("last_updated", "max")])
    return {
        k: v
        for k, v in zip(newest.column("snapshot_at").to_pylist(), newest.column("last_updated_max").to_pylist())
        if v is not None
    }


class _PagedRecords(Sequence[Any]):
    """A run's coin records in page order, each page's JSON parsed the first time one of its records
    is asked for (a quarantined row needs its raw text; the other 67 pages of a whole market need not)."""

    def __init__(self, run: BronzeRun, pages: list[PageCopy], counts: list[int], parsed: dict[int, list[Any]]) -> None:
        # ``parsed``: the pages read as JSON already (their copies did not stand). Pages parsed here
        # stay with this object (the snapshot's dict would keep them for the whole batch).
        self._run, self._pages, self._parsed = run, pages, dict(parsed)
        self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not 0 <= index < len(self):
            raise IndexError(index)
        page = int(np.searchsorted(self._starts, index, side="right")) - 1
        if page not in self._parsed:
            self._parsed[page] = self._run.page_records(self._pages[page].entry)
        return self._parsed[page][index - int(self._starts[page])]


def bronze_snapshot(run: BronzeRun, *, with_sparklines: bool = False) -> Snapshot:
    """A bronze run's coin records as ``transform_snapshots`` takes them: each page's Parquet copy
    columns where it stands for the body (sparklines too, when asked for), that page's JSON where not
    (one malformed record costs its page the copy, not the snapshot)."""
    json_snapshot = Snapshot(run.run_id, run.snapshot_at, run.source, [], markets_fetched_at(run), run.provider)

    def from_json() -> Snapshot:
        return replace(json_snapshot, records=limit_records(run.markets_records(), run.top_n))

    pages = run.markets_pages([*RAW_KEYS, SPARKLINE_KEY] if with_sparklines else RAW_KEYS)
    if not pages or all(page.table is None for page in pages):
        return from_json()
    parts, prices, counts, parsed = [], [], [], {}
    for number, page in enumerate(pages):
        if page.table is not None:
            parts.append(page_columns(page.table))
            prices.append(parquet_sparkline_prices(page.table) if with_sparklines else None)
            counts.append(page.table.num_rows)
            continue
        page_records = parsed[number] = run.page_records(page.entry)
        if not all(isinstance(record, dict) for record in page_records):  # the JSON path places non-objects
            return from_json()
        parts.append(records_table(page_records))
        prices.append(None)
        counts.append(len(page_records))
    limited = limit_columns(merge_columns(parts), run.top_n)
    if limited is None:
        return from_json()
    columns, kept = limited
    load_records: Callable[[], Sequence[Any]] = lambda: _PagedRecords(run, pages, counts, parsed)  # noqa: E731
    if len(kept) != sum(counts):  # rows left out by top_n: the records are the limited list
        load_records = lambda: limit_records(run.markets_records(), run.top_n)  # noqa: E731
    sparkline_prices = sparkline_from_records = None
    if with_sparklines:
        from_records = np.repeat([p is None for p in prices], counts)[kept]
        sparkline_prices = pa.concat_arrays(
            [p if p is not None else pa.nulls(n, PRICE_LISTS) for p, n in zip(prices, counts)]
        ).take(pa.array(kept))
        sparkline_from_records = from_records if from_records.any() else None
    return replace(
        json_snapshot,
        table=columns,
        load_records=load_records,
        sparkline_prices=sparkline_prices,
        sparkline_from_records=sparkline_from_records,
    )


def markets_fetched_at(run: BronzeRun) -> datetime | None:
    """When the run's markets body was received: the manifest's ``fetched_at`` (None for an
    imported body); manifests from before data times were kept used the fetch time as snapshot time."""
    if "fetched_at" not in run.manifest:
        return run.snapshot_at if run.source in ("api", "sample") else None
    raw = run.manifest["fetched_at"]
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=None) if raw else None
    except (TypeError, ValueError):
        return None


def prepare_batch(
    runs: list[BronzeRun],
    *,
    with_sparklines: bool = False,
    global_max_age_minutes: float = 30.0,
    stale_after: timedelta | None = STALE_RECORD_AFTER,
) -> PreparedBatch:
    """Read the runs' bronze files (Parquet copies where they stand for the body) into silver Arrow tables (no database).

    A /global is kept with ``usable`` False when it was updated more than
    ``global_max_age_minutes`` away from its snapshot's coins (see ``transform_global``).
    """
    snapshots = []
    bodies = []
    for listed in runs:
        run = listed.loaded()
        snapshots.append(bronze_snapshot(run, with_sparklines=with_sparklines))
        body = run.global_body()
        if body is not None:
            bodies.append((run, body))
    batch = transform_snapshots(snapshots, with_sparklines=with_sparklines, stale_after=stale_after)
    coins_times = _coins_times(batch.table)
    globals_ = []
    dominance: list[Row] = []
    for run, body in bodies:
        try:
            row = transform_global(
                body,
                run_id=run.run_id,
                snapshot_at=run.snapshot_at,
                source=run.source,
                vs_currency=run.vs_currency,
                coins_at=coins_times.get(run.snapshot_at),
                fetched_at=_fetched_at(run),
                max_age_minutes=global_max_age_minutes,
            )
        except SchemaDrift:  # a /global of the wrong shape is no /global: dominance falls back, as when it failed
            continue
        globals_.append(tuple(row.get(c) for c in GLOBAL_COLUMNS))
        dominance.extend(global_dominance_rows(row))
    months = sorted({f"{s.snapshot_at:%Y-%m}" for s in snapshots})
    return PreparedBatch(
        rows=batch.table,
        months=months,
        quarantine=batch.quarantine_table(),
        quarantine_run_ids=[r.run_id for r in runs],
        sparklines=batch.sparklines,
        globals=globals_,
        duplicates_dropped=batch.duplicates_dropped,
        global_dominance=dominance,
    )
