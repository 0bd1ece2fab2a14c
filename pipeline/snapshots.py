"""The snapshots ledger: one row per snapshot in silver, saying which run made it and
whether gold may show it ('published') or keeps it back ('held', with the reasons).

Gold reads only published snapshots, so a snapshot held by the plausibility gate stays in
silver for diagnosis while the dashboard keeps showing the last good one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update

from pipeline.db import upsert_rows, utcnow
from pipeline.schema import snapshots

PUBLISHED = "published"
HELD = "held"
COLUMNS = [c.name for c in snapshots.columns]


def record(conn: Connection, entries: list[dict]) -> None:
    """Write (or rewrite) ledger rows: snapshot_at, run_id, source, fetched_at, requested_coins,
    coin_count, status, reasons."""
    if not entries:
        return
    now = utcnow()
    unique = {e["snapshot_at"]: e for e in entries}
    rows = [tuple({**{"decided_at": now, "reasons": None, "fetched_at": None, "requested_coins": None,
                      "coin_count": None}, **e}[c] for c in COLUMNS) for e in unique.values()]
    upsert_rows(conn, snapshots, rows, COLUMNS, key=["snapshot_at"])


def statuses(conn: Connection, times: list[datetime]) -> dict[datetime, str]:
    """The ledger's status of each of these snapshot times that it knows."""
    if not times:
        return {}
    rows = conn.execute(select(snapshots.c.snapshot_at, snapshots.c.status)
                        .where(snapshots.c.snapshot_at.in_(set(times))))
    return {r.snapshot_at: r.status for r in rows}


def set_status(conn: Connection, snapshot_at: datetime, status: str, reasons: str | None = None) -> int:
    result = conn.execute(update(snapshots).where(snapshots.c.snapshot_at == snapshot_at)
                          .values(status=status, reasons=reasons, decided_at=utcnow()))
    return result.rowcount
