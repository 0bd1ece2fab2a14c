"""Wires fetch → bronze → silver → gold, and the replay path. Owns no SQL and no HTTP.

``run_pipeline`` is the one entry point the CLI, the scheduler sidecar and the
dashboard's refresh button all call. A run that fails at any stage leaves gold
as it was: silver only receives complete fetches, and gold is published in one
transaction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypedDict

from sqlalchemy import Connection, Engine

from pipeline import alerts, bronze, budget, classes, engines, lake, logs, sectors
from pipeline import snapshots as snapshot_ledger
from pipeline.config import Settings
from pipeline.db import batch_page_cache, commits_flushed_later, utcnow
from pipeline.db import prepare_database as prepare_database  # re-exported: the scheduler imports it from here
from pipeline.errors import PipelineError, SnapshotHeld
from pipeline.gold import build_gold
from pipeline.providers.base import COINS, SnapshotRequest, Unavailable
from pipeline.providers.registry import get_provider
from pipeline.providers.sample import sample_snapshots
from pipeline.run_context import RunContext, run_context
from pipeline.silver.batches import PreparedBatch, prepare_batch
from pipeline.silver.data_time import data_time, last_updated_values
from pipeline.silver.load import (
    count_run_rows,
    indexes_built_after,
    load_batch,
    load_coin_history,
    unused_snapshot_time,
)
from pipeline.silver.market_chart import market_chart_rows
from pipeline.silver.transform import STALE_RECORD_AFTER

log = logs.get_logger(__name__)

Progress = Callable[[str, str], None]


def _quiet(stage: str, message: str) -> None:
    log.info("[%s] %s", stage, message)


@dataclass
class RunResult:
    run_id: str
    source: str
    status: str = "running"
    snapshot_at: datetime | None = None
    bronze_runs: list[str] = field(default_factory=list)
    bronze_records: int = 0
    silver_rows: int = 0
    quarantined: int = 0
    duplicates_dropped: int = 0
    gold_rows: dict[str, int] = field(default_factory=dict)
    global_basis: bool = True
    warnings: list[str] = field(default_factory=list)
    #: Where silver's batches also go while the run loads them (LAKE_URL; pipeline.lake.writing sets it).
    lake: lake.LakeSink | None = field(default=None, repr=False)

    def counts(self) -> dict[str, object]:
        return {
            "snapshot_at": self.snapshot_at,
            "bronze_records": self.bronze_records,
            "silver_rows": self.silver_rows,
            "gold_rows": sum(self.gold_rows.values()) if self.gold_rows else None,
            "quarantined_count": self.quarantined,
            "duplicates_dropped": self.duplicates_dropped,
            "notes": "\n".join(self.warnings) or None,
        }


def run_pipeline(
    settings: Settings,
    *,
    trigger: str = "cli",
    source: str = "api",
    top_n: int | None = None,
    progress: Progress = _quiet,
    engine: Engine | None = None,
) -> RunResult:
    """Fetch (live API or bundled sample), keep bronze, load silver, publish gold.

    ``top_n``: coins to fetch (default ``settings.top_n``; None there: the whole market). The
    refresh button (``trigger="button"``) never sweeps the whole market: a person is waiting, so
    it fetches ``settings.button_top_n``. Raises RunLocked before anything is written when another
    run holds the lock.
    """
    wanted = top_n or settings.top_n
    with run_context(settings, trigger=trigger, origin=source, engine=engine) as run:
        engine, run_id = run.engine, run.run_id
        result = run.track(RunResult(run_id=run_id, source=source))
        classes_changed = False
        run.stage("fetch")
        if wanted is None and trigger == "button":
            wanted = settings.button_top_n
            progress(
                "fetch",
                f"the refresh button fetches the top {wanted}; the whole market is swept by scheduled and CLI runs",
            )
        if source == "api":
            bronze_runs = [
                _fetch_api(settings, engine, run_id, wanted, progress, result, interactive=trigger == "button")
            ]
            refreshed = classes.refresh_if_due(settings, engine, interactive=trigger == "button", progress=progress)
            result.warnings += refreshed.warnings
            classes_changed = refreshed.status == "refreshed"
            # Sectors on their own cadence; a failure is a note, never a failed or held run.
            result.warnings += sectors.refresh_if_due(
                settings, engine, interactive=trigger == "button", progress=progress, run_id=run_id
            ).warnings
            if (budget_note := budget.warning_line(settings, engine)) is not None:  # past 80 % of the month's calls
                result.warnings.append(budget_note)
        elif source == "sample":
            bronze_runs = _fetch_sample(settings, run_id, wanted, progress)
        else:
            raise ValueError(f"unknown source {source!r}")
        result.bronze_runs = [r.run_id for r in bronze_runs]
        run.stage("bronze")
        result.bronze_records = sum(r.markets_record_count for r in bronze_runs)
        progress("bronze", f"kept {result.bronze_records} raw records in {len(bronze_runs)} bronze run(s)")

        run.stage("silver")
        # LAKE_URL: the run's silver rows go to the lake table in one commit once silver has them
        with lake.writing(settings, result, rebuild=False, progress=progress):
            _load_silver(
                engine,
                bronze_runs,
                result,
                progress,
                workers=settings.replay_workers,
                global_max_age_minutes=settings.global_max_age_minutes,
                stale_after=settings.stale_record_after,
            )
        result.snapshot_at = bronze_runs[-1].snapshot_at
        # What the run log reports is what silver holds for this run, not what was sent.
        result.silver_rows = count_run_rows(engine, {r.run_id: r.snapshot_at for r in bronze_runs})
        # The plausibility gate: a snapshot that is not what was asked for stays in silver, held out of gold.
        held = snapshot_ledger.gate(
            engine,
            [
                {
                    "snapshot_at": r.snapshot_at,
                    "run_id": r.run_id,
                    "vs_currency": r.vs_currency,
                    # the bundled sample is what it is: only the API is asked for a number of coins
                    "requested": wanted if source == "api" or wanted is None else min(wanted, r.markets_record_count),
                    "partial": partial_sweep(r),
                }
                for r in bronze_runs
            ],
        )
        _record_snapshots(engine, bronze_runs, requested=wanted, held=held)
        if held:
            reasons = [reason for when in sorted(held) for reason in held[when]]
            progress("gold", "held, gold unchanged: " + "; ".join(reasons))
            raise SnapshotHeld(reasons, run_id=run_id, snapshot_at=max(held))

        # New coin classes change the top-N totals and stablecoin shares of every history point:
        # rebuild all of gold then (once a day at most), so a later replay gives the same history.
        since = None if classes_changed else min(r.snapshot_at for r in bronze_runs)
        result = publish_gold(run, result, progress, since=since)
        alerts.after_publish(run, result, progress)  # never raises: a failure is a note on the run
    alerts.deliver(settings, engine, progress)  # lock released; bounded by ALERTS_WEBHOOK_TIMEOUT_SECONDS
    return result


def publish_gold(run: RunContext, result: RunResult, progress: Progress, since: datetime | None) -> RunResult:
    """Gold stage and the run's success record (``since=None``: rebuild all of gold)."""
    run.stage("gold")
    with run.lease.long_write():  # one transaction: on SQLite, as long as a full rebuild takes
        result.gold_rows = build_gold(run.engine, since=since)
    progress("gold", "published " + ", ".join(f"{k}: {v}" for k, v in result.gold_rows.items()))
    run.succeed()
    return result


