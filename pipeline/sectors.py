"""The sector step of a run: CoinGecko's categories, fetch -> bronze -> silver when due.

Two cadences, both kept by pipeline.budget (the one owner of cadences, ledger ``api_fetches``):

- ``/coins/categories`` (every category's market cap, volume, 24h change; ONE call) at most every
  ``PIPELINE_SECTORS_EVERY_MINUTES`` (default 60; 0 turns sectors off) -> ``staging_sector_snapshot``;
- ``/coins/categories/list`` plus ``/coins/markets?category=<id>`` for each tracked sector
  (``PIPELINE_TRACKED_SECTORS``; 1 + N calls) at most every ``PIPELINE_SECTOR_MEMBERS_EVERY_MINUTES``
  (default 1440) -> ``ref_sector_members``. A tracked id missing from the list is not asked for.

With the defaults and five tracked sectors that is 24 + 6 = 30 calls a day. The members are
asked for only in a run that fetches the snapshot. A failed attempt is recorded too
(``budget.record_failure``) and tried again after the group's cadence or an hour, whichever is
shorter (``budget.RETRY_AFTER_MINUTES``): a failing /coins/categories is asked again on the next
hour's run, not on every 15-minute run; failing members within the hour, not a day later. The
optional groups also give way when the month's allowance is needed by the snapshots. Every body is kept in bronze in a run folder of
its own (``<run id>-sectors``, manifest source ``sectors``) and :func:`replay_from_bronze`
rebuilds both tables from it. A failure (network, rate limit, a body of the wrong shape, the
database) never fails or holds the pipeline run: the previous sector data stays, the run notes a
warning. The refresh button skips the step (a person is waiting; the scheduler does it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert

from pipeline import bronze, budget
from pipeline.config import Settings
from pipeline.db import utcnow
from pipeline.providers.coingecko import (
    client_from_settings,
    fetch_categories,
    fetch_categories_list,
    fetch_category_markets,
)
from pipeline.providers.coingecko.contract import check_categories
from pipeline.runs import new_run_id
from pipeline.schema import quarantine_sector_snapshot, ref_sector_members, staging_sector_snapshot
from pipeline.silver.sectors import SectorRows, member_rows, sector_rows, usable_id

log = logging.getLogger(__name__)

#: Manifest source and run-folder suffix of the sectors' bronze runs.
BRONZE_SOURCE = "sectors"
RUN_SUFFIX = "-sectors"
#: Bronze endpoint names (the member bodies are ``category_<id>``, as pipeline.classes' are).
CATEGORIES, CATEGORIES_LIST, MEMBERS_PREFIX = "categories", "categories_list", "category_"
#: Manifest extra: the sectors whose members this run fetched (all of them, or the key is absent).
MEMBERS_KEY = "member_sectors"


@dataclass
class SectorsResult:
    """What one sector step did: ``refreshed``, ``skipped`` (not due / off) or ``failed``."""

    status: str
    sectors: int = 0
    quarantined: int = 0
    members: dict[str, int] = field(default_factory=dict)
    bronze_run_id: str | None = None
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """Lines for the run log's notes (a failed step, or a part of it, never fails the run)."""
        failed = [f"sectors not refreshed ({self.reason}); the previous sector data is kept"]
        return (failed if self.status == "failed" else []) + self.notes


# ---- database ----------------------------------------------------------------------------


def store_snapshot(conn: Connection, rows: SectorRows, snapshot_at: datetime) -> int:
    """Replace the snapshot at ``snapshot_at`` (a replay writes the same rows again). Returns rows written."""
    conn.execute(delete(staging_sector_snapshot).where(staging_sector_snapshot.c.snapshot_at == snapshot_at))
    conn.execute(delete(quarantine_sector_snapshot).where(quarantine_sector_snapshot.c.snapshot_at == snapshot_at))
    if rows.rows:
        conn.execute(insert(staging_sector_snapshot), rows.rows)
    if rows.quarantine:
        conn.execute(insert(quarantine_sector_snapshot), rows.quarantine)
    return len(rows.rows)


