"""The CoinGecko API budget: every call counted, each endpoint group on its own cadence, the month planned.

CoinGecko's free (demo) plan allows about 30 calls a minute (the client paces itself to
COINGECKO_CALLS_PER_MINUTE, 25) and a monthly allowance (COINGECKO_MONTHLY_CALLS, 10,000).

Counting. The HTTP client reports every request it sends, retries and failures included
(:func:`note_call`), to the meter the current run installed (:func:`metering`, which
:func:`pipeline.run_context.run_context` wraps around every writing run). The meter buffers in
memory and is flushed once, when the run ends, into ``api_calls`` (per endpoint and UTC day:
calls, failures, the last call's time; a month is the sum of its days). The flush is its own
transaction after the run's end is recorded, not part of it: a counting error (a database
that no longer takes writes, a table not there yet) is logged as a warning and can never turn a
finished run into a failed one or lose its end record; failed runs are counted too. A client
used outside any run (a test, a script) counts nothing.

Cadences. :data:`CADENCES` is the one list of endpoint groups and how often each is fetched
(markets and /global every run, categories hourly, category members and coin classes daily).
A group's owner asks :func:`due` before fetching and calls :func:`record_fetch` after a
successful fetch, :func:`record_failure` after a failed one (ledger ``api_fetches``: a failing
endpoint is tried again after its cadence or an hour, whichever is shorter, not on every run;
:data:`RETRY_AFTER_MINUTES`). Optional groups are also skipped when what is left
of the month's allowance is needed by the month's remaining scheduled runs (markets + /global).

The plan (:func:`plan`) is the README's arithmetic: calls per day and per 30-day month of each
group at the configured interval and top N, against the allowance.
"""

from __future__ import annotations

import calendar
import logging
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, Engine, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from pipeline.config import Settings
from pipeline.schema import api_calls, api_fetches

log = logging.getLogger(__name__)

# ---- endpoint groups and their cadences ----------------------------------------------------

MARKETS = "markets"
GLOBAL = "global"
CATEGORIES = "categories"
CATEGORY_MEMBERS = "category_members"
CLASSES = "classes"

#: Endpoint group -> minutes between fetches, from the settings. The one owner of cadences:
#: markets and /global every run (PIPELINE_INTERVAL_MINUTES), categories hourly
#: (PIPELINE_SECTORS_EVERY_MINUTES), the tracked sectors' members daily
#: (PIPELINE_SECTOR_MEMBERS_EVERY_MINUTES), coin classes daily (PIPELINE_CLASSES_REFRESH_HOURS).
#: 0 minutes: the group is never fetched.
CADENCES: Mapping[str, Callable[[Settings], float]] = MappingProxyType(
    {
        MARKETS: lambda s: float(s.interval_minutes),
        GLOBAL: lambda s: float(s.interval_minutes),
        CATEGORIES: lambda s: float(s.sectors_every_minutes),
        CATEGORY_MEMBERS: lambda s: float(s.sector_members_every_minutes),
        CLASSES: lambda s: float(s.classes_refresh_hours) * 60.0,
    }
)


def _markets_pages(settings: Settings) -> int:
    # imported here: the CoinGecko package imports this module (its client counts every call)
    from pipeline.providers.coingecko.settings import markets_pages

    return markets_pages(settings.top_n)


#: Endpoint group -> calls one fetch of it makes (no retries): markets one page per 250 coins (the
#: whole market, PIPELINE_TOP_N=all: ~68 pages, estimated from ~17,000 listed coins).
CALLS_PER_FETCH: Mapping[str, Callable[[Settings], int]] = MappingProxyType(
    {
        MARKETS: _markets_pages,
        GLOBAL: lambda s: 1,
        CATEGORIES: lambda s: 1,
        CATEGORY_MEMBERS: lambda s: 1 + len(s.tracked_sectors),  # /coins/categories/list, then each sector
        CLASSES: lambda s: 4,  # pipeline.classes.CATEGORY_CLASSES
    }
)