def _record_snapshots(
    engine: Engine,
    runs: Sequence[bronze.BronzeRun],
    *,
    requested: int | None,
    held: dict[datetime, list[str]] | None = None,
) -> None:
    """Ledger rows for the snapshots just loaded into silver. A snapshot the ledger already
    knows keeps its status (a replay never publishes what was held); one the plausibility
    gate held (``held``: time -> reasons) is recorded 'held' with its reasons."""
    with engine.begin() as conn:
        for start in range(0, len(runs), LEDGER_CHUNK):
            _record_chunk(conn, list(runs[start : start + LEDGER_CHUNK]), requested=requested, held=held or {})


#: Runs the ledger is written for at a time: a replay of 40,000 runs does not build 40,000 rows at
#: once (~20 MB of dicts), nor ask the database about 40,000 times in one statement.
LEDGER_CHUNK = 2_000


def _record_chunk(
    conn: Connection, runs: list[bronze.BronzeRun], *, requested: int | None, held: dict[datetime, list[str]]
) -> None:
    """Ledger rows for one chunk of runs (see _record_snapshots)."""
    known = snapshot_ledger.statuses(conn, [r.snapshot_at for r in runs])
    # A whole-market sweep cut short that the ledger does not know (a replay into an empty database)
    # is held too; one it knows keeps its status (a forced publish stays published).
    held = {
        **{r.snapshot_at: [why] for r in runs if r.snapshot_at not in known and (why := partial_sweep(r))},
        **held,
    }
    snapshot_ledger.record(
        conn,
        [
            {
                "snapshot_at": r.snapshot_at,
                "run_id": r.run_id,
                "source": r.source,
                "fetched_at": _manifest_time(
                    r.manifest["fetched_at"] if "fetched_at" in r.manifest else r.manifest.get("started_at")
                ),
                "requested_coins": requested if requested is not None else r.top_n,
                "coin_count": r.markets_record_count,
                "status": snapshot_ledger.HELD
                if r.snapshot_at in held
                else known.get(r.snapshot_at, snapshot_ledger.PUBLISHED),
                **(
                    {"reasons": snapshot_ledger.REASON_SEPARATOR.join(held[r.snapshot_at])}
                    if r.snapshot_at in held
                    else {}
                ),
            }
            for r in runs
            if r.snapshot_at not in known or known[r.snapshot_at] == snapshot_ledger.PUBLISHED
        ],
    )


