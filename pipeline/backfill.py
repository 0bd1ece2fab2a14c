"""Backfill: daily history for the tracked coins from ``/coins/{id}/market_chart``.

``run_backfill`` fetches prices, market caps and volumes for each coin, keeps
every body exactly as received in one bronze run (``source="backfill"``), and
upserts the points into ``staging_coin_history`` one coin at a time, so an
interrupted backfill keeps what it finished.

Resuming. A coin is skipped when its history already covers the window asked
for, judged from ``staging_coin_history`` alone::

    min(ts) <= now - days + 1 day      (reaches back to the window's start)
    max(ts) >= now - 2 days            (and is recent)

``now`` is the wall clock unless given (tests pass the time of the recorded
bodies). A coin younger than the window never satisfies the first rule and is
fetched again on each backfill (one call; the upsert keeps the rows unique).

Pacing. The client paces its own retries and honours ``Retry-After``; each coin
gets a fresh client so the fetch deadline (COINGECKO_DEADLINE_SECONDS) applies
per coin, and the time between coins is paced here from the same
``COINGECKO_CALLS_PER_MINUTE``. A coin that fails (HTTP error, retries
exhausted, malformed body) is reported and the others go on; the run then ends
``failed`` listing them. A 429 asking to wait longer than the client accepts
(``RateLimited``) stops the backfill: the API is telling us to go away.

Bronze manifest. A backfill covers a span, not an instant: its ``snapshot_at``
is the oldest point it received, so replay (which orders runs by snapshot and
treats the newest as the current market) never mistakes it for the newest
snapshot. It is ``complete`` when the loop ran to the end and at least one body
was received.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, case, func, select

from pipeline import bronze, logs, rollups
from pipeline.config import DEFAULT_TOP_N, Settings
from pipeline.db import utcnow
from pipeline.errors import ConfigError, PipelineError, RateLimited, SourceError
from pipeline.providers.coingecko import client_from_settings, fetch_market_chart
from pipeline.providers.coingecko.client import ApiResponse
from pipeline.run_context import failure_message, run_context
from pipeline.schema import crypto_analytics_mart, staging_coin_history
from pipeline.silver.load import load_coin_history
from pipeline.silver.market_chart import market_chart_rows

log = logs.get_logger(__name__)

#: The free (demo/public) plan serves at most this many days of market_chart history.
FREE_PLAN_MAX_DAYS = 365
#: A coin's history must reach this close to "now" to count as covered.
RECENT_TOLERANCE = timedelta(days=2)
#: ... and this close to the window's start (daily points are stamped 00:00 UTC).
START_TOLERANCE = timedelta(days=1)

#: CoinGecko coin ids: lowercase words joined by hyphens (a few use dots or underscores).
COIN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

#: progress(done, total, coin_id, message)
Progress = Callable[[int, int, str, str], None]


class BackfillIncomplete(SourceError):
    """Some coins could not be fetched; the others were loaded. Running the backfill again retries them."""

    def __init__(self, message: str, result: BackfillResult):
        super().__init__(message)
        self.result = result


# -- time ---------------------------------------------------------------------------


def _naive_utc(value: datetime) -> datetime:
    """Every timestamp column is naive UTC: convert an aware datetime to that."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def is_covered(span: tuple[datetime, datetime] | None, *, now: datetime, days: int) -> bool:
    """Whether history spanning (min ts, max ts) covers the last ``days`` days before ``now``."""
    if span is None or span[0] is None or span[1] is None:
        return False
    first, last = span
    return first <= now - timedelta(days=days) + START_TOLERANCE and last >= now - RECENT_TOLERANCE


# -- which coins ----------------------------------------------------------------------


def parse_ids(text: str) -> list[str]:
    """``a,b, c`` -> ['a', 'b', 'c'] (duplicates dropped, order kept); ConfigError when malformed."""
    ids: list[str] = []
    for part in text.split(","):
        coin_id = part.strip()
        if not coin_id:
            continue
        if not COIN_ID_PATTERN.match(coin_id):
            raise ConfigError(f"--ids: {coin_id!r} is not a CoinGecko coin id (like bitcoin or usd-coin)")
        if coin_id not in ids:
            ids.append(coin_id)
    if not ids:
        raise ConfigError("--ids needs at least one coin id, e.g. --ids bitcoin,ethereum")
    return ids


