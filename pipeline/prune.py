"""Retention: remove silver rows and bronze folders older than N days, never what gold shows.

``prune(settings, keep_days=N)`` holds the pipeline lock, then:

* deletes silver rows older than ``cutoff = now - N days`` from
  ``staging_crypto_market``, ``staging_global_market``, ``quarantine_crypto_market``
  and ``staging_sparkline`` (by ``snapshot_at``) and ``staging_coin_history`` (by ``ts``),
  except the rows of the snapshot the current gold was built from (the mart's
  ``snapshot_at``; with no gold yet, the newest silver snapshot);
* removes bronze run folders ``<raw_dir>/<YYYY-MM-DD>/<run_id>/`` older than the
  cutoff, except the runs the current gold came from (the mart's ``run_id``
  values). A run's age is its snapshot; for an incomplete run, a backfill (whose
  bodies span a year) or a folder left without a manifest by a killed run, the
  time it started. A damaged run (unreadable or malformed manifest) never stops
  the prune: it is aged by its folder's name like a folder without a manifest,
  removed when older than the cutoff, else kept and listed in the report. Date
  folders left empty are removed too;
* rebuilds gold when silver that gold reads lost rows, so ``market_history``
  drops the pruned snapshots. The mart and the segments keep the same snapshot;
* never touches the rollups (pipeline.rollups: coin and market history at hourly and
  daily grain, coins_seen): raw snapshots go after N days, the history stays for ever
  (the rebuild keeps every bucket older than the raw rows left, and a bucket whose first
  snapshots were pruned as it was), so the charts' long ranges still reach back.

``dry_run=True`` only counts what would go, changes nothing and takes no lock.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePath

from sqlalchemy import ColumnElement, Engine, Table, and_, delete, func, select

from pipeline import bronze, logs
from pipeline.config import Settings
from pipeline.db import prepare_database, utcnow
from pipeline.errors import BronzeError, ConfigError
from pipeline.gold import build_gold
from pipeline.run_context import RunContext, run_context
from pipeline.schema import (
    crypto_analytics_mart,
    quarantine_crypto_market,
    staging_coin_history,
    staging_crypto_market,
    staging_global_market,
    staging_sparkline,
)

log = logs.get_logger(__name__)

MAX_KEEP_DAYS = 36_500
#: (table, its time column, whether the gold snapshot's rows are protected)
SILVER_TABLES = [
    (staging_crypto_market, "snapshot_at", True),
    (staging_global_market, "snapshot_at", True),
    (quarantine_crypto_market, "snapshot_at", True),
    (staging_sparkline, "snapshot_at", True),
    (staging_coin_history, "ts", False),
]
#: Silver tables the gold SQL reads: losing rows there means gold is rebuilt.
GOLD_INPUTS = {"staging_crypto_market", "staging_global_market", "staging_sparkline"}

_DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RUN_ID_TIME = re.compile(r"^(\d{8}T\d{6}Z)")


@dataclass
class BronzeFolder:
    """One bronze run folder that is (or would be) removed."""

    folder: PurePath
    run_id: str
    age_basis: str  # "snapshot" | "started" | "folder" (no manifest) | "damaged" (unreadable manifest)
    at: datetime
    bytes: int
    #: Where the folder is, as a person reads it (an ``s3://`` URL on an object store); "" means ``folder``.
    location: str = ""


@dataclass
class PruneReport:
    keep_days: int
    cutoff: datetime
    dry_run: bool
    gold_snapshot: datetime | None
    gold_runs: list[str]
    rows: dict[str, int] = field(default_factory=dict)
    folders: list[BronzeFolder] = field(default_factory=list)
    date_folders: list[PurePath] = field(default_factory=list)
    gold_rows: dict[str, int] | None = None
    #: Damaged bronze runs found (unreadable or malformed manifest), removed or not.
    damaged: list[bronze.DamagedRun] = field(default_factory=list)
    #: The run-log status of a real prune (``run_context`` sets it); a dry run logs no run.
    status: str = "dry run"

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def counts(self) -> dict[str, object]:
        """What the run log keeps of a prune: gold rows when rebuilt, and what was removed as its note."""
        return {
            "gold_rows": sum(self.gold_rows.values()) if self.gold_rows else None,
            "notes": (
                f"prune, keep {self.keep_days} day(s): removed {self.total_rows} silver rows, "
                f"{len(self.folders)} bronze folder(s), {len(self.date_folders)} empty date folder(s)"
            ),
        }

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        kept = (
            f"gold snapshot {self.gold_snapshot:%Y-%m-%d %H:%M:%S} UTC and its bronze "
            f"({', '.join(self.gold_runs) or 'no run id'}) kept"
            if self.gold_snapshot
            else "no gold snapshot yet"
        )
        dry = " (dry run, nothing changed)" if self.dry_run else ""
        out = [
            f"prune{dry}: keep {self.keep_days} day(s), cutoff {self.cutoff:%Y-%m-%d %H:%M:%S} UTC; {kept}",
            f"silver rows {verb}: {self.total_rows}",
        ]
        width = max(len(name) for name in self.rows) if self.rows else 0
        out += [f"  {name:<{width}}  {count:>9}" for name, count in self.rows.items()]
        size = sum(f.bytes for f in self.folders)
        out.append(
            f"bronze folders {verb}: {len(self.folders)} ({_size(size)}), "
            f"empty date folders {verb}: {len(self.date_folders)}"
        )
        for item in self.folders[:20]:
            basis = {"folder": "no manifest, started", "damaged": "damaged manifest, started"}.get(
                item.age_basis, item.age_basis
            )
            out.append(f"  {item.location or item.folder} ({basis} {item.at:%Y-%m-%d %H:%M:%S})")
        if len(self.folders) > 20:
            out.append(f"  ... and {len(self.folders) - 20} more")
        if self.damaged:
            going = {f.folder for f in self.folders}
            kept_damaged = [d for d in self.damaged if d.folder not in going]
            gone = "would be removed" if self.dry_run else "removed"
            out.append(
                f"damaged bronze runs: {len(self.damaged)} ({len(self.damaged) - len(kept_damaged)} {gone}: older "
                f"than the cutoff; {len(kept_damaged)} kept; `python -m pipeline verify` lists them)"
            )
            out += [f"  kept {d.line()}" for d in kept_damaged[:20]]
            if len(kept_damaged) > 20:
                out.append(f"  ... and {len(kept_damaged) - 20} more")
        out.append("rollups kept: hourly and daily history and the coins seen are never pruned")
        if self.gold_rows is not None:
            out.append("gold rebuilt: " + ", ".join(f"{k} {v}" for k, v in self.gold_rows.items()))
        elif not self.dry_run:
            out.append("gold unchanged (no silver row it reads was removed)")
        return out


def _size(size: int) -> str:
    n = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _gold_origin(engine: Engine) -> tuple[datetime | None, list[str]]:
    """The snapshot and bronze run ids the current gold came from (else the newest silver snapshot)."""
    m, s = crypto_analytics_mart, staging_crypto_market
    with engine.connect() as conn:
        snapshot = conn.execute(select(func.max(m.c.snapshot_at))).scalar()
        if snapshot is not None:
            runs = [r[0] for r in conn.execute(select(m.c.run_id).distinct())]
        else:
            snapshot = conn.execute(select(func.max(s.c.snapshot_at))).scalar()
            runs = (
                [r[0] for r in conn.execute(select(s.c.run_id).where(s.c.snapshot_at == snapshot).distinct())]
                if snapshot is not None
                else []
            )
    return snapshot, sorted(runs)


def _silver_condition(
    table: Table, column: str, protected: bool, cutoff: datetime, gold_snapshot: datetime | None
) -> ColumnElement[bool]:
    col = table.c[column]
    if protected and gold_snapshot is not None:
        return and_(col < cutoff, col != gold_snapshot)
    return col < cutoff


def _parse(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _run_time(run: bronze.BronzeRun) -> tuple[str, datetime | None]:
    manifest = run.manifest
    snapshot = _parse(manifest.get("snapshot_at"))
    if manifest.get("complete") and snapshot is not None and manifest.get("source") != "backfill":
        return "snapshot", snapshot
    return "started", _parse(manifest.get("started_at"))


def _orphan_time(folder: PurePath) -> datetime | None:
    """A run folder without a manifest (its process was killed): when it started, from its name."""
    match = _RUN_ID_TIME.match(folder.name)
    if match:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ")
    if _DATE_FOLDER.match(folder.parent.name):  # end of that UTC day, to be safe
        return datetime.strptime(folder.parent.name, "%Y-%m-%d") + timedelta(days=1)
    return None


def scan_bronze(
    raw_dir: bronze.Root, cutoff: datetime, keep_runs: set[str]
) -> tuple[list[BronzeFolder], list[bronze.DamagedRun]]:
    """Run folders older than ``cutoff`` that no kept run owns (oldest first), and every damaged run seen.

    A damaged run (unreadable or malformed manifest) or a folder without a manifest is
    aged by its folder's name (the run id starts with when it started) and never
    stops the scan.
    """
    store = bronze.as_store(raw_dir)
    found: list[BronzeFolder] = []
    runs, problems = bronze.scan_runs(store, include_incomplete=True)
    for run in runs:
        basis, at = _run_time(run)
        if at is None or at >= cutoff or run.run_id in keep_runs or run.folder.name in keep_runs:
            continue
        found.append(
            BronzeFolder(run.folder, run.run_id, basis, at, store.tree_bytes(run.folder), store.location(run.folder))
        )
    for problem in problems:
        folder = problem.folder
        if not _DATE_FOLDER.match(folder.parent.name):
            continue
        at = _orphan_time(folder)
        if at is None or at >= cutoff or folder.name in keep_runs or problem.run_id in keep_runs:
            continue
        found.append(
            BronzeFolder(
                folder,
                problem.name,
                "folder" if problem.incomplete else "damaged",
                at,
                store.tree_bytes(folder),
                store.location(folder),
            )
        )
    damaged = [p for p in problems if not p.incomplete]
    return sorted(found, key=lambda f: (f.at, f.run_id)), damaged


def bronze_to_remove(raw_dir: bronze.Root, cutoff: datetime, keep_runs: set[str]) -> list[BronzeFolder]:
    """Run folders older than ``cutoff`` that no kept run owns, oldest first."""
    return scan_bronze(raw_dir, cutoff, keep_runs)[0]


def _empty_date_folders(raw_dir: bronze.Root, removed: list[PurePath]) -> list[PurePath]:
    """Date folders that hold nothing once ``removed`` are gone."""
    store = bronze.as_store(raw_dir)
    gone = set(removed)
    empty = []
    for day in store.folders(store.root):
        if _DATE_FOLDER.match(day.name) and not store.files(day) and all(c in gone for c in store.folders(day)):
            empty.append(day)
    return empty


def check_keep_days(keep_days: int) -> None:
    if not 1 <= keep_days <= MAX_KEEP_DAYS:
        raise ConfigError(f"--keep-days must be between 1 and {MAX_KEEP_DAYS}, got {keep_days}")


def prune(
    settings: Settings,
    *,
    keep_days: int,
    dry_run: bool = False,
    now: datetime | None = None,
    engine: Engine | None = None,
    trigger: str = "cli",
) -> PruneReport:
    """Remove silver rows and bronze folders older than ``keep_days`` days; see the module docstring.

    A real prune is a run like any writer (origin ``prune``): it holds the lock and has its
    row in the run log, so the run "Running now" names is always one the log lists.
    """
    check_keep_days(keep_days)
    engine = engine or prepare_database(settings)
    if dry_run:
        return _prune(settings, engine, keep_days, dry_run=True, now=now)
    with run_context(settings, trigger=trigger, origin="prune", engine=engine) as run:
        return _prune(settings, engine, keep_days, dry_run=False, now=now, run=run)


def _prune(
    settings: Settings,
    engine: Engine,
    keep_days: int,
    *,
    dry_run: bool,
    now: datetime | None,
    run: RunContext | None = None,
) -> PruneReport:
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    gold_snapshot, gold_runs = _gold_origin(engine)
    report = PruneReport(
        keep_days=keep_days, cutoff=cutoff, dry_run=dry_run, gold_snapshot=gold_snapshot, gold_runs=gold_runs
    )
    if run is not None:
        run.track(report)
        run.stage("silver")

    conditions = [
        (table, _silver_condition(table, column, protected, cutoff, gold_snapshot))
        for table, column, protected in SILVER_TABLES
    ]
    if dry_run:
        with engine.connect() as conn:
            for table, condition in conditions:
                report.rows[table.name] = (
                    conn.execute(select(func.count()).select_from(table).where(condition)).scalar() or 0
                )
    else:
        with engine.begin() as conn:
            for table, condition in conditions:
                report.rows[table.name] = max(conn.execute(delete(table).where(condition)).rowcount or 0, 0)

    if run is not None:
        run.stage("bronze")
    store = settings.bronze
    report.folders, report.damaged = scan_bronze(store, cutoff, set(gold_runs))
    for damaged in report.damaged:
        log.warning("prune: %s", damaged.line())
    report.date_folders = _empty_date_folders(store, [f.folder for f in report.folders])
    if not dry_run:
        for item in report.folders:
            try:
                bronze.remove_folder(item.folder, store)
            except OSError as exc:
                raise BronzeError(f"could not remove bronze folder {store.location(item.folder)}: {exc}") from exc
        for day in report.date_folders:
            if not store.remove_empty_folder(day):  # something new appeared in it meanwhile: keep it
                log.warning("kept date folder %s: not empty", store.location(day))
        if any(report.rows.get(name) for name in GOLD_INPUTS):
            if run is not None:
                run.stage("gold")
            with run.lease.long_write() if run is not None else nullcontext():
                report.gold_rows = build_gold(engine)
    return report