#: Bronze manifest field of a whole-market sweep cut short: why, as the held snapshot's reason.
PARTIAL_SWEEP = "partial_sweep"


def partial_sweep(run: bronze.BronzeRun) -> str | None:
    """Why this bronze run is a partial whole-market sweep (None: it is not)."""
    reason = run.manifest.get(PARTIAL_SWEEP)
    return reason if isinstance(reason, str) and reason else None


def _manifest_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _distinct_snapshot_times(runs: bronze.RunListing) -> bronze.RunListing:
    """Give API runs that share a snapshot time (bronze written before times kept microseconds)
    a time of their own, one microsecond later, so neither overwrites the other in silver.
    Deterministic (runs come sorted by time, then run id), so replays stay identical."""
    taken: set[datetime] = set()
    moved: dict[int, str] = {}
    for position, run in enumerate(runs):
        when = run.snapshot_at
        if run.source == "api":
            while when in taken:
                when += timedelta(microseconds=1)
            if when != run.snapshot_at:
                moved[position] = when.isoformat()
        taken.add(when)
    return runs.with_snapshot_times(moved)


def _fetch_api(
    settings: Settings,
    engine: Engine,
    run_id: str,
    top_n: int | None,
    progress: Progress,
    result: RunResult,
    *,
    interactive: bool = False,
) -> bronze.BronzeRun:
    """One snapshot from the provider into bronze (``top_n=None``: the whole market, a progress
    line per page). A sweep cut short keeps its pages and says why in the manifest
    (:data:`PARTIAL_SWEEP`): the gate then holds the snapshot."""
    started = utcnow()
    provider = get_provider(settings.provider)
    writer = bronze.BronzeWriter(
        settings.bronze,
        run_id,
        source="api",
        provider=provider.name,
        started_at=started,
        vs_currency=settings.vs_currency,
        top_n=top_n,
    )
    request = SnapshotRequest(vs_currency=settings.vs_currency, top_n=top_n, interactive=interactive)
    fetched_at = None
    last_updated: list[object] = []
    partial: str | None = None
    if top_n is None:
        progress("fetch", "sweeping the whole market: every page of 250 coins until a short one")
    try:
        records = 0
        for item in provider.fetch_snapshot(settings, request, writer.add):
            if isinstance(item, Unavailable) and item.role == COINS:
                partial = item.message
                result.warnings.append(partial)
                progress("fetch", f"{partial}; the snapshot will be held, not published")
            elif isinstance(item, Unavailable):
                warning = f"{item.message}; dominance uses the tracked coins instead"
                result.warnings.append(warning)
                result.global_basis = False
                progress("fetch", warning)
            elif item.endpoint == provider.endpoints[COINS]:
                fetched_at = fetched_at or item.fetched_at
                coins = provider.coin_records(item.json())
                records += len(coins)
                last_updated.extend(last_updated_values(coins))
                progress("fetch", f"{item.endpoint} page {item.page or 1}: {len(coins)} coins ({records:,} so far)")
            else:
                progress("fetch", "global market totals fetched")
    except BaseException as exc:
        try:
            writer.finish(
                snapshot_at=fetched_at,
                complete=False,
                error=str(exc) or type(exc).__name__,
                extra={"fetched_at": _iso_time(fetched_at)},
            )
        except Exception as manifest_error:  # noqa: BLE001 - e.g. a full disk: the first error is the news
            log.warning("could not write the incomplete bronze manifest of %s: %s", run_id, manifest_error)
        raise
    # The snapshot's time is the moment its data describes (median last_updated, the fetch
    # time kept beside it); still one run per snapshot time.
    found = data_time(last_updated, fetched_at)
    writer.finish(
        snapshot_at=unused_snapshot_time(engine, found.at),
        complete=True,
        extra={
            "fetched_at": _iso_time(fetched_at),
            "data_time_basis": found.basis,
            **({PARTIAL_SWEEP: partial} if partial else {}),
        },
    )
    return bronze.find_run(settings.bronze, run_id)


