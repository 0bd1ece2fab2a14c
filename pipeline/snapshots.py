"""The snapshots ledger: one row per snapshot in silver, saying which run made it and
whether gold may show it ('published') or keeps it back ('held', with the reasons).

Gold reads only published snapshots, so a snapshot held by the plausibility gate stays in
silver for diagnosis while the dashboard keeps showing the last good one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from pipeline import plausibility
from pipeline.db import upsert_rows, utcnow
from pipeline.schema import snapshots
from pipeline.silver import read

PUBLISHED = "published"
HELD = "held"
COLUMNS = [c.name for c in snapshots.columns]


def record(conn: Connection, entries: list[dict[str, Any]]) -> None:
    """Write (or rewrite) ledger rows: snapshot_at, run_id, source, fetched_at, requested_coins,
    coin_count, status, reasons. A rewritten row given no ``reasons`` keeps the ones it has
    (a replay must not erase why a snapshot was held or forced)."""
    if not entries:
        return
    now = utcnow()
    unique = {e["snapshot_at"]: e for e in entries}
    keep = [when for when, e in unique.items() if "reasons" not in e]
    kept = (
        dict(
            conn.execute(
                select(snapshots.c.snapshot_at, snapshots.c.reasons).where(
                    snapshots.c.snapshot_at.in_(set(keep)), snapshots.c.reasons.is_not(None)
                )
            ).all()
        )
        if keep
        else {}
    )
    rows = [
        tuple(
            {
                **{
                    "decided_at": now,
                    "reasons": kept.get(when),
                    "fetched_at": None,
                    "requested_coins": None,
                    "coin_count": None,
                },
                **e,
            }[c]
            for c in COLUMNS
        )
        for when, e in unique.items()
    ]
    upsert_rows(conn, snapshots, rows, COLUMNS, key=["snapshot_at"])


def statuses(conn: Connection, times: list[datetime]) -> dict[datetime, str]:
    """The ledger's status of each of these snapshot times that it knows."""
    if not times:
        return {}
    rows = conn.execute(
        select(snapshots.c.snapshot_at, snapshots.c.status).where(snapshots.c.snapshot_at.in_(set(times)))
    )
    return {r.snapshot_at: r.status for r in rows}


def set_status(conn: Connection, snapshot_at: datetime, status: str, reasons: str | None = None) -> int:
    result = conn.execute(
        update(snapshots)
        .where(snapshots.c.snapshot_at == snapshot_at)
        .values(status=status, reasons=reasons, decided_at=utcnow())
    )
    return result.rowcount


def latest_published(conn: Connection, before: datetime | None = None) -> datetime | None:
    """The newest published snapshot (strictly before ``before``, when given)."""
    query = select(func.max(snapshots.c.snapshot_at)).where(snapshots.c.status == PUBLISHED)
    if before is not None:
        query = query.where(snapshots.c.snapshot_at < before)
    return conn.execute(query).scalar()


def get(conn: Connection, snapshot_at: datetime) -> dict[str, Any] | None:
    row = conn.execute(select(snapshots).where(snapshots.c.snapshot_at == snapshot_at)).mappings().first()
    return dict(row) if row else None


def held_snapshots(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Held snapshots, newest first."""
    rows = conn.execute(
        select(snapshots).where(snapshots.c.status == HELD).order_by(snapshots.c.snapshot_at.desc()).limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def split_reasons(text: str | None) -> list[str]:
    return [part for part in (text or "").split(REASON_SEPARATOR) if part]


#: Reasons are kept in one text column, one after the other.
REASON_SEPARATOR = "; "


def gate(
    engine: Engine,
    entries: list[dict[str, Any]],
    *,
    vs_currency: str = "usd",
    thresholds: plausibility.Thresholds = plausibility.DEFAULT_THRESHOLDS,
) -> dict[datetime, list[str]]:
    """Run the plausibility gate on snapshots just loaded into silver, oldest first.

    ``entries``: one dict per snapshot with snapshot_at, run_id, requested (coins asked for,
    None if unknown or the whole market), vs_currency (default ``vs_currency``) and, for a
    whole-market sweep cut short, partial (why: always a reason to hold, first in the list).
    Each is judged against the newest published snapshot before it (or an earlier one of these
    that passed); a snapshot the ledger already holds stays held with its
    reasons, one it already published stays published. Returns the held ones: time -> reasons.
    """
    held: dict[datetime, list[str]] = {}
    with engine.connect() as conn:
        stablecoins = read.usd_stablecoins(conn)
        known = {}
        for entry in entries:
            row = get(conn, entry["snapshot_at"])
            if row is not None:
                known[entry["snapshot_at"]] = row
        passed: list[datetime] = []
        for entry in sorted(entries, key=lambda e: e["snapshot_at"]):
            when = entry["snapshot_at"]
            if when in known:
                if known[when]["status"] == HELD:
                    held[when] = split_reasons(known[when]["reasons"]) or ["held earlier"]
                continue
            previous_at = latest_published(conn, before=when)
            earlier = [p for p in passed if p < when]
            if earlier and (previous_at is None or max(earlier) > previous_at):
                previous_at = max(earlier)
            new = read.snapshot_rows(conn, when)
            previous = read.snapshot_rows(conn, previous_at) if previous_at is not None else None
            reasons = plausibility.check_snapshot(
                new,
                previous,
                requested=entry.get("requested"),
                vs_currency=entry.get("vs_currency") or vs_currency,
                quarantined=read.quarantined_count(conn, when, entry.get("run_id")),
                stablecoins=stablecoins,
                thresholds=thresholds,
            )
            if entry.get("partial"):
                reasons = [entry["partial"], *reasons]
            if reasons:
                held[when] = reasons
            else:
                passed.append(when)
    return held