def tracked_coins(engine: Engine, limit: int) -> list[str]:
    """The ids in the current gold mart, by market cap rank (unranked last), at most ``limit``."""
    m = crypto_analytics_mart
    query = (
        select(m.c.id)
        .order_by(case((m.c.market_cap_rank.is_(None), 1), else_=0), m.c.market_cap_rank, m.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def history_spans(engine: Engine, coin_ids: list[str]) -> dict[str, tuple[datetime, datetime]]:
    """coin id -> (oldest ts, newest ts) already in staging_coin_history."""
    h = staging_coin_history
    spans: dict[str, tuple[datetime, datetime]] = {}
    with engine.connect() as conn:
        for start in range(0, len(coin_ids), 500):
            chunk = coin_ids[start : start + 500]
            query = select(h.c.id, func.min(h.c.ts), func.max(h.c.ts)).where(h.c.id.in_(chunk)).group_by(h.c.id)
            for coin_id, first, last in conn.execute(query):
                spans[coin_id] = (first, last)
    return spans


def max_days(settings: Settings) -> int | None:
    """The longest window the configured plan serves (None: no limit known, the pro plan)."""
    return None if settings.api_plan == "pro" and settings.api_key else FREE_PLAN_MAX_DAYS


def check_days(settings: Settings, days: int) -> None:
    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}")
    limit = max_days(settings)
    if limit is not None and days > limit:
        raise ConfigError(
            f"--days {days}: CoinGecko's free plan serves at most {limit} days of history "
            f"(COINGECKO_API_PLAN=pro with a pro key lifts this)"
        )


# -- the run ------------------------------------------------------------------------


@dataclass
class BackfillResult:
    run_id: str
    days: int
    coins: list[str]
    status: str = "running"
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_attempted: list[str] = field(default_factory=list)
    points: int = 0
    skipped_values: int = 0
    bodies: int = 0
    bronze_folder: str | None = None

    def summary(self) -> str:
        parts = [f"{len(self.fetched)} coin(s) fetched ({self.points} points)", f"{len(self.skipped)} already covered"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.not_attempted:
            parts.append(f"{len(self.not_attempted)} not attempted")
        if self.skipped_values:
            parts.append(f"{self.skipped_values} bad value(s) left out")
        return ", ".join(parts)

    def counts(self) -> dict[str, object]:
        """What the run log keeps: bodies received, history points loaded."""
        return {"bronze_records": self.bodies, "silver_rows": self.points}

    def failure_message(self) -> str | None:
        if not self.failed and not self.not_attempted:
            return None
        listed = "; ".join(f"{coin} ({reason})" for coin, reason in list(self.failed.items())[:20])
        more = f"; and {len(self.failed) - 20} more" if len(self.failed) > 20 else ""
        message = f"backfill incomplete: {len(self.failed)} of {len(self.coins)} coin(s) failed"
        if listed:
            message += f": {listed}{more}"
        if self.not_attempted:
            message += f"; {len(self.not_attempted)} not attempted"
        return message + ". Run the backfill again to fetch only what is missing."


def _quiet(done: int, total: int, coin_id: str, message: str) -> None:
    log.info("[%d/%d] %s: %s", done, total, coin_id, message)


class _Pacer:
    """Spaces the first request of each coin after the previous coin's last answer."""

    def __init__(
        self,
        calls_per_minute: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.interval = 60.0 / calls_per_minute if calls_per_minute > 0 else 0.0
        self._sleep = sleep
        self._clock = clock
        self.last: float | None = None

    def mark(self) -> None:
        self.last = self._clock()

    def wait(self) -> None:
        if self.last is not None and self.interval:
            remaining = self.last + self.interval - self._clock()
            if remaining > 0:
                self._sleep(remaining)


def run_backfill(
    settings: Settings,
    *,
    days: int = FREE_PLAN_MAX_DAYS,
    coin_ids: list[str] | None = None,
    top: int | None = None,
    trigger: str = "cli",
    now: datetime | None = None,
    progress: Progress = _quiet,
    engine: Engine | None = None,
) -> BackfillResult:
    """Fetch and load ``days`` of daily history for ``coin_ids`` (default: the top tracked coins).

    Holds the pipeline lock and logs one ``pipeline_runs`` row (source ``backfill``).
    Raises RunLocked before anything is written when another run holds the lock,
    and BackfillIncomplete after the other coins are done when some coins failed.
    """
    check_days(settings, days)
    with run_context(settings, trigger=trigger, origin="backfill", engine=engine) as run:
        engine, run_id = run.engine, run.run_id
        result = run.track(BackfillResult(run_id=run_id, days=days, coins=[]))
        writer: bronze.BronzeWriter | None = None
        oldest_point: datetime | None = None
        try:
            run.stage("fetch")
            if coin_ids is None:
                result.coins = tracked_coins(engine, top or settings.top_n or DEFAULT_TOP_N)
                if not result.coins:
                    raise PipelineError(
                        "no tracked coins yet: run `python -m pipeline run` first, "
                        "or name coins with --ids bitcoin,ethereum"
                    )
            else:
                result.coins = list(coin_ids)
            window_end = _naive_utc(now) if now is not None else utcnow()
            spans = history_spans(engine, result.coins)
            total = len(result.coins)
            pacer = _Pacer(settings.calls_per_minute)
            for number, coin_id in enumerate(result.coins, start=1):
                if is_covered(spans.get(coin_id), now=window_end, days=days):
                    result.skipped.append(coin_id)
                    progress(number, total, coin_id, "already covered, skipped")
                    continue
                if not COIN_ID_PATTERN.match(coin_id):
                    result.failed[coin_id] = "not a valid coin id"
                    progress(number, total, coin_id, "FAILED: not a valid coin id")
                    continue
                if writer is None:
                    writer = bronze.BronzeWriter(
                        settings.bronze,
                        run_id,
                        source="backfill",
                        started_at=utcnow(),
                        vs_currency=settings.vs_currency,
                    )
                    result.bronze_folder = writer.store.location(writer.folder)
                    run.stage("silver")

                def keep(response: ApiResponse, _add: Callable[[ApiResponse], None] = writer.add) -> None:
                    _add(response)
                    pacer.mark()

                pacer.wait()
                started = time.monotonic()
                client = client_from_settings(settings, on_response=keep)
                try:
                    response = fetch_market_chart(client, coin_id, vs_currency=settings.vs_currency, days=days)
                    chart = market_chart_rows(response.json(), coin_id=coin_id, run_id=run_id)
                except RateLimited as exc:
                    result.failed[coin_id] = str(exc)
                    result.not_attempted = result.coins[number:]
                    progress(number, total, coin_id, f"FAILED: {exc}; stopping, CoinGecko asks us to wait")
                    break
                except SourceError as exc:
                    result.failed[coin_id] = str(exc)
                    progress(number, total, coin_id, f"FAILED: {exc}")
                    continue
                with engine.begin() as conn:
                    loaded = load_coin_history(conn, chart.rows)
                    rollups.after_backfill(conn, [coin_id])
                result.bodies += 1
                result.fetched.append(coin_id)
                result.points += loaded
                result.skipped_values += chart.skipped_values
                if chart.rows:
                    first = chart.rows[0][1]
                    oldest_point = first if oldest_point is None else min(oldest_point, first)
                note = f", {chart.skipped_values} bad value(s) left out" if chart.skipped_values else ""
                progress(number, total, coin_id, f"{loaded} points ({time.monotonic() - started:.1f} s){note}")

            message = result.failure_message()
            if writer is not None:
                writer.finish(snapshot_at=oldest_point, complete=oldest_point is not None, error=message)
            if message:
                run.fail(message)
                raise BackfillIncomplete(message, result)
            run.succeed()
            return result
        except BackfillIncomplete:
            raise
        except BaseException as exc:  # the bronze run says it is incomplete; run_context records the failure
            if writer is not None and not writer.finished:
                writer.finish(snapshot_at=oldest_point, complete=False, error=failure_message(exc))
            raise