def _fetch_sample(settings: Settings, run_id: str, top_n: int | None, progress: Progress) -> list[bronze.BronzeRun]:
    snapshots = sample_snapshots()
    runs = []
    for number, snap in enumerate(snapshots, start=1):
        bronze_id = run_id if len(snapshots) == 1 else f"{run_id}-s{number:02d}"
        writer = bronze.BronzeWriter(
            settings.bronze,
            bronze_id,
            source="sample",
            provider=snap.provider,
            started_at=utcnow(),
            vs_currency=snap.vs_currency,
            top_n=top_n,
        )
        for response in snap.responses:
            writer.add(response)
        # The sample's manifest time is when its data was recorded (its newest last_updated).
        writer.finish(
            snapshot_at=snap.snapshot_at,
            complete=True,
            extra={"fetched_at": _iso_time(snap.snapshot_at), "data_time_basis": "recorded"},
        )
        runs.append(bronze.find_run(settings.bronze, bronze_id))
    progress(
        "fetch",
        f"loaded the offline sample ({len(runs)} snapshot(s), recorded {snapshots[-1].snapshot_at:%Y-%m-%d %H:%M} UTC)",
    )
    return runs


def _plan_batches(runs: Sequence[bronze.BronzeRun], batch_records: int) -> list[Sequence[bronze.BronzeRun]]:
    """Group runs into batches of about ``batch_records`` records; the newest run alone at the end
    (it is the only one whose 168-point sparklines are encoded). Each batch is a slice of ``runs``
    (of a :class:`bronze.RunListing`, a view: its runs are built when the batch is prepared)."""
    batches: list[Sequence[bronze.BronzeRun]] = []
    start = size = 0
    for end, run in enumerate(runs[:-1], start=1):
        size += run.markets_record_count
        if size >= batch_records:
            batches.append(runs[start:end])
            start, size = end, 0
    if start < len(runs) - 1:
        batches.append(runs[start : len(runs) - 1])
    if runs:
        batches.append(runs[len(runs) - 1 :])
    return batches