#: Fetched on every run: the snapshot itself. The other groups are optional extras whose last
#: answer stays in use, skipped when the month's allowance is needed for the snapshots.
MANDATORY = frozenset({MARKETS, GLOBAL})

#: The month's use past this share of the allowance is warned about (log, run notes, Pipeline page).
WARN_SHARE = 0.8


def cadence_minutes(group: str, settings: Settings) -> float:
    return CADENCES[group](settings)


def calls_per_fetch(group: str, settings: Settings) -> int:
    return CALLS_PER_FETCH[group](settings)


# ---- endpoint names ----------------------------------------------------------------------------

_STATIC_COIN_PATHS = frozenset({"markets", "categories", "list"})
_COIN_PATH = re.compile(r"^/coins/([^/]+)(/.*)?$")


def endpoint_key(path: str, params: Mapping[str, Any] | None = None) -> str:
    """The endpoint a request counts against, as CoinGecko names it: the path with a coin id as
    ``{id}`` (``/coins/{id}/market_chart``), and ``/coins/markets?category`` for category members."""
    path = "/" + path.split("?", 1)[0].strip("/")
    match = _COIN_PATH.match(path)
    if match and match.group(1) not in _STATIC_COIN_PATHS:
        path = "/coins/{id}" + (match.group(2) or "")
    if path == "/coins/markets" and params and params.get("category"):
        return "/coins/markets?category"
    return path


# ---- the meter ------------------------------------------------------------------------------------


@dataclass
class Tally:
    calls: int = 0
    failures: int = 0
    last_at: datetime | None = None

    def add(self, ok: bool, at: datetime) -> None:
        self.calls += 1
        self.failures += 0 if ok else 1
        self.last_at = at if self.last_at is None or at > self.last_at else self.last_at


@dataclass
class Meter:
    """One run's calls, buffered in memory: (endpoint, UTC day) -> tally. Thread-safe."""

    tallies: dict[tuple[str, date], Tally] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, endpoint: str, ok: bool, at: datetime) -> None:
        with self._lock:
            self.tallies.setdefault((endpoint, at.date()), Tally()).add(ok, at)

    def drain(self) -> dict[tuple[str, date], Tally]:
        with self._lock:
            tallies, self.tallies = self.tallies, {}
        return tallies

    def calls_since(self, start: date) -> int:
        with self._lock:
            return sum(t.calls for (_, day), t in self.tallies.items() if day >= start)


_meter: ContextVar[Meter | None] = ContextVar("api_call_meter", default=None)


def _now() -> datetime:
    """Naive UTC, as every timestamp column (pipeline.db.utcnow; not imported: the client imports this)."""
    return datetime.now(UTC).replace(tzinfo=None)


def note_call(path: str, params: Mapping[str, Any] | None, ok: bool, at: datetime | None = None) -> None:
    """The HTTP client's hook: one request was sent (``ok``: it got an HTTP 200). Never raises."""
    meter = _meter.get()
    if meter is None:
        return
    try:
        meter.note(endpoint_key(path, params), ok, at or _now())
    except Exception:  # noqa: BLE001 - counting never fails a request
        log.warning("could not count a call to %s", path, exc_info=True)


def pending_calls(since: date) -> int:
    """Calls this run made since ``since`` that are not flushed yet."""
    meter = _meter.get()
    return meter.calls_since(since) if meter is not None else 0


@contextmanager
def metering(engine: Engine, allowance: int | None = None) -> Iterator[Meter]:
    """Count the calls made inside the block (this thread and contexts copied from it) and flush
    them to ``api_calls`` at its end, however it ends. Never raises for the counting.

    ``allowance``: the monthly allowance, for the warning when the flush crosses it (or WARN_SHARE of it).
    """
    meter = Meter()
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)
        flush(engine, meter, allowance)


