"""What a coin is, from CoinGecko's own categories: fetch -> bronze -> ``ref_coin_classes``.

Stablecoins, wrapped, liquid-staking and bridged tokens are the coins CoinGecko files under its
categories ``stablecoins``, ``wrapped-tokens``, ``liquid-staking-tokens`` and ``bridged-tokens``
(``/coins/markets?category=<id>``, the first 250 by market cap), not a hand list. Gold reads the
table: stablecoins feed the stablecoin share, derivative tokens are left out of top-N totals.

Slow cadence: at most once per ``PIPELINE_CLASSES_REFRESH_HOURS`` (default 24; 0 turns it off), and a failed attempt
is not retried for :data:`RETRY_AFTER`. Every body is kept in bronze like the markets pages, in a run
folder of its own (``<run id>-classes``, manifest source ``classes``; replay leaves it out). A failure
(network, rate limit, a body of the wrong shape, an empty stablecoins category, the database) never
fails the pipeline run: the old classes stay, the run notes a warning. The seed
``sql/seeds/ref_stablecoins.csv`` (table ``ref_stablecoins``) stays the offline fallback: while
``ref_coin_classes`` holds no stablecoin, readers use the seed (:func:`stablecoin_ids`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select

from pipeline import bronze, budget
from pipeline.config import Settings
from pipeline.db import utcnow
from pipeline.errors import SourceError
from pipeline.providers.coingecko import client_from_settings, fetch_category_markets
from pipeline.runs import new_run_id
from pipeline.schema import ref_coin_classes, ref_stablecoins
from pipeline.storage import Store

log = logging.getLogger(__name__)

#: CoinGecko category id -> our coin_class (ids as in /coins/categories/list).
CATEGORY_CLASSES = {
    "stablecoins": "stablecoin",
    "wrapped-tokens": "wrapped",
    "liquid-staking-tokens": "liquid_staking",
    "bridged-tokens": "bridged",
}
COIN_CLASSES = tuple(CATEGORY_CLASSES.values())
ORIGIN_COINGECKO, ORIGIN_SEED = "coingecko", "seed"
#: Manifest source and run-folder suffix of the classes' bronze runs.
BRONZE_SOURCE = "classes"
RUN_SUFFIX = "-classes"
#: A failed attempt waits this long before the next one (however stale the classes are).
RETRY_AFTER = timedelta(hours=1)
#: Same rule as silver's: a usable CoinGecko id.
ID_MAX_LENGTH = 200


@dataclass
class ClassesResult:
    """What one refresh did: ``refreshed``, ``skipped`` (not due) or ``failed`` (old classes kept)."""

    status: str
    counts: dict[str, int] = field(default_factory=dict)
    bronze_run_id: str | None = None
    reason: str = ""

    @property
    def warnings(self) -> list[str]:
        return (
            [f"coin classes not refreshed ({self.reason}); the previous classes are kept"]
            if self.status == "failed"
            else []
        )


# ---- pure parts ------------------------------------------------------------------------


def _usable_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= ID_MAX_LENGTH and "\0" not in value and value.strip() == value


def classes_from_bodies(bodies: Mapping[str, list[Any]]) -> list[tuple[str, str]]:
    """(id, coin_class) pairs from the category bodies (category id -> /coins/markets records),
    sorted; records without a usable id are skipped; a coin may have several classes
    (``wrapped-steth`` is wrapped and liquid staking)."""
    pairs = set()
    for category, records in bodies.items():
        coin_class = CATEGORY_CLASSES[category]
        for record in records if isinstance(records, list) else []:
            if isinstance(record, dict) and _usable_id(record.get("id")):
                pairs.add((record["id"], coin_class))
    return sorted(pairs)


def is_due(last_refreshed: datetime | None, now: datetime, refresh_hours: float) -> bool:
    """Due when never refreshed from CoinGecko, or the last refresh is ``refresh_hours`` old."""
    return last_refreshed is None or now - last_refreshed >= timedelta(hours=refresh_hours)


def _attempt_time(store: Store, folder: PurePath) -> datetime | None:
    try:
        manifest = json.loads(store.read_bytes(folder / bronze.MANIFEST))
        return datetime.fromisoformat(manifest["started_at"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return datetime.strptime(folder.name[:16], "%Y%m%dT%H%M%SZ")
        except ValueError:
            return None


def last_attempt(raw_dir: bronze.Root, now: datetime) -> datetime | None:
    """When the newest classes bronze run (finished or not) started, looking at today's and
    yesterday's bronze folders only (a cheap listing, whatever the history's size)."""
    newest = None
    store = bronze.as_store(raw_dir)
    for day in (now, now - timedelta(days=1)):
        for run in store.folders(store.root / f"{day:%Y-%m-%d}"):
            if run.name.endswith(RUN_SUFFIX) and (when := _attempt_time(store, run)) is not None:
                newest = when if newest is None or when > newest else newest
    return newest


# ---- database ----------------------------------------------------------------------------


def last_refreshed(conn: Connection) -> datetime | None:
    """When the classes were last taken from CoinGecko (None: never)."""
    return conn.execute(
        select(func.max(ref_coin_classes.c.updated_at)).where(ref_coin_classes.c.origin == ORIGIN_COINGECKO)
    ).scalar()


def store(conn: Connection, pairs: list[tuple[str, str]], updated_at: datetime) -> int:
    """Replace the CoinGecko classes with ``pairs`` (rows of another origin stay)."""
    table = ref_coin_classes
    conn.execute(delete(table).where(table.c.origin == ORIGIN_COINGECKO))
    kept = {tuple(r) for r in conn.execute(select(table.c.id, table.c.coin_class))}
    rows = [
        {"id": i, "coin_class": c, "origin": ORIGIN_COINGECKO, "updated_at": updated_at}
        for i, c in pairs
        if (i, c) not in kept
    ]
    if rows:
        conn.execute(insert(table), rows)
    return len(rows)


def stablecoin_ids(conn: Connection) -> set[str]:
    """The stablecoins readers should use: CoinGecko's when ``ref_coin_classes`` has any, else the seed."""
    ids = {
        r[0] for r in conn.execute(select(ref_coin_classes.c.id).where(ref_coin_classes.c.coin_class == "stablecoin"))
    }
    return ids or {r[0] for r in conn.execute(select(ref_stablecoins.c.id))}