#: Records per replay batch when PIPELINE_REPLAY_BATCH_RECORDS is not set. Into SQLite the batches
#: are loaded in this process beside a worker process transforming the next ones, and both hold
#: about what a batch holds: at 5,000 the replay of 1M records peaked at 392-396 MB (process tree),
#: at 10,000 at 424-428 MB. PostgreSQL's transforms run in a thread (~230 MB either way), where
#: fewer, larger COPYs are worth more.
REPLAY_BATCH_RECORDS = {"sqlite": 5_000, "postgresql": 10_000}
DEFAULT_BATCH_RECORDS = 10_000

#: Silver rows a replay commits at a time, whatever its batch size: a SQLite commit costs ~7-35 ms
#: of disk I/O (a WAL checkpoint), so small batches for memory need not mean more commits.
COMMIT_RECORDS = 10_000


class _BatchOptions(TypedDict):
    """``prepare_batch``'s keyword arguments for one batch."""

    with_sparklines: bool
    global_max_age_minutes: float
    stale_after: timedelta | None


def _load_silver(
    engine: Engine,
    runs: Sequence[bronze.BronzeRun],
    result: RunResult,
    progress: Progress,
    *,
    workers: int = 1,
    batch_records: int | None = None,
    global_max_age_minutes: float = 30.0,
    stale_after: timedelta | None = STALE_RECORD_AFTER,
    plan: engines.EnginePlan | None = None,
) -> None:
    """Transform and upsert bronze runs in bounded batches: memory stays flat as history grows.

    With many batches, ``workers`` prepare the next batches while this one loads (CPU-bound
    parsing overlaps database writes): threads of this process into PostgreSQL, spawned processes
    into SQLite (``engines.for_database`` says why). A worker process holds ~185 MB at 10k-record
    batches (PIPELINE_REPLAY_WORKERS; two are faster only on two idle cores). ``plan`` sends the
    transforms to a Dask cluster instead (``pipeline.engines``); loading stays here, in batch order,
    either way.
    """
    if batch_records is None:
        batch_records = REPLAY_BATCH_RECORDS.get(engine.dialect.name, DEFAULT_BATCH_RECORDS)
    batches = _plan_batches(runs, batch_records)
    options = [
        _BatchOptions(
            with_sparklines=number == len(batches) - 1,
            global_max_age_minutes=global_max_age_minutes,
            stale_after=stale_after,
        )
        for number in range(len(batches))
    ]
    chosen = engines.for_database(plan or engines.EnginePlan("local", workers=workers), engine.dialect.name)
    if chosen.engine == "local" and (len(batches) <= 3 or (os.cpu_count() or 1) < 2):
        chosen = engines.EnginePlan("local", workers=0)  # a short run is not worth starting a worker

    uncommitted = 0

    def commit(conn: Connection) -> None:
        """Commit what is loaded, then say so: a progress callback may write to the database
        itself (a run request's progress), which on SQLite waits while this transaction is open."""
        nonlocal uncommitted
        conn.commit()
        if uncommitted:
            progress("silver", f"{result.silver_rows} rows loaded, {result.quarantined} quarantined")
        uncommitted = 0

    def apply(conn: Connection, prepared: PreparedBatch) -> None:
        nonlocal uncommitted
        with batch_page_cache(conn):
            result.silver_rows += load_batch(conn, prepared)
        if result.lake is not None:
            result.lake.add(prepared.rows)
        result.quarantined += len(prepared.quarantine)
        result.duplicates_dropped += prepared.duplicates_dropped
        uncommitted += max(prepared.rows.num_rows, 1)
        if uncommitted >= COMMIT_RECORDS:
            commit(conn)

    # One connection for the load; leaving it without the last commit (an error) rolls back what is not committed.
    with engine.connect() as conn, commits_flushed_later(conn), engines.batch_executor(chosen) as (pool, slots):
        if pool is None:
            for batch, opts in zip(batches, options):
                apply(conn, prepare_batch(list(batch), **opts))
        else:
            pending = []
            for batch, opts in zip(batches, options):
                pending.append(pool.submit(prepare_batch, list(batch), **opts))
                if len(pending) > slots:  # at most slots+1 batches in memory
                    apply(conn, pending.pop(0).result())
            for future in pending:
                apply(conn, future.result())
        commit(conn)