def store_members(conn: Connection, sectors: Iterable[str], rows: list[dict[str, Any]]) -> int:
    """Replace the members of ``sectors`` (other sectors' rows stay)."""
    conn.execute(delete(ref_sector_members).where(ref_sector_members.c.category_id.in_(set(sectors))))
    if rows:
        conn.execute(insert(ref_sector_members), rows)
    return len(rows)


# ---- fetch -> bronze -> silver -------------------------------------------------------------


@dataclass
class _Fetched:
    run_id: str
    categories: Any
    members: dict[str, Any] | None
    notes: list[str]


def _known_sectors(body: Any) -> set[str]:
    return {r["category_id"] for r in body if isinstance(r, dict) and usable_id(r.get("category_id"))}


def _fetch(settings: Settings, now: datetime, *, members_due: bool, run_id: str | None) -> _Fetched:
    """The categories body (and, when due, the list and the tracked sectors' members) into one bronze
    run; raises when /coins/categories fails. A members failure is a note: the snapshot still counts."""
    run_id = (run_id or new_run_id(now)) + RUN_SUFFIX
    writer = bronze.BronzeWriter(settings.bronze, run_id, source=BRONZE_SOURCE, started_at=now, vs_currency="usd")
    client = client_from_settings(settings, on_response=writer.add)
    notes: list[str] = []
    members: dict[str, Any] | None = None
    try:
        categories = fetch_categories(client).json()
    except BaseException as exc:
        _finish_failed(writer, run_id, exc)
        raise
    if members_due:
        try:
            known = _known_sectors(fetch_categories_list(client).json())
            wanted = [s for s in settings.tracked_sectors if s in known]
            for missing in (s for s in settings.tracked_sectors if s not in known):
                notes.append(f"sector {missing!r} is not in CoinGecko's category list; its coins are not fetched")
            members = {s: fetch_category_markets(client, s, vs_currency="usd").json() for s in wanted}
        except Exception as exc:  # noqa: BLE001 - the snapshot is good; members wait for the next run
            members = None
            notes.append(f"sector members not refreshed ({_reason(exc)}); the previous members are kept")
    extra: dict[str, Any] = {"fetched_at": now.isoformat(timespec="microseconds")}
    if members is not None:
        extra[MEMBERS_KEY] = sorted(members)
    writer.finish(snapshot_at=now, complete=True, extra=extra)
    return _Fetched(run_id, categories, members, notes)


def _finish_failed(writer: bronze.BronzeWriter, run_id: str, exc: BaseException) -> None:
    try:
        writer.finish(snapshot_at=None, complete=False, error=str(exc) or type(exc).__name__)
    except Exception as manifest_error:  # noqa: BLE001 - the fetch error is the news
        log.warning("could not write the incomplete bronze manifest of %s: %s", run_id, manifest_error)


def _reason(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "orig", None) or exc).split())[:300] or type(exc).__name__