# ---- fetch -> bronze -> load ---------------------------------------------------------------


def _fetch(settings: Settings, now: datetime, *, interactive: bool) -> tuple[str, dict[str, list[Any]]]:
    """Every category's body, kept in a bronze run of its own; raises on any failure."""
    run_id = new_run_id(now) + RUN_SUFFIX
    writer = bronze.BronzeWriter(settings.bronze, run_id, source=BRONZE_SOURCE, started_at=now, vs_currency="usd")
    client = client_from_settings(settings, on_response=writer.add, interactive=interactive)
    bodies: dict[str, list[Any]] = {}
    try:
        for category in CATEGORY_CLASSES:
            bodies[category] = fetch_category_markets(client, category, vs_currency="usd").json()
    except BaseException as exc:
        try:
            writer.finish(snapshot_at=None, complete=False, error=str(exc) or type(exc).__name__)
        except Exception as manifest_error:  # noqa: BLE001 - the fetch error is the news
            log.warning("could not write the incomplete bronze manifest of %s: %s", run_id, manifest_error)
        raise
    writer.finish(snapshot_at=now, complete=True)
    return run_id, bodies


def refresh_if_due(
    settings: Settings,
    engine: Engine,
    *,
    interactive: bool = False,
    progress: Callable[[str, str], None] | None = None,
    now: datetime | None = None,
    force: bool = False,
) -> ClassesResult:
    """Refresh ``ref_coin_classes`` from CoinGecko when due; never raises an ``Exception``.

    Skipped when turned off (``PIPELINE_CLASSES_REFRESH_HOURS=0``), when not due (at most once per
    ``PIPELINE_CLASSES_REFRESH_HOURS``), when an attempt started less than
    :data:`RETRY_AFTER` ago, and for the refresh button (``interactive``: a person is waiting, the
    scheduler does it). ``force`` skips the cadence checks. Any failure keeps the old classes and
    comes back as ``failed`` with the reason (``ClassesResult.warnings`` for the run log).
    """
    now = now or utcnow()
    say = progress or (lambda stage, message: log.info("[%s] %s", stage, message))
    if interactive and not force:
        return ClassesResult("skipped", reason="not on the refresh button")
    if settings.classes_refresh_hours <= 0 and not force:
        return ClassesResult("skipped", reason="turned off (PIPELINE_CLASSES_REFRESH_HOURS=0)")
    run_id = None
    try:
        if not force:
            with engine.connect() as conn:
                last = last_refreshed(conn)
            # the cadence (CLASSES, daily) and the month's API budget decide (pipeline.budget)
            if (not_due := budget.why_not_due(engine, budget.CLASSES, now, settings)) is not None:
                return ClassesResult("skipped", reason=not_due)
            attempt = last_attempt(settings.bronze, now)
            if attempt is not None and (last is None or attempt > last) and now - attempt < RETRY_AFTER:
                return ClassesResult(
                    "skipped",
                    reason=f"last attempt {attempt:%H:%M} UTC, retried after {RETRY_AFTER.total_seconds() / 3600:g} h",
                )
        run_id, bodies = _fetch(settings, now, interactive=interactive)
        pairs = classes_from_bodies(bodies)
        counts = {c: sum(1 for _, k in pairs if k == c) for c in COIN_CLASSES}
        if not counts["stablecoin"]:
            raise SourceError("the stablecoins category came back empty")
        with engine.begin() as conn:
            store(conn, pairs, now)
        budget.record_fetch(engine, budget.CLASSES, now)
        say("classes", "coin classes from CoinGecko: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return ClassesResult("refreshed", counts, run_id)
    except Exception as exc:  # noqa: BLE001 - a classes failure never fails the run
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300] or type(exc).__name__
        log.warning("coin classes not refreshed, the previous ones are kept: %s", reason)
        say("classes", f"coin classes not refreshed ({reason}); the previous ones are kept")
        return ClassesResult("failed", bronze_run_id=run_id, reason=reason)
