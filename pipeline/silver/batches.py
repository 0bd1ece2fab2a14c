"""Bronze runs → load-ready silver batches, and loading them.

``prepare_batch`` does the CPU work (parse, validate, type, derive, convert to
tuples) and touches no database, so a replay can run it in a worker process
while the main process loads the previous batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection

from pipeline.bronze import BronzeRun
from pipeline.errors import SchemaDrift
from pipeline.providers.base import TOTALS
from pipeline.silver import load
from pipeline.silver.transform import (
    GLOBAL_COLUMNS,
    SILVER_COLUMNS,
    STALE_RECORD_AFTER,
    Row,
    Snapshot,
    frame_to_tuples,
    global_dominance_rows,
    limit_records,
    transform_global,
    transform_snapshots,
)


@dataclass
class PreparedBatch:
    """Everything one batch writes to silver, as plain tuples."""

    rows: list[Row]
    months: list[str]
    quarantine: list[Row]
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


def _coins_times(rows: pd.DataFrame) -> dict[datetime, datetime]:
    """Snapshot time -> the newest ``last_updated`` of its coins (when the coins' data is from)."""
    if rows.empty or "last_updated" not in rows.columns:
        return {}
    newest = rows.groupby("snapshot_at")["last_updated"].max()
    return {
        pd.Timestamp(str(k)).to_pydatetime(): pd.Timestamp(v).to_pydatetime()
        for k, v in newest.items()
        if not pd.isna(v)
    }


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
    datetime_text: bool = False,
    global_max_age_minutes: float = 30.0,
    stale_after: timedelta | None = STALE_RECORD_AFTER,
) -> PreparedBatch:
    """Read the runs' bronze files and turn them into silver tuples (no database).

    A /global is kept with ``usable`` False when it was updated more than
    ``global_max_age_minutes`` away from its snapshot's coins (see ``transform_global``).
    """
    snapshots = []
    bodies = []
    for run in runs:
        snapshots.append(
            Snapshot(
                run.run_id,
                run.snapshot_at,
                run.source,
                limit_records(run.markets_records(), run.top_n),
                markets_fetched_at(run),
                run.provider,
            )
        )
        body = run.global_body()
        if body is not None:
            bodies.append((run, body))
    batch = transform_snapshots(snapshots, with_sparklines=with_sparklines, stale_after=stale_after)
    coins_times = _coins_times(batch.rows)
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
    rows = frame_to_tuples(batch.rows, SILVER_COLUMNS, datetime_text=datetime_text)
    months = sorted({f"{s.snapshot_at:%Y-%m}" for s in snapshots})
    quarantine = [
        (q.run_id, q.record_index, q.snapshot_at, q.record_id, q.reason, q.raw_record) for q in batch.quarantined
    ]
    return PreparedBatch(
        rows=rows,
        months=months,
        quarantine=quarantine,
        quarantine_run_ids=[r.run_id for r in runs],
        sparklines=batch.sparklines,
        globals=globals_,
        duplicates_dropped=batch.duplicates_dropped,
        global_dominance=dominance,
    )


def load_batch(conn: Connection, batch: PreparedBatch) -> int:
    """Upsert one prepared batch in the caller's transaction; returns silver rows written."""
    load.ensure_month_partitions(conn, batch.months)
    written = load.load_market_rows(conn, batch.rows)
    load.load_sparklines(conn, batch.sparklines)
    load.replace_quarantine(conn, batch.quarantine_run_ids, batch.quarantine)
    load.load_global_rows(conn, batch.globals)
    load.load_global_dominance(
        conn, [row[GLOBAL_COLUMNS.index("snapshot_at")] for row in batch.globals], batch.global_dominance
    )
    return written
