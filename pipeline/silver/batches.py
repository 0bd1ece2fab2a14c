"""Bronze runs → load-ready silver batches (``pipeline.silver.load.load_batch`` loads them).

``prepare_batch`` does the CPU work (read the bronze Parquet copies, validate, type,
derive, all column-wise in Arrow) and touches no database, so a replay can run it in a
worker process while the main process loads the previous batch. The batch crosses the
process boundary as Arrow tables (pickled as their buffers), not as Python rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline.bronze import BronzeRun
from pipeline.errors import SchemaDrift
from pipeline.providers.base import TOTALS
from pipeline.silver.transform import (
    GLOBAL_COLUMNS,
    RAW_KEYS,
    STALE_RECORD_AFTER,
    Row,
    Snapshot,
    global_dominance_rows,
    limit_columns,
    limit_records,
    parquet_records,
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


def _snapshot(run: BronzeRun) -> Snapshot:
    """The run's records: the bronze Parquet copy's columns when it can stand for the body, else the JSON."""
    tables = run.markets_parquet(RAW_KEYS)
    columns = parquet_records(tables) if tables else None
    limited = limit_columns(columns, run.top_n) if columns is not None else None
    if limited is None:
        records = limit_records(run.markets_records(), run.top_n)
        return Snapshot(run.run_id, run.snapshot_at, run.source, records, markets_fetched_at(run), run.provider)
    return Snapshot(
        run.run_id,
        run.snapshot_at,
        run.source,
        [],
        markets_fetched_at(run),
        run.provider,
        table=limited[0],
        load_records=lambda: limit_records(run.markets_records(), run.top_n),
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
    for run in runs:
        snapshots.append(_snapshot(run))
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