def flush(engine: Engine, meter: Meter, allowance: int | None = None) -> None:
    """Add the meter's tallies to ``api_calls`` (one transaction; a lost race to insert is retried
    once). A database error is a warning naming the calls that were not recorded."""
    tallies = meter.drain()
    if not tallies:
        return
    for attempt in (1, 2):
        try:
            with engine.begin() as conn:
                before = month_calls(conn, _now())
                for (endpoint, day), tally in sorted(tallies.items()):
                    _add(conn, endpoint, day, tally)
                after = month_calls(conn, _now())
            break
        except IntegrityError:
            if attempt == 2:
                _lost(tallies, "another process recorded the same endpoint and day at the same time")
                return
        except Exception as exc:  # noqa: BLE001 - counting never fails a run
            _lost(tallies, (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0])
            return
    if allowance:
        _warn_on_crossing(before, after, allowance)


def _lost(tallies: Mapping[tuple[str, date], Tally], reason: str) -> None:
    calls = sum(t.calls for t in tallies.values())
    log.warning("could not record %d API call(s) in api_calls (the run goes on): %s", calls, reason)


def _add(conn: Connection, endpoint: str, day: date, tally: Tally) -> None:
    t = api_calls
    last_at = tally.last_at or _now()
    changed = conn.execute(
        update(t)
        .where(t.c.endpoint == endpoint, t.c.day == day)
        .values(
            calls=t.c.calls + tally.calls,
            failures=t.c.failures + tally.failures,
            last_at=case((t.c.last_at < last_at, last_at), else_=t.c.last_at),
        )
    )
    if changed.rowcount == 0:
        conn.execute(
            insert(t).values(endpoint=endpoint, day=day, calls=tally.calls, failures=tally.failures, last_at=last_at)
        )


def _warn_on_crossing(before: int, after: int, allowance: int) -> None:
    """A log warning when this flush took the month past WARN_SHARE or past the allowance."""
    for share, what in ((1.0, "the whole"), (WARN_SHARE, f"{WARN_SHARE:.0%} of the")):
        if before < allowance * share <= after:
            log.warning(
                "API budget: %s calls used this month, past %s monthly allowance (COINGECKO_MONTHLY_CALLS=%s)",
                f"{after:,}",
                what,
                f"{allowance:,}",
            )
            return


# ---- reading the counts ------------------------------------------------------------------------


def month_start(now: datetime) -> date:
    return now.date().replace(day=1)


def month_calls(conn: Connection, now: datetime) -> int:
    """Calls recorded this UTC month (the sum of its days)."""
    day = api_calls.c.day
    total = conn.execute(
        select(func.coalesce(func.sum(api_calls.c.calls), 0)).where(
            day >= month_start(now), day < month_end(now).date()
        )
    )
    return int(total.scalar() or 0)


def month_used(engine: Engine, now: datetime) -> int:
    """Calls this month: recorded, plus the current run's not yet flushed."""
    with engine.connect() as conn:
        recorded = month_calls(conn, now)
    return recorded + pending_calls(month_start(now))


def month_end(now: datetime) -> datetime:
    days = calendar.monthrange(now.year, now.month)[1]
    return datetime(now.year, now.month, 1) + timedelta(days=days)


def mandatory_calls_left(settings: Settings, now: datetime) -> int:
    """What the month's remaining scheduled runs need: markets pages and /global per run."""
    minutes_left = (month_end(now) - now).total_seconds() / 60
    runs = math.ceil(minutes_left / settings.interval_minutes)
    return runs * sum(calls_per_fetch(g, settings) for g in sorted(MANDATORY))


@dataclass(frozen=True)
class Usage:
    """A month's use of the allowance so far, and where the current rate takes it."""

    used: int
    allowance: int
    projected: int

    @property
    def share(self) -> float:
        return self.used / self.allowance if self.allowance else 0.0

    @property
    def warn(self) -> bool:
        return self.share >= WARN_SHARE

    @property
    def over_projected(self) -> bool:
        return self.projected > self.allowance


