"""Gold: rebuild the analytics tables from silver with the SQL in ``sql/gold/``.

All gold tables are rebuilt inside one transaction, so a reader (the dashboard)
sees either the previous complete version or the new complete version, never a
half-built or empty table, on SQLite (WAL) as on PostgreSQL (MVCC). A failure
rolls everything back and the previous gold stays as it was.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, DateTime, Engine, bindparam, exists, func, select, text

from pipeline import rollups
from pipeline.db import analyze_after_bulk_change, big_sorts
from pipeline.gold_catalog import GOLD_SQL_DIR, GoldModel, build_order, load_catalog
from pipeline.schema import market_history, snapshots

__all__ = ["GOLD_SQL_DIR", "build_gold", "oldest_unpublished_snapshot", "rebuild"]

#: A full rebuild's "since": before any snapshot.
EARLIEST = datetime(1970, 1, 1)


#: Silver snapshots newer than gold's newest point that have no ledger row (a run stopped between
#: its silver commit and recording the snapshot) are recorded as published, so no snapshot stays
#: invisible forever. Only silver after ``:after`` is searched, through the snapshot-time index: a run
#: killed that way left the newest snapshot of its moment, and the next run's build looks from gold's
#: newest point on (the whole of silver took 5.5 s of every refresh at 10M rows). A bulk load killed
#: the same way (replay, import) leaves older snapshots: the next replay records them.
RECOVER_ORPHAN_SNAPSHOTS = text(
    "INSERT INTO snapshots (snapshot_at, run_id, source, coin_count, status, reasons, decided_at) "
    "SELECT snapshot_at, min(run_id), min(source), count(*), 'published', "
    "'recovered: loaded into silver by a run that stopped before recording it', min(snapshot_at) "
    "FROM staging_crypto_market WHERE snapshot_at > :after "
    "AND snapshot_at NOT IN (SELECT snapshot_at FROM snapshots) "
    "GROUP BY snapshot_at"
).bindparams(bindparam("after", type_=DateTime()))


def recover_orphan_snapshots(conn: Connection) -> int:
    """Record the snapshots left in silver without a ledger row after gold's newest point (all of
    silver when gold has none) as published; returns how many."""
    after = conn.execute(select(func.max(market_history.c.snapshot_at))).scalar()
    result = conn.execute(RECOVER_ORPHAN_SNAPSHOTS, {"after": after or EARLIEST})
    return max(int(result.rowcount or 0), 0)


def oldest_unpublished_snapshot(conn: Connection) -> datetime | None:
    """The oldest published snapshot with no market_history point yet.

    A run killed (or failing) between its silver commit and its gold publish leaves
    such a snapshot behind; the next incremental build must start there, not only
    at what that next run added, or the point would be missing for good.
    """
    recover_orphan_snapshots(conn)
    missing = ~exists().where(market_history.c.snapshot_at == snapshots.c.snapshot_at)
    return conn.execute(
        select(func.min(snapshots.c.snapshot_at)).where(snapshots.c.status == "published", missing)
    ).scalar()


def build_gold(engine: Engine, sql_dir: Path = GOLD_SQL_DIR, *, since: datetime | None = None) -> dict[str, int]:
    """Rebuild every gold table in dependency order and publish them together.

    ``since``: the oldest snapshot this run added. Tables declared ``incremental`` in their
    YAML then only rebuild their rows from that time on (a run adds one history point instead
    of re-aggregating all of silver); ``None`` rebuilds everything (replay, prune). The rollups
    (pipeline.rollups) are brought up to date in the same transaction.
    Returns rows written per table, in build order.
    """
    models = load_catalog(sql_dir)
    with engine.begin() as conn:
        if since is None:
            big_sorts(conn)
        else:
            behind = oldest_unpublished_snapshot(conn)
            if behind is not None and behind < since:
                since = behind
        counts = rebuild(conn, models, since)
        rollups.refresh(conn, since)  # same transaction: readers see gold and its rollups together
    if since is None:  # a full rebuild follows a bulk change (replay, prune): plans for the next runs
        analyze_after_bulk_change(engine)
    return counts


def rebuild(conn: Connection, models: dict[str, GoldModel], since: datetime | None) -> dict[str, int]:
    """Delete and re-insert each gold table's rows in the caller's transaction, upstream tables first."""
    counts: dict[str, int] = {}
    for name in build_order(models, conn.dialect.name):
        model = models[name]
        columns = ", ".join(c.name for c in model.table.columns)
        select_sql = model.sql(conn.dialect.name).strip().rstrip(";")
        params = {"since": since or EARLIEST} if ":since" in select_sql else {}
        if since is not None and model.incremental:
            conn.execute(text(f"DELETE FROM {name} WHERE {model.incremental} >= :since"), {"since": since})
        else:
            conn.execute(text(f"DELETE FROM {name}"))
        result = conn.execute(
            text(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM ({select_sql}) AS built"), params
        )
        counts[name] = result.rowcount
    return counts