def _reload_backfills(engine: Engine, backfills: list[bronze.BronzeRun], progress: Progress) -> None:
    """Coin history from every healthy backfill's bronze (an interrupted backfill's coins too)."""
    points = 0
    for run in backfills:
        with engine.begin() as conn:
            for coin_id, body in run.market_charts():
                points += load_coin_history(conn, market_chart_rows(body, coin_id=coin_id, run_id=run.run_id).rows)
    if points:
        progress("silver", f"{points} backfilled history points reloaded")


def replay(
    settings: Settings,
    *,
    trigger: str = "cli",
    progress: Progress = _quiet,
    engine: Engine | None = None,
    plan: engines.EnginePlan | None = None,
) -> RunResult:
    """Rebuild silver and gold from every complete bronze run on disk; no network.

    Silver upserts are keyed by (coin, snapshot), so replaying twice gives the same tables.
    ``plan``: where the batch transforms run (``pipeline.engines``; default: PIPELINE_REPLAY_WORKERS
    local workers, threads into PostgreSQL and processes into SQLite); the result is the same wherever
    they run.
    """
    with run_context(settings, trigger=trigger, origin="replay", engine=engine) as run:
        engine = run.engine
        result = run.track(RunResult(run_id=run.run_id, source="replay"))
        run.stage("bronze")
        # A damaged bronze run (bad manifest, changed or missing body) is skipped and reported,
        # never allowed to block the replay of the others.
        found, damaged = bronze.healthy_runs(settings.bronze, include_incomplete=True)
        for item in damaged:
            if not item.incomplete:
                result.warnings.append(f"skipped {item.line()}")
                progress("bronze", f"skipped {item.line()}")
        skipped = ("backfill", classes.BRONZE_SOURCE, sectors.BRONZE_SOURCE)
        runs = found.select(lambda r: r.source not in skipped and r.manifest["complete"])
        backfills = list(found.select(lambda r: r.source == "backfill"))
        if not runs:
            raise PipelineError(
                f"no complete bronze runs under {settings.bronze_location}: nothing to replay "
                f"(run `python -m pipeline run` first)"
            )
        runs = _distinct_snapshot_times(runs)
        result.bronze_runs = [r.run_id for r in runs]
        progress("bronze", f"replaying {len(runs)} bronze run(s)")
        run.stage("silver")
        if plan is not None:
            progress("silver", f"transforming on {plan.describe()}")
        # LAKE_URL: the lake table is rebuilt from the replayed silver rows
        with lake.writing(settings, result, rebuild=True, progress=progress), indexes_built_after(engine):
            _load_silver(
                engine,
                runs,
                result,
                progress,
                workers=settings.replay_workers,
                batch_records=settings.replay_batch_records,
                global_max_age_minutes=settings.global_max_age_minutes,
                stale_after=settings.stale_record_after,
                plan=plan,
            )
        _record_snapshots(engine, runs, requested=None)
        _reload_backfills(engine, backfills, progress)
        sector_snapshots, sector_notes = sectors.replay_from_bronze(engine, found)
        result.warnings += sector_notes
        if sector_snapshots:
            progress("silver", f"{sector_snapshots} sector snapshot(s) reloaded")
        result.bronze_records = result.silver_rows + result.quarantined + result.duplicates_dropped
        result.snapshot_at = runs[-1].snapshot_at
        return publish_gold(run, result, progress, since=None)