def project_month_end(used: int, now: datetime, counting_since: datetime) -> int:
    """Month-end use at the rate since counting began this month (at least an hour of it)."""
    end = month_end(now)
    start = max(counting_since, datetime(now.year, now.month, 1))
    elapsed = max((now - start).total_seconds(), 3600.0)
    return used + math.ceil(used / elapsed * max((end - now).total_seconds(), 0.0))


def usage(used: int, allowance: int, now: datetime, counting_since: datetime | None) -> Usage:
    projected = used if counting_since is None else project_month_end(used, now, counting_since)
    return Usage(used=used, allowance=allowance, projected=projected)


def warning_line(settings: Settings, engine: Engine, now: datetime | None = None) -> str | None:
    """One line for the run's notes and the log when the month's use is past WARN_SHARE, else None."""
    now = now or _now()
    try:
        used = month_used(engine, now)
    except Exception as exc:  # noqa: BLE001 - a warning about the budget never fails a run
        log.warning("could not read this month's API calls: %s", type(exc).__name__)
        return None
    if used < settings.monthly_calls * WARN_SHARE:
        return None
    line = (
        f"API budget: {used:,} of {settings.monthly_calls:,} calls used this month "
        f"({used / settings.monthly_calls:.0%} of COINGECKO_MONTHLY_CALLS)"
    )
    log.warning("%s", line)
    return line


# ---- cadence -------------------------------------------------------------------------------------


#: A failed fetch of an optional group is tried again after its cadence or this long, whichever
#: is shorter: hourly categories on the next hour's run, daily members within the hour (not on
#: every 15-minute run, and not a whole day without the data).
RETRY_AFTER_MINUTES = 60.0

#: Suffix of a group's failed-attempt row in ``api_fetches`` (``categories:failed``): the same
#: ledger keeps the last success (``<group>``) and the last failed attempt of each group.
FAILED_SUFFIX = ":failed"


def last_fetch(engine: Engine, group: str) -> datetime | None:
    """When ``group`` was last fetched successfully (None: never)."""
    return _ledger(engine, group)


def last_failure(engine: Engine, group: str) -> datetime | None:
    """When a fetch of ``group`` last failed (None: never, as far as the ledger knows)."""
    return _ledger(engine, group + FAILED_SUFFIX)


def _ledger(engine: Engine, key: str) -> datetime | None:
    with engine.connect() as conn:
        value: datetime | None = conn.execute(
            select(api_fetches.c.last_at).where(api_fetches.c.group_name == key)
        ).scalar()
    return value


def _within(last: datetime, now: datetime, minutes: float, settings: Settings) -> bool:
    """Is ``last`` less than ``minutes`` ago, less half a run interval (so that a fetch made a few
    seconds into a run is due again on the run ``minutes`` later, not one interval after that)?"""
    slack = min(settings.interval_minutes / 2, minutes / 2)
    return now - last < timedelta(minutes=minutes - slack)