def refresh_if_due(
    settings: Settings,
    engine: Engine,
    *,
    interactive: bool = False,
    progress: Callable[[str, str], None] | None = None,
    now: datetime | None = None,
    force: bool = False,
    run_id: str | None = None,
) -> SectorsResult:
    """The sector step of a run; never raises an ``Exception``.

    Skipped when off (``PIPELINE_SECTORS_EVERY_MINUTES=0``), when not due (pipeline.budget: the
    cadence, a recent failed attempt, the month's allowance), and on the refresh button
    (``interactive``). ``force`` fetches the snapshot and the members whatever the cadence.
    ``run_id``: the pipeline run's id; its bronze run is ``<run_id>-sectors`` (gold then takes the
    share of the market from the /global of the same run).
    """
    now = now or utcnow()
    say = progress or (lambda stage, message: log.info("[%s] %s", stage, message))
    if interactive and not force:
        return SectorsResult("skipped", reason="not on the refresh button")
    if settings.sectors_every_minutes <= 0 and not force:
        return SectorsResult("skipped", reason="turned off (PIPELINE_SECTORS_EVERY_MINUTES=0)")
    parent_run_id, run_id = run_id, None
    attempted, members_due = False, False
    fetched: _Fetched | None = None
    try:
        # the cadences and the month's API budget decide (pipeline.budget, ledger api_fetches)
        if not force and (not_due := budget.why_not_due(engine, budget.CATEGORIES, now, settings)) is not None:
            return SectorsResult("skipped", reason=not_due)
        members_due = bool(settings.tracked_sectors) and (
            force
            or budget.due(
                engine,
                budget.CATEGORY_MEMBERS,
                now,
                settings,
                calls=budget.calls_per_fetch(budget.CATEGORY_MEMBERS, settings),
            )
        )
        attempted = True
        fetched = _fetch(settings, now, members_due=members_due, run_id=parent_run_id)
        run_id = fetched.run_id
        rows = sector_rows(fetched.categories, snapshot_at=now, run_id=run_id, source="api")
        members = member_rows(fetched.members, seen_at=now, run_id=run_id) if fetched.members is not None else None
        with engine.begin() as conn:
            store_snapshot(conn, rows, now)
            if members is not None and fetched.members is not None:
                store_members(conn, fetched.members, members)
        budget.record_fetch(engine, budget.CATEGORIES, now)
        if members is not None:
            budget.record_fetch(engine, budget.CATEGORY_MEMBERS, now)
        elif members_due:  # the members call failed (a note): retried after the back-off
            budget.record_failure(engine, budget.CATEGORY_MEMBERS, now)
        result = SectorsResult(
            "refreshed", len(rows.rows), len(rows.quarantine), bronze_run_id=run_id, notes=fetched.notes
        )
        if fetched.members is not None and members is not None:
            result.members = {s: sum(1 for m in members if m["category_id"] == s) for s in fetched.members}
        say(
            "sectors",
            f"{result.sectors} sectors from CoinGecko ({result.quarantined} quarantined)"
            + (", members of " + ", ".join(f"{k} {v}" for k, v in result.members.items()) if result.members else ""),
        )
        for note in fetched.notes:
            say("sectors", note)
        return result
    except Exception as exc:  # noqa: BLE001 - a sector failure never fails the run
        reason = _reason(exc)
        if attempted:  # calls were spent (or the store failed): not again on every run
            budget.record_failure(engine, budget.CATEGORIES, now)
            if fetched is not None and fetched.members is not None:
                budget.record_failure(engine, budget.CATEGORY_MEMBERS, now)
        log.warning("sectors not refreshed, the previous sector data is kept: %s", reason)
        say("sectors", f"sectors not refreshed ({reason}); the previous sector data is kept")
        return SectorsResult("failed", bronze_run_id=run_id, reason=reason)


# ---- replay ------------------------------------------------------------------------------


def replay_from_bronze(engine: Engine, runs: Iterable[bronze.BronzeRun]) -> tuple[int, list[str]]:
    """Rebuild ``staging_sector_snapshot`` and ``ref_sector_members`` from the sectors' bronze runs
    (complete ones, oldest first; members from the newest run that fetched each sector). A body that
    no longer passes the contract is skipped and named. Returns (snapshots loaded, notes)."""
    notes: list[str] = []
    loaded = 0
    latest_members: dict[str, tuple[datetime, str, Any]] = {}
    with engine.begin() as conn:
        for run in sorted((r for r in runs if r.source == BRONZE_SOURCE), key=lambda r: r.snapshot_at):
            if not run.manifest.get("complete"):
                continue
            entries = run.used_entries(CATEGORIES)
            if not entries:
                continue
            try:
                body = bronze.loads(run._read(entries[-1]))  # checks the body's sha256
                check_categories(body)
            except Exception as exc:  # noqa: BLE001 - one bad run never blocks the others
                notes.append(f"skipped the sectors of bronze run {run.run_id}: {_reason(exc)}")
                continue
            store_snapshot(
                conn, sector_rows(body, snapshot_at=run.snapshot_at, run_id=run.run_id, source="api"), run.snapshot_at
            )
            loaded += 1
            for sector in run.manifest.get(MEMBERS_KEY) or []:
                member_entries = run.used_entries(MEMBERS_PREFIX + sector)
                if member_entries:
                    latest_members[sector] = (run.snapshot_at, run.run_id, bronze.loads(run._read(member_entries[-1])))
        for sector, (seen_at, run_id, body) in latest_members.items():
            store_members(conn, [sector], member_rows({sector: body}, seen_at=seen_at, run_id=run_id))
    return loaded, notes
