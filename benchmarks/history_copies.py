"""A long history in minutes: a replayed database's silver copied back in time, then the dashboard's
queries and the refresh button timed on it (issue 11 item 5's "at 10M silver rows", without ~25 min of
generating and replaying 10M records of bronze).

Silver (and /global and the snapshots ledger) is copied ``--copies`` times, each copy shifted back by
the whole span held, so the newest snapshot stays the newest (the mart does not change) and the
history grows older; gold and the rollups are then rebuilt as a replay would. The timings are those of
``benchmarks.bench`` (its ``time_queries`` and ``bench_refresh``), so the figures compare.

    python -m benchmarks.bench --sizes 1M --keep ...             # a 1M replay to start from, or any loaded database
    python -m benchmarks.history_copies --database-url sqlite:////tmp/w.db --copies 9    # -> 10M silver rows

Last line: ``history_rows=<n> dashboard_p95_ms=<q> worst=<query> refresh_p95_s=<r>``. The database is
changed in place: give it a copy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Table, func, select, text

from benchmarks.bench import bench_refresh, dashboard_queries, say, time_queries
from pipeline.db import ensure_month_partitions, is_postgres, make_engine
from pipeline.gold import build_gold
from pipeline.schema import snapshots, staging_crypto_market, staging_global_market

#: The tables copied back in time: every one keyed by snapshot time.
COPIED: tuple[Table, ...] = (staging_crypto_market, staging_global_market, snapshots)


def _shifted(conn: Connection, table: Table, hours: int, first: datetime) -> str:
    """INSERT of ``table``'s rows from ``first`` on, ``hours`` earlier."""
    columns = [c.name for c in table.columns]
    if is_postgres(conn):
        moved = f"snapshot_at - interval '{hours} hours'"
    else:  # the stored 'YYYY-MM-DD HH:MM:SS.ffffff' text, its fraction kept
        moved = f"strftime('%Y-%m-%d %H:%M:%S', snapshot_at, '-{hours} hours') || substr(snapshot_at, 20)"
    values = [moved if name == "snapshot_at" else name for name in columns]
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {', '.join(values)} "
        f"FROM {table.name} WHERE snapshot_at >= '{first:%Y-%m-%d %H:%M:%S}'"
    )


def _months(start: datetime, end: datetime) -> list[str]:
    months, moment = set(), start
    while moment <= end:
        months.add(moment.strftime("%Y-%m"))
        moment += timedelta(days=27)
    months.add(end.strftime("%Y-%m"))
    return sorted(months)


def silver_rows(database_url: str) -> int:
    with make_engine(database_url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(staging_crypto_market)).scalar() or 0)


def grow(database_url: str, copies: int) -> None:
    """Copy the history ``copies`` times back in time and rebuild gold."""
    engine = make_engine(database_url)
    with engine.connect() as conn:
        first, last = conn.execute(select(func.min(snapshots.c.snapshot_at), func.max(snapshots.c.snapshot_at))).one()
    if first is None:
        raise SystemExit(f"{database_url}: no snapshots to copy (replay something first)")
    first, last = (value if isinstance(value, datetime) else datetime.fromisoformat(value) for value in (first, last))
    hours = int((last - first) / timedelta(hours=1)) + 1
    with engine.begin() as conn:
        ensure_month_partitions(conn, "staging_crypto_market", _months(first - timedelta(hours=hours * copies), first))
    for copy in range(1, copies + 1):
        began = time.perf_counter()
        with engine.begin() as conn:
            for table in COPIED:
                conn.execute(text(_shifted(conn, table, hours * copy, first)))
        say(f"  copy {copy}/{copies}: {hours * copy:,} hours back in {time.perf_counter() - began:.1f}s")
    began = time.perf_counter()
    build_gold(engine, since=None)
    say(f"  gold and rollups rebuilt in {time.perf_counter() - began:.1f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a loaded database (changed in place)")
    parser.add_argument("--copies", type=int, default=9, help="copies of the history (9: 1M -> 10M)")
    parser.add_argument("--repeat", type=int, default=20, help="runs per dashboard query")
    parser.add_argument("--refresh-clicks", type=int, default=10, help="0: no refresh timing")
    args = parser.parse_args(argv)

    say(f"history copies: {args.copies} into {args.database_url.split('@')[-1]}")
    if args.copies:
        grow(args.database_url, args.copies)
    rows = silver_rows(args.database_url)
    say(f"  silver rows: {rows:,}")
    _, queries = dashboard_queries()
    timed = time_queries(args.database_url, queries, args.repeat)
    worst = max(timed, key=lambda name: timed[name]["p95_ms"])
    for name, figures in sorted(timed.items(), key=lambda item: -item[1]["p95_ms"]):
        say(f"  {name:32s} p50 {figures['p50_ms']:7.1f}  p95 {figures['p95_ms']:7.1f}  rows {figures['rows']}")
    refresh_p95 = "-"
    if args.refresh_clicks:
        with tempfile.TemporaryDirectory(prefix="history_copies_") as work:
            refreshed = bench_refresh(args, Path(work), args.database_url)
        refresh_p95 = f"{refreshed['p95_s']:.2f}"
    print(
        f"history_rows={rows} dashboard_p95_ms={timed[worst]['p95_ms']:.1f} worst={worst} refresh_p95_s={refresh_p95}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