def why_not_due(
    engine: Engine, group: str, now: datetime, settings: Settings, *, calls: int | None = None
) -> str | None:
    """None when ``group`` should be fetched now, else why not (one line).

    Due when never fetched, or the last successful fetch is its cadence old, less half a run
    interval (see :func:`_within`). A failed attempt newer than the last success holds the group
    back for its cadence or :data:`RETRY_AFTER_MINUTES`, whichever is shorter (a failing endpoint
    is not asked again on every run). An optional group is not due while the month's allowance is
    needed by the snapshots of the month's remaining runs (``calls``: what this fetch costs,
    default :data:`CALLS_PER_FETCH`). Database errors are raised (the owner decides).
    """
    minutes = cadence_minutes(group, settings)
    if minutes <= 0:
        return "turned off (cadence 0)"
    last = last_fetch(engine, group)
    if last is not None and _within(last, now, minutes, settings):
        return f"fetched {last:%Y-%m-%d %H:%M} UTC, due every {minutes:g} min"
    if group in MANDATORY:
        return None
    failed = last_failure(engine, group)
    retry = min(minutes, RETRY_AFTER_MINUTES)
    if failed is not None and (last is None or failed > last) and _within(failed, now, retry, settings):
        return f"last attempt failed {failed:%Y-%m-%d %H:%M} UTC, tried again after {retry:g} min"
    cost = calls_per_fetch(group, settings) if calls is None else calls
    used = month_used(engine, now)
    reserve = mandatory_calls_left(settings, now)
    if used + reserve + cost > settings.monthly_calls:
        reason = (
            f"skipped to save the API budget: {used:,} calls used this month, the remaining scheduled runs "
            f"need {reserve:,} of the {settings.monthly_calls:,} (COINGECKO_MONTHLY_CALLS)"
        )
        log.warning("%s: %s", group, reason)
        return reason
    return None


def due(engine: Engine, group: str, now: datetime, settings: Settings, *, calls: int | None = None) -> bool:
    """Should ``group`` be fetched now? (See :func:`why_not_due`.)"""
    return why_not_due(engine, group, now, settings, calls=calls) is None


def record_fetch(engine: Engine, group: str, at: datetime) -> None:
    """``group`` was fetched successfully at ``at``. A database error is a warning: the group is
    then due again on the next run (a few extra calls, never a failed run)."""
    _record(engine, group, at)


def record_failure(engine: Engine, group: str, at: datetime) -> None:
    """A fetch of ``group`` started at ``at`` failed: :func:`why_not_due` holds it back for the
    retry delay. A database error is a warning (the group is then tried again on the next run)."""
    _record(engine, group + FAILED_SUFFIX, at)


def _record(engine: Engine, key: str, at: datetime) -> None:
    t = api_fetches
    try:
        with engine.begin() as conn:
            if conn.execute(update(t).where(t.c.group_name == key).values(last_at=at)).rowcount == 0:
                conn.execute(insert(t).values(group_name=key, last_at=at))
    except SQLAlchemyError as exc:
        log.warning(
            "could not record the fetch of %s: %s",
            key,
            str(getattr(exc, "orig", None) or exc).strip().splitlines()[0],
        )


# ---- the plan --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupPlan:
    group: str
    every_minutes: float
    calls_per_fetch: int
    per_day: float

    @property
    def per_month(self) -> float:
        return self.per_day * 30


@dataclass(frozen=True)
class Plan:
    groups: list[GroupPlan]
    allowance: int

    @property
    def per_day(self) -> float:
        return sum(g.per_day for g in self.groups)

    @property
    def per_month(self) -> float:
        return self.per_day * 30

    @property
    def fits(self) -> bool:
        return self.per_month <= self.allowance

    def line(self) -> str:
        parts = ", ".join(f"{g.group} {g.per_month:,.0f}" for g in self.groups if g.per_day)
        verdict = "within" if self.fits else "OVER"
        return (
            f"API budget plan: {self.per_day:,.0f} calls a day, {self.per_month:,.0f} a 30-day month ({parts}), "
            f"{verdict} COINGECKO_MONTHLY_CALLS={self.allowance:,}"
        )


def plan(settings: Settings) -> Plan:
    """Calls per day and per 30-day month of every group at its cadence (no retries, no button
    refreshes, no backfills: the headroom below the allowance is for those)."""
    groups = []
    for group in CADENCES:
        minutes = cadence_minutes(group, settings)
        # a cadence shorter than the run interval still fetches once per run at most
        fetches = 0.0 if minutes <= 0 else 1440 / max(minutes, settings.interval_minutes)
        calls = calls_per_fetch(group, settings)
        groups.append(GroupPlan(group, minutes, calls, fetches * calls))
    return Plan(groups, settings.monthly_calls)
