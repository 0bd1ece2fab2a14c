"""Freshness and recent runs, for ``python -m pipeline status`` and the dashboard."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from pipeline.config import Settings
from pipeline.db import check_schema, make_engine, utcnow
from pipeline.runs import current_holder, effective_status, recent_runs
from pipeline.schema import crypto_analytics_mart, snapshots


def freshness(settings: Settings) -> dict | None:
    """When the shown data describes (``snapshot_at``, the data's time), when it was fetched
    (``fetched_at``, None when unknown, e.g. an imported body), from where, and whether it is stale.

    Stale means the data's time is older than twice the schedule interval, or sample data.
    """
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        row = conn.execute(
            select(func.max(crypto_analytics_mart.c.snapshot_at), func.max(crypto_analytics_mart.c.source))
        ).first()
        if row is None or row[0] is None:
            return None
        fetched_at = conn.execute(select(snapshots.c.fetched_at).where(snapshots.c.snapshot_at == row[0])).scalar()
    snapshot_at, source = row
    age = utcnow() - snapshot_at
    limit = timedelta(minutes=2 * settings.interval_minutes)
    return {
        "snapshot_at": snapshot_at,
        "fetched_at": fetched_at,
        "source": source,
        "age": age,
        "stale": source == "sample" or age > limit,
    }


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def format_status(settings: Settings, limit: int = 10) -> str:
    """The status report. Read-only: works on a read-only database, and never creates or
    upgrades the schema (SchemaNotReady says how to, when it is missing or old)."""
    engine = make_engine(settings.database_url)
    check_schema(engine)
    lines = []
    fresh = freshness(settings)
    if fresh is None:
        lines.append("data: none yet (run `python -m pipeline run`, or `--source sample` offline)")
    else:
        note = " [STALE]" if fresh["stale"] else ""
        fetched = (
            f", fetched {fresh['fetched_at']:%Y-%m-%d %H:%M:%S} UTC"
            if fresh.get("fetched_at") and fresh["fetched_at"] != fresh["snapshot_at"]
            else ""
        )
        lines.append(
            f"data as of {fresh['snapshot_at']:%Y-%m-%d %H:%M:%S} UTC ({fresh['source']}{fetched}), "
            f"{_age(fresh['age'])} old{note}"
        )
    holder = current_holder(engine)
    lines.append(
        f"running now: {holder['run_id']} (pid {holder['pid']} on {holder['host']})"
        if holder
        else "running now: nothing"
    )
    runs = recent_runs(engine, limit)
    if runs:
        lines.append("")
        lines.append(
            f"{'run id':<24} {'trigger':<8} {'source':<7} {'status':<9} {'started (UTC)':<19} "
            f"{'secs':>6} {'silver':>7} {'quar.':>5}  error"
        )
        for r in runs:
            secs = f"{(r['finished_at'] - r['started_at']).total_seconds():.1f}" if r["finished_at"] else "-"
            status = effective_status(r, holder)  # a dead 'running' row reads as abandoned (nothing written)
            lines.append(
                f"{r['run_id']:<24} {r['trigger']:<8} {r['source']:<7} {status:<9} "
                f"{r['started_at']:%Y-%m-%d %H:%M:%S} {secs:>6} {r['silver_rows'] or 0:>7} "
                f"{r['quarantined_count'] or 0:>5}  {(r['error_message'] or '')[:80]}"
            )
    return "\n".join(lines)
