"""Freshness and recent runs, for ``python -m pipeline status`` and the dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypedDict

from sqlalchemy import Engine, Select, func, select

from pipeline.config import Settings
from pipeline.db import check_schema, make_engine, utcnow
from pipeline.runs import current_holder, effective_status, recent_runs
from pipeline.schema import crypto_analytics_mart, snapshots


class Freshness(TypedDict):
    """What the published data describes and how old it is."""

    snapshot_at: datetime  # the data's time
    fetched_at: datetime | None  # None when unknown, e.g. an imported body
    source: str
    age: timedelta
    stale: bool


def freshness_statement() -> Select[datetime, str]:
    """The newest published snapshot time and its source (also timed by the benchmark)."""
    m = crypto_analytics_mart
    return select(func.max(m.c.snapshot_at), func.max(m.c.source))


def data_freshness(engine: Engine, interval_minutes: int) -> Freshness | None:
    """When the shown data describes (``snapshot_at``, the data's time), when it was fetched
    (``fetched_at``), from where, and whether it is stale; None before the first publish.

    Stale means the data's time is older than twice the schedule interval, or sample data.
    """
    with engine.connect() as conn:
        row = conn.execute(freshness_statement()).first()
        if row is None or row[0] is None:
            return None
        fetched_at = conn.execute(select(snapshots.c.fetched_at).where(snapshots.c.snapshot_at == row[0])).scalar()
    snapshot_at: datetime = row[0]
    source: str = row[1]
    age = utcnow() - snapshot_at
    limit = timedelta(minutes=2 * interval_minutes)
    return {
        "snapshot_at": snapshot_at,
        "fetched_at": fetched_at,
        "source": source,
        "age": age,
        "stale": source == "sample" or age > limit,
    }


def freshness(settings: Settings) -> Freshness | None:
    """``data_freshness`` for the configured database and schedule."""
    return data_freshness(make_engine(settings.database_url), settings.interval_minutes)


#: (below this many seconds, divisor, compact unit, spelled-out unit); older than the last is in days.
_AGE_UNITS = ((120, 1, "s", " s"), (7200, 60, "m", " min"), (172800, 3600, "h", " h"))


def format_age(delta: timedelta, compact: bool = False) -> str:
    """How old something is: '45 s', '12 min', '3 h', '1,502 days'; ``compact``: '45s', '12m', '3h', '4d'.

    Negative ages (a clock a little ahead) read as 0. The one age formatter: the CLI status
    uses the compact form, the dashboard the spelled-out one.
    """
    seconds = max(int(delta.total_seconds()), 0)
    for limit, divisor, short, long in _AGE_UNITS:
        if seconds < limit:
            return f"{seconds // divisor}{short}" if compact else f"{seconds // divisor}{long}"
    days = seconds // 86400
    return f"{days}d" if compact else f"{days:,} days"


def format_status(settings: Settings, limit: int = 10) -> str:
    """The status report. Read-only: works on a read-only database, and never creates or
    upgrades the schema (SchemaNotReady says how to, when it is missing or old)."""
    engine = make_engine(settings.database_url)
    check_schema(engine)
    lines: list[str] = []
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
            f"{format_age(fresh['age'], compact=True)} old{note}"
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
