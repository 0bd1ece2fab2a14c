"""Every query the dashboard runs, one cached loader per table or question.

This is the only dashboard module that talks SQL. Loaders use SQLAlchemy Core
on the table definitions ``pipeline.api`` names (bound parameters only, the
same statements on SQLite and PostgreSQL) through the pipeline's shared engine
for ``DATABASE_URL``. They take the database URL and a ``version`` token as
parameters: the token changes whenever a pipeline run starts or ends (from any
process), so a cached result is never older than the newest published data,
and the ``ttl`` bounds the cache for everything else.

Any database failure becomes :class:`DataUnavailable`, whose message names the
problem in one line; pages show it instead of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
import streamlit as st
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Double,
    Engine,
    Integer,
    String,
    and_,
    false,
    func,
    inspect,
    literal,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.compiler import compiles

from dashboard import ranges
from pipeline import api
from pipeline.api import (
    DRIVER_ERRORS,
    LOCK_NAME,
    DatabaseUnavailable,
    coin_history_daily,
    coin_history_hourly,
    coins_seen,
    crypto_analytics_mart,
    make_engine,
    market_history,
    market_history_daily,
    market_history_hourly,
    market_segment_analysis,
    mask_url,
    pipeline_lock,
    pipeline_runs,
    quarantine_crypto_market,
    ref_sector_members,
    sector_history,
    sector_ranking,
    snapshots,
    staging_coin_history,
    staging_crypto_market,
    staging_global_market,
    staging_sparkline,
)

#: Tables the pages read. The gold ones must exist for the dashboard to work.
REQUIRED_TABLES = ("crypto_analytics_mart", "market_segment_analysis", "market_history", "pipeline_runs")

PROBE_TTL = 5  # seconds: how quickly a run by the scheduler shows up
DATA_TTL = 600  # seconds: gold only changes with a run, which changes the version token
RUNS_TTL = 10  # seconds: the run log changes stage while a run is going
HISTORY_LIMIT = 5000  # market_history points on the dominance chart (52 days at a 15-minute schedule)
RUNS_LIMIT = 50
QUARANTINE_LIMIT = 500
HELD_LIMIT = 100  # held snapshots listed on the Pipeline page

#: Column types read as numbers: every such column becomes float64 (NaN for NULL), whatever the driver
#: returned (None, int, Decimal), so each table's schema is the one list of its numeric columns.
NUMERIC_TYPES = (Double, Integer)


class DataUnavailable(Exception):
    """The database could not be read; the message says why and what to do, in one line."""


@dataclass(frozen=True)
class DataStatus:
    """What the database holds right now, as far as the dashboard is concerned."""

    state: str  # ok | empty | no_tables | missing_tables | unreachable
    message: str = ""
    version: str = ""
    missing: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def engine_for(database_url: str) -> Engine:
    """The pipeline's cached engine for this URL (one connection pool per process)."""
    try:
        return make_engine(database_url)
    except OSError as exc:  # SQLite: the folder for the file cannot be created
        raise DataUnavailable(f"cannot open database {mask_url(database_url)}: {exc}") from exc


def _unavailable(database_url: str, exc: Exception) -> DataUnavailable:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason_text = reason[0] if reason else type(exc).__name__
    return DataUnavailable(f"cannot read database {mask_url(database_url)}: {reason_text}")


def _frame(database_url: str, statement, numbers: bool = True) -> pd.DataFrame:
    """Run one Core statement and return its rows as a DataFrame, typed by the table schema:
    timestamps as datetime64, and (with ``numbers``) every ``NUMERIC_TYPES`` column as float64.

    Rows come straight from the driver cursor and timestamps are parsed column-wise by
    pandas: SQLAlchemy's per-row result processing cost ~10x the query itself on
    year-long coin histories (8,800 rows).
    """
    try:
        with engine_for(database_url).connect() as conn:
            compiled = statement.compile(dialect=conn.dialect)
            params = compiled.construct_params()
            bound = tuple(params[name] for name in compiled.positiontup) if compiled.positional else params
            cursor = conn.connection.driver_connection.cursor()
            try:
                cursor.execute(str(compiled), bound)
                columns = [d[0] for d in cursor.description]
                frame = pd.DataFrame(cursor.fetchall(), columns=columns)
            finally:
                cursor.close()
    except (SQLAlchemyError, *DRIVER_ERRORS) as exc:
        raise _unavailable(database_url, exc) from exc
    for column in statement.selected_columns:
        if column.key not in frame.columns:
            continue
        if isinstance(column.type, DateTime):
            frame[column.key] = pd.to_datetime(frame[column.key], format="ISO8601").astype("datetime64[us]")
        elif numbers and isinstance(column.type, NUMERIC_TYPES):
            frame[column.key] = pd.to_numeric(frame[column.key], errors="coerce").astype("float64")
    return frame


# -- statements ----------------------------------------------------------------
# One builder per query, shared by the loaders below and by DASHBOARD_QUERIES
# (what ``python -m benchmarks.bench`` times against a big history).


def _latest_run_statement():
    r = pipeline_runs
    return select(r.c.run_id, r.c.status).order_by(r.c.started_at.desc()).limit(1)


def _has_rows_statement():
    return select(crypto_analytics_mart.c.id).limit(1)


def _mart_statement():
    m = crypto_analytics_mart
    return select(m).order_by(m.c.market_cap_rank.is_(None), m.c.market_cap_rank, m.c.market_cap.desc())


def _segments_statement():
    return select(market_segment_analysis)


def _history_statement(limit: int):
    newest = select(market_history).order_by(market_history.c.snapshot_at.desc()).limit(limit).subquery()
    return select(newest).order_by(newest.c.snapshot_at)


def _global_latest_statement():
    g = staging_global_market
    return (
        select(
            g.c.snapshot_at,
            g.c.total_market_cap,
            g.c.total_volume,
            g.c.market_cap_change_percentage_24h,
            g.c.btc_dominance_pct,
            g.c.eth_dominance_pct,
        )
        .order_by(g.c.snapshot_at.desc())
        .limit(1)
    )


def _runs_statement(limit: int):
    r = pipeline_runs
    return select(r).order_by(r.c.started_at.desc()).limit(limit)


def _quarantine_statement(limit: int):
    q = quarantine_crypto_market
    return select(q).order_by(q.c.snapshot_at.desc(), q.c.record_index).limit(limit)


def _quarantine_count_statement():
    return select(func.count().label("n")).select_from(quarantine_crypto_market)


def _held_snapshots_statement(limit: int):
    """Snapshots the plausibility gate held out of gold, newest first."""
    s = snapshots
    return (
        select(
            s.c.snapshot_at, s.c.run_id, s.c.source, s.c.coin_count, s.c.requested_coins, s.c.reasons, s.c.decided_at
        )
        .where(s.c.status == "held")
        .order_by(s.c.snapshot_at.desc())
        .limit(limit)
    )


def _lock_holder_statement():
    """What ``pipeline.runs.current_holder`` runs."""
    return select(pipeline_lock).where(pipeline_lock.c.name == LOCK_NAME)


def _last_api_run_statement():
    r = pipeline_runs
    return select(func.max(r.c.started_at).label("started_at")).where(r.c.source == "api")


def dashboard_queries() -> dict[str, tuple]:
    """Every statement the pages run, by name -> (statement, params); values are bound in the statements."""
    statements = {
        "probe_latest_run": _latest_run_statement(),
        "probe_has_rows": _has_rows_statement(),
        "freshness": api.freshness_statement(),
        "mart": _mart_statement(),
        "segments": _segments_statement(),
        "market_history": _history_statement(HISTORY_LIMIT),
        "global_latest": _global_latest_statement(),
        "runs_latest": _runs_statement(RUNS_LIMIT),
        "quarantine_latest": _quarantine_statement(QUARANTINE_LIMIT),
        "quarantine_count": _quarantine_count_statement(),
        "held_snapshots": _held_snapshots_statement(HELD_LIMIT),
        "lock_holder": _lock_holder_statement(),
        "last_api_run_started": _last_api_run_statement(),
    }
    return {name: (statement, {}) for name, statement in statements.items()}


#: For ``python -m benchmarks.bench``: the dashboard's queries (the history ranges' and others' are added below).
DASHBOARD_QUERIES = dashboard_queries()


# -- status -------------------------------------------------------------------


@st.cache_data(ttl=PROBE_TTL, show_spinner=False)
def probe(database_url: str) -> DataStatus:
    """Is the database reachable, are the tables there, is there data, and which version."""
    try:
        engine = engine_for(database_url)
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            missing = tuple(t for t in REQUIRED_TABLES if t not in tables)
            if len(missing) == len(REQUIRED_TABLES):
                return DataStatus("no_tables", "the database has no pipeline tables yet", missing=missing)
            if missing:
                return DataStatus(
                    "missing_tables", "the database is missing the table(s) " + ", ".join(missing), missing=missing
                )
            latest = conn.execute(_latest_run_statement()).first()
            has_rows = conn.execute(_has_rows_statement()).first() is not None
    except DataUnavailable as exc:
        return DataStatus("unreachable", str(exc))
    except (SQLAlchemyError, DatabaseUnavailable) as exc:
        return DataStatus("unreachable", str(_unavailable(database_url, exc)))
    version = f"{latest[0]}:{latest[1]}" if latest else "none"
    if not has_rows:
        return DataStatus("empty", "no market data has been loaded yet", version=version)
    return DataStatus("ok", version=version)


@st.cache_data(ttl=30, show_spinner=False)
def load_freshness(database_url: str, version: str, interval_minutes: int) -> api.Freshness | None:
    """When the shown data was recorded and where from, and whether it is stale (``api.data_freshness``)."""
    try:
        return api.data_freshness(engine_for(database_url), interval_minutes)
    except SQLAlchemyError as exc:
        raise _unavailable(database_url, exc) from exc


# -- gold ---------------------------------------------------------------------


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=8)
def load_mart(database_url: str, version: str) -> pd.DataFrame:
    """``crypto_analytics_mart``: one row per coin of the newest snapshot, by rank."""
    return _frame(database_url, _mart_statement())


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=8)
def load_segments(database_url: str, version: str) -> pd.DataFrame:
    """``market_segment_analysis``: one row per market-cap category."""
    return _frame(database_url, _segments_statement())


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=8)
def load_market_history(database_url: str, version: str, limit: int = HISTORY_LIMIT) -> pd.DataFrame:
    """``market_history``: whole-market totals and dominance per snapshot (the newest ``limit``), oldest first."""
    return _frame(database_url, _history_statement(limit))


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=8)
def load_global_latest(database_url: str, version: str) -> dict | None:
    """The newest ``staging_global_market`` row (CoinGecko's /global), or None."""
    frame = _frame(database_url, _global_latest_statement())
    return None if frame.empty else frame.iloc[0].to_dict()


# -- operations -------------------------------------------------------------------


@st.cache_data(ttl=RUNS_TTL, show_spinner=False, max_entries=8)
def load_runs(database_url: str, version: str, limit: int = RUNS_LIMIT) -> pd.DataFrame:
    """The newest ``pipeline_runs`` rows, newest first."""
    return _frame(database_url, _runs_statement(limit))


@st.cache_data(ttl=RUNS_TTL, show_spinner=False, max_entries=8)
def load_quarantine(database_url: str, version: str, limit: int = QUARANTINE_LIMIT) -> pd.DataFrame:
    """The newest quarantined records (rejected by the silver checks), newest first."""
    frame = _frame(database_url, _quarantine_statement(limit), numbers=False)  # record_index stays an int
    if "raw_record" in frame.columns:
        frame["raw_record"] = frame["raw_record"].astype("str").str.slice(0, 500)
    return frame


@st.cache_data(ttl=RUNS_TTL, show_spinner=False, max_entries=8)
def count_quarantine(database_url: str, version: str) -> int:
    """How many records were ever quarantined."""
    frame = _frame(database_url, _quarantine_count_statement(), numbers=False)
    return int(frame["n"].iloc[0]) if not frame.empty else 0


@st.cache_data(ttl=RUNS_TTL, show_spinner=False, max_entries=8)
def load_held_snapshots(database_url: str, version: str, limit: int = HELD_LIMIT) -> pd.DataFrame:
    """Snapshots the plausibility gate held (status 'held' in the snapshots ledger), newest first."""
    return _frame(database_url, _held_snapshots_statement(limit))


def load_lock_holder(database_url: str) -> dict | None:
    """The run holding the pipeline lock right now, if any (uncached: it changes by the second)."""
    try:
        return api.current_holder(engine_for(database_url))
    except SQLAlchemyError as exc:
        raise _unavailable(database_url, exc) from exc


def last_api_run_started(database_url: str) -> datetime | None:
    """When the newest run that called the CoinGecko API started (uncached: for the cooldown)."""
    frame = _frame(database_url, _last_api_run_statement())
    value = frame["started_at"].iloc[0] if not frame.empty else None
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def clear_caches() -> None:
    """Forget every cached result, so the next read shows what the database holds now."""
    for loader in (
        probe,
        load_freshness,
        load_mart,
        load_segments,
        load_market_history,
        load_global_latest,
        load_runs,
        load_quarantine,
        count_quarantine,
        load_held_snapshots,
        load_coins,
        load_watchlists,
        *RANGE_LOADERS,
        *COMPARE_LOADERS,
        *ALERT_LOADERS,
    ):
        loader.clear()


# -- history ranges ----------------------------------------------------------------
# The range buttons (dashboard.ranges): each loader finds the newest point first (an index lookup),
# reads only the window ``WHERE time >= :since`` in SQL, and thins it to at most ranges.MAX_POINTS
# rows (ranges.resample; for market_history the same buckets are already applied in SQL), so a year
# of 15-minute snapshots stays fast to query and to draw.


@dataclass(frozen=True)
class HistoryWindow:
    """One range of a history: the (thinned) rows, and what the whole history covers."""

    frame: pd.DataFrame
    first: datetime | None  # the oldest point of the whole history (not just the window)
    last: datetime | None  # the newest point
    since: datetime | None  # the window's start (None: everything)
    points: int  # rows in the window before thinning


def _market_bounds_statement():
    """Two index lookups (one min() and one max() per SELECT: SQLite scans for both in one)."""
    h = market_history
    return select(
        select(func.min(h.c.snapshot_at)).scalar_subquery().label("first"),
        select(func.max(h.c.snapshot_at)).scalar_subquery().label("last"),
    )


def _market_count_statement(since: datetime | None):
    h = market_history
    statement = select(func.count().label("n")).select_from(h)
    return statement if since is None else statement.where(h.c.snapshot_at >= since)


class _TimeBucket(ColumnElement):
    """``floor(epoch seconds of a UTC time / seconds)``: the number of the equal time bucket a point
    falls in, counted from the Unix epoch like ``ranges.resample`` counts them (SQLite and PostgreSQL)."""

    inherit_cache = True
    type = Integer()

    def __init__(self, column, seconds: int):
        self.column, self.seconds = column, int(seconds)


@compiles(_TimeBucket, "sqlite")
def _time_bucket_sqlite(element, compiler, **kw):
    return f"(CAST(strftime('%s', {compiler.process(element.column, **kw)}) AS INTEGER) / {element.seconds})"


@compiles(_TimeBucket, "postgresql")
def _time_bucket_postgresql(element, compiler, **kw):
    return f"FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.column, **kw)}) / {element.seconds})"


def _market_window_statement(since: datetime | None, bucket_seconds: int | None = None):
    """The window's rows, oldest first; with ``bucket_seconds`` only the newest row of each equal time
    bucket (the rows ``ranges.resample`` keeps), so a year of 15-minute points never crosses the
    driver whole: ~1,500 rows instead of 35,000."""
    h = market_history
    statement = select(h).order_by(h.c.snapshot_at)
    if since is not None:
        statement = statement.where(h.c.snapshot_at >= since)
    if bucket_seconds:
        newest = select(func.max(h.c.snapshot_at)).group_by(_TimeBucket(h.c.snapshot_at, bucket_seconds))
        if since is not None:
            newest = newest.where(h.c.snapshot_at >= since)
        statement = statement.where(h.c.snapshot_at.in_(newest))
    return statement


def _coin_bounds_statements(coin_id: str):
    s, h = staging_crypto_market, staging_coin_history
    return (
        select(func.min(s.c.snapshot_at).label("first"), func.max(s.c.snapshot_at).label("last")).where(
            s.c.id == coin_id
        ),
        select(func.min(h.c.ts).label("first"), func.max(h.c.ts).label("last")).where(h.c.id == coin_id),
    )


def _coin_window_statements(coin_id: str, since: datetime | None):
    s, h = staging_crypto_market, staging_coin_history
    snaps = select(
        s.c.snapshot_at.label("ts"),
        s.c.current_price.label("price"),
        s.c.market_cap,
        s.c.total_volume,
        s.c.market_cap_rank,
    ).where(s.c.id == coin_id)
    backfill = select(h.c.ts, h.c.price, h.c.market_cap, h.c.total_volume).where(h.c.id == coin_id)
    if since is not None:
        snaps, backfill = snaps.where(s.c.snapshot_at >= since), backfill.where(h.c.ts >= since)
    return snaps, backfill


def _capped_count_statement(rows):
    """How many rows ``rows`` selects, counting no further than MAX_POINTS + 1: enough to pick the
    grain (ranges.pick_grain), and bounded however long the history."""
    return select(func.count().label("n")).select_from(rows.limit(ranges.MAX_POINTS + 1).subquery())


def _coin_raw_count_statement(coin_id: str, since: datetime | None):
    s = staging_crypto_market
    rows = select(s.c.snapshot_at).where(s.c.id == coin_id)
    return _capped_count_statement(rows if since is None else rows.where(s.c.snapshot_at >= since))


def _rollup_bounds_statement(table, *key):
    """The first and last point a rollup holds (two index lookups on its key)."""
    first = select(table.c.open_at).where(*key).order_by(table.c.bucket).limit(1).scalar_subquery()
    close = table.c.close_at if "close_at" in table.c else table.c.snapshot_at  # the market's: its last snapshot
    last = select(close).where(*key).order_by(table.c.bucket.desc()).limit(1).scalar_subquery()
    return select(first.label("first"), last.label("last"))


def _coin_rollup_bounds_statement(coin_id: str):
    return _rollup_bounds_statement(coin_history_daily, coin_history_daily.c.id == coin_id)


def _rollup_start(since: datetime | None, grain: str) -> datetime | None:
    """The first bucket a window starting at ``since`` reaches into."""
    if since is None:
        return None
    moment = pd.Timestamp(since)
    return (moment.floor("h") if grain == "hourly" else moment.floor("D")).to_pydatetime()


def _rollup_rows_statements(grain: str, since: datetime | None, which, columns):
    """Coin rollup rows over a window, shaped like the raw window (ts is the bucket's last point): the
    hourly rows and the backfilled days (from the daily rollup), or the daily rows. ``which(t)``: the
    coins' filter on table ``t``; ``columns(t)``: what to select from it (origin and points follow)."""
    start = _rollup_start(since, grain)

    def rows(t, origin):
        statement = select(*columns(t), origin.label("origin"), t.c.points).where(which(t))
        return statement if start is None else statement.where(t.c.bucket >= start)

    d = coin_history_daily
    if grain == "daily":
        return (rows(d, d.c.origin),)
    return rows(coin_history_hourly, literal("snapshot", String())), rows(d, d.c.origin).where(d.c.origin == "backfill")


def _coin_rollup_statements(coin_id: str, grain: str, since: datetime | None):
    """One coin's price, market cap, volume and rank from the rollups over a window."""
    return _rollup_rows_statements(
        grain,
        since,
        lambda t: t.c.id == coin_id,
        lambda t: (
            t.c.close_at.label("ts"),
            t.c.close.label("price"),
            t.c.market_cap,
            t.c.total_volume,
            t.c.market_cap_rank,
        ),
    )


def _market_raw_count_statement(since: datetime | None):
    h = market_history
    rows = select(h.c.snapshot_at)
    return _capped_count_statement(rows if since is None else rows.where(h.c.snapshot_at >= since))


def _market_rollup_statement(grain: str, since: datetime | None):
    """market_history's columns from the hourly or daily rollup (snapshot_at: each bucket's last point)."""
    table = market_history_hourly if grain == "hourly" else market_history_daily
    statement = select(*(table.c[c.name] for c in market_history.columns), table.c.points).order_by(table.c.bucket)
    start = _rollup_start(since, grain)
    return statement if start is None else statement.where(table.c.bucket >= start)


def _coin_directory_statement():
    """Every coin ever published or backfilled (the coins_seen rollup: one row per coin)."""
    c = coins_seen
    return select(c.c.id, c.c.name, c.c.symbol, c.c.market_cap_rank, c.c.last_seen).order_by(c.c.id)


def _coin_directory_scan_statement():
    """Every coin id ever seen in silver, with its newest name, symbol, rank and time: the fallback
    for a database whose coins_seen is still empty (upgraded, no run since).

    A loose index scan (recursive CTE stepping through the (id, snapshot_at) key: one index probe
    per distinct coin) instead of a DISTINCT over millions of rows; the same SQL on SQLite and
    PostgreSQL. The newest name and symbol are one more probe each.
    """
    s = staging_crypto_market
    inner = s.alias("inner_ids")
    ids = select(func.min(s.c.id).label("id")).cte("coin_ids", recursive=True)
    ids = ids.union_all(
        select(select(func.min(inner.c.id)).where(inner.c.id > ids.c.id).scalar_subquery()).where(ids.c.id.is_not(None))
    )
    newest = s.alias("newest")
    last_seen = select(func.max(newest.c.snapshot_at)).where(newest.c.id == ids.c.id).scalar_subquery()
    latest = s.alias("latest")
    return (
        select(
            ids.c.id, latest.c.name, latest.c.symbol, latest.c.market_cap_rank, latest.c.snapshot_at.label("last_seen")
        )
        .join_from(ids, latest, (latest.c.id == ids.c.id) & (latest.c.snapshot_at == last_seen))
        .where(ids.c.id.is_not(None))
    )


def _backfill_ids_statement():
    h = staging_coin_history
    return select(h.c.id, func.max(h.c.ts).label("last_seen")).group_by(h.c.id)


def _bounds(database_url: str, statement) -> tuple[datetime | None, datetime | None]:
    frame = _frame(database_url, statement)
    if frame.empty:
        return None, None
    first, last = pd.to_datetime(frame["first"].iloc[0]), pd.to_datetime(frame["last"].iloc[0])
    return (None if pd.isna(first) else first.to_pydatetime(), None if pd.isna(last) else last.to_pydatetime())


def _optional_bounds(database_url: str, statement) -> tuple[datetime | None, datetime | None]:
    """Bounds from a table an older database may lack (backfill, rollups): none then."""
    try:
        return _bounds(database_url, statement)
    except DataUnavailable:
        return None, None


def _span(values: list[datetime | None], pick) -> datetime | None:
    present = [v for v in values if v is not None]
    return pick(present) if present else None


def _grain(database_url: str, count_statement, since, first, last, raw_first) -> str:
    """ranges.pick_grain for a window: raw covers it when raw data reaches back to the window's start
    or to the oldest point any grain holds (nothing older was pruned into the rollups only)."""
    if last is None:
        return "raw"
    counted = _frame(database_url, count_statement, numbers=False)
    raw_points = int(counted["n"].iloc[0]) if not counted.empty else 0
    reach = since if since is not None and first is not None and since > first else first
    covers = raw_first is not None and reach is not None and raw_first <= reach
    return ranges.pick_grain(last - (since or first or last), raw_points, raw_covers=covers)


def _rollup_frame(database_url: str, statements, since: datetime | None) -> tuple[pd.DataFrame, int]:
    """Rollup rows of a window (empty: the rollup lacks them, e.g. an upgraded database before its
    first run), oldest first, and how many raw points they stand for."""
    frames = []
    for statement in statements:
        try:
            frames.append(_frame(database_url, statement))
        except DataUnavailable:
            return pd.DataFrame(), 0
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(), 0
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    time_column = "ts" if "ts" in rows.columns else "snapshot_at"
    rows[time_column] = pd.to_datetime(rows[time_column])
    if since is not None:
        rows = rows[rows[time_column] >= pd.Timestamp(since)]
    rows = rows.sort_values(time_column, kind="stable").reset_index(drop=True)
    return rows.drop(columns="points"), int(rows["points"].sum())


def _market_points(database_url: str, since: datetime | None) -> int:
    counted = _frame(database_url, _market_count_statement(since), numbers=False)
    return int(counted["n"].iloc[0]) if not counted.empty else 0


def _market_points_before(database_url: str, bucket_start: datetime | None, since: datetime | None) -> int:
    """Raw points of the window's first rollup bucket that fall before the window (the bucket's count
    includes them); 0 when the raw rows are gone (pruned: the rollup's count is all there is)."""
    if bucket_start is None or since is None or bucket_start >= since:
        return 0
    return _market_points(database_url, bucket_start) - _market_points(database_url, since)


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=32)
def load_market_history_range(database_url: str, version: str, range_key: str) -> HistoryWindow:
    """``market_history`` over one range (counted back from the newest snapshot), at most MAX_POINTS rows:
    raw points when the range holds at most that many, else the hourly or daily rollup
    (``ranges.pick_grain``), whose rows are each bucket's last point."""
    raw_first, raw_last = _bounds(database_url, _market_bounds_statement())
    kept_first, kept_last = _optional_bounds(database_url, _rollup_bounds_statement(market_history_daily))
    first, last = _span([raw_first, kept_first], min), _span([raw_last, kept_last], max)
    since = ranges.window_start(range_key, last)
    grain = _grain(database_url, _market_raw_count_statement(since), since, first, last, raw_first)
    if grain != "raw":
        frame, points = _rollup_frame(database_url, (_market_rollup_statement(grain, since),), since)
        if not frame.empty:
            points -= _market_points_before(database_url, _rollup_start(since, grain), since)
            return HistoryWindow(ranges.resample(frame, "snapshot_at"), first, last, since, points)
    points = _market_points(database_url, since)
    width = ranges.bucket_width(since or raw_first, raw_last) if points > ranges.MAX_POINTS and raw_last else None
    frame = _frame(database_url, _market_window_statement(since, int(width.total_seconds()) if width else None))
    return HistoryWindow(ranges.resample(frame, "snapshot_at"), first, last, since, points)


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=64)
def load_coin_history_range(database_url: str, version: str, coin_id: str, range_key: str) -> HistoryWindow:
    """One coin's price, market cap, volume and rank over a range: silver snapshots plus backfilled days
    when the range holds at most MAX_POINTS snapshots, else the hourly or daily rollup
    (``ranges.pick_grain``; each bucket's last point, backfilled days where no snapshot was taken).

    The range counts back from the coin's own newest point (a coin that left the top N shows its
    last days in it). Where a snapshot and a backfilled point share a time, the snapshot wins.
    Columns: ts, price, market_cap, total_volume, market_cap_rank (snapshots only), origin.
    """
    snap_bounds, fill_bounds = _coin_bounds_statements(coin_id)
    bounds = [_bounds(database_url, snap_bounds), _optional_bounds(database_url, fill_bounds)]
    raw_first = _span([b[0] for b in bounds], min)
    kept = _optional_bounds(database_url, _coin_rollup_bounds_statement(coin_id))
    first = _span([raw_first, kept[0]], min)
    last = _span([*(b[1] for b in bounds), kept[1]], max)
    since = ranges.window_start(range_key, last)
    grain = _grain(database_url, _coin_raw_count_statement(coin_id, since), since, first, last, raw_first)
    if grain != "raw":
        frame, points = _rollup_frame(database_url, _coin_rollup_statements(coin_id, grain, since), since)
        if not frame.empty:
            return HistoryWindow(ranges.resample(frame, "ts"), first, last, since, points)
    snaps_statement, fill_statement = _coin_window_statements(coin_id, since)
    snaps = _frame(database_url, snaps_statement)
    snaps["origin"] = "snapshot"
    try:
        backfill = _frame(database_url, fill_statement)
    except DataUnavailable:
        backfill = snaps.iloc[0:0].drop(columns=["origin", "market_cap_rank"])
    backfill["origin"] = "backfill"
    frames = [f for f in (snaps, backfill) if not f.empty]
    if not frames:
        return HistoryWindow(snaps, first, last, since, 0)
    history = pd.concat(frames, ignore_index=True)
    history["ts"] = pd.to_datetime(history["ts"])
    if "market_cap_rank" not in history.columns:
        history["market_cap_rank"] = float("nan")
    history = history.sort_values(["ts", "origin"], ascending=[True, False])
    history = history.drop_duplicates("ts", keep="first").reset_index(drop=True)
    return HistoryWindow(ranges.resample(history, "ts"), first, last, since, len(history))


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=8)
def load_coin_directory(database_url: str, version: str) -> pd.DataFrame:
    """Every coin ever seen (silver snapshots or backfilled history), for the Coin page's picker:
    id, name, symbol, market_cap_rank (as last seen) and last_seen. One small table (coins_seen,
    kept by every run); a database that has not filled it yet is read the slow way."""
    try:
        seen = _frame(database_url, _coin_directory_statement())
    except DataUnavailable:
        seen = pd.DataFrame()
    if not seen.empty:
        return seen
    seen = _frame(database_url, _coin_directory_scan_statement())
    try:
        backfilled = _frame(database_url, _backfill_ids_statement())
    except DataUnavailable:
        backfilled = pd.DataFrame(columns=["id", "last_seen"])
    only_backfilled = backfilled[~backfilled["id"].isin(seen["id"])]
    if not only_backfilled.empty:
        seen = pd.concat([seen, only_backfilled.assign(name=None, symbol=None)], ignore_index=True)
    return seen.drop_duplicates("id", keep="first").reset_index(drop=True)


RANGE_LOADERS = (load_market_history_range, load_coin_history_range, load_coin_directory)


def _newest(statement, column, rows: int = ranges.MAX_POINTS):
    """A window's worst case for the benchmark: the newest ``rows`` rows (more are never read)."""
    return statement.order_by(None).order_by(column.desc()).limit(rows)


#: For ``python -m benchmarks.bench``: the range queries at their worst case. A raw window is read
#: only when it holds at most MAX_POINTS rows and an hourly one spans at most MAX_POINTS hours, so
#: each is timed on its newest MAX_POINTS rows; the daily rollup whole (every day ever kept).
DASHBOARD_QUERIES.update(
    {
        "market_history_bounds": (_market_bounds_statement(), {}),
        "market_history_rollup_bounds": (_rollup_bounds_statement(market_history_daily), {}),
        "market_history_raw_count": (_market_raw_count_statement(None), {}),
        "market_history_raw_window": (_newest(_market_window_statement(None), market_history.c.snapshot_at), {}),
        "market_history_hourly": (
            _newest(_market_rollup_statement("hourly", None), market_history_hourly.c.bucket),
            {},
        ),
        "market_history_daily": (_market_rollup_statement("daily", None), {}),
        "coin_bounds_silver": (_coin_bounds_statements("bitcoin")[0], {}),
        "coin_bounds_backfill": (_coin_bounds_statements("bitcoin")[1], {}),
        "coin_bounds_rollup": (_coin_rollup_bounds_statement("bitcoin"), {}),
        "coin_raw_count": (_coin_raw_count_statement("bitcoin", None), {}),
        "coin_window_silver": (
            _newest(_coin_window_statements("bitcoin", None)[0], staging_crypto_market.c.snapshot_at),
            {},
        ),
        "coin_window_backfill": (_coin_window_statements("bitcoin", None)[1], {}),
        "coin_window_hourly": (
            _newest(_coin_rollup_statements("bitcoin", "hourly", None)[0], coin_history_hourly.c.bucket),
            {},
        ),
        "coin_window_daily": (_coin_rollup_statements("bitcoin", "daily", None)[0], {}),
        "coin_directory": (_coin_directory_statement(), {}),
    }
)


# -- coins table --------------------------------------------------------------------------------


def _coins_statement():
    """The mart's coins with what the Coins table adds from silver: FDV and supply (same snapshot, by primary
    key) and the newest 7-day sparkline kept for each coin no later than the snapshot (the mart's own one
    when it has it)."""
    m, s, sp = crypto_analytics_mart, staging_crypto_market, staging_sparkline
    shown_at = select(func.max(m.c.snapshot_at)).scalar_subquery()
    return (
        select(
            m,
            s.c.fully_diluted_valuation,
            s.c.total_supply,
            s.c.max_supply,
            sp.c.sparkline_7d.label("newest_sparkline_7d"),
        )
        .select_from(
            m.outerjoin(
                s, and_(s.c.id == m.c.id, s.c.snapshot_at == m.c.snapshot_at, s.c.snapshot_at == shown_at)
            ).outerjoin(sp, and_(sp.c.id == m.c.id, sp.c.snapshot_at <= m.c.snapshot_at))
        )
        .order_by(m.c.market_cap_rank.is_(None), m.c.market_cap_rank, m.c.market_cap.desc())
    )


DASHBOARD_QUERIES["coins_table"] = (_coins_statement(), {})


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=8)
def load_coins(database_url: str, version: str) -> pd.DataFrame:
    """Every coin of the newest published snapshot, by rank, with FDV, supply and a 7-day sparkline."""
    frame = _frame(database_url, _coins_statement())
    newest = frame.pop("newest_sparkline_7d")
    frame["sparkline_7d"] = frame["sparkline_7d"].where(frame["sparkline_7d"].notna(), newest)
    return frame


# -- watchlists ----------------------------------------------------------------------------------

WATCHLISTS_TTL = 30  # seconds: another session may save a list under a name meanwhile


def _watchlist_call(database_url: str, call, *args):
    try:
        return call(engine_for(database_url), *args)
    except (SQLAlchemyError, *DRIVER_ERRORS) as exc:
        raise _unavailable(database_url, exc) from exc


@st.cache_data(ttl=WATCHLISTS_TTL, show_spinner=False, max_entries=8)
def load_watchlists(database_url: str) -> list[api.Watchlist]:
    """Every saved watchlist, by name."""
    return _watchlist_call(database_url, api.list_watchlists)


def find_watchlist(database_url: str, name: str) -> api.Watchlist | None:
    """The watchlist saved as ``name``, or None (uncached: a link names it once per session)."""
    return _watchlist_call(database_url, api.load_watchlist, name)


def store_watchlist(database_url: str, name: str, coin_ids: list[str]) -> api.Watchlist:
    """Save (create or replace) a named watchlist; raises ``api.WatchlistError`` for an unusable name."""
    saved = _watchlist_call(database_url, api.save_watchlist, name, coin_ids)
    load_watchlists.clear()
    return saved


def remove_watchlist(database_url: str, name: str) -> bool:
    """Delete a named watchlist; False when none had that name."""
    deleted = _watchlist_call(database_url, api.delete_watchlist, name)
    load_watchlists.clear()
    return deleted


# -- API budget --------------------------------------------------------------------
# This month's CoinGecko calls (pipeline.budget counts them per endpoint and UTC day in api_calls,
# flushed at the end of each run); the Pipeline page sets them against COINGECKO_MONTHLY_CALLS.


def _api_calls_statement(since: datetime, until: datetime):
    t = api.api_calls
    return (
        select(t.c.endpoint, t.c.day, t.c.calls, t.c.failures, t.c.last_at)
        .where(t.c.day >= since.date(), t.c.day < until.date())
        .order_by(t.c.day, t.c.endpoint)
    )


@st.cache_data(ttl=RUNS_TTL, show_spinner=False, max_entries=8)
def load_api_calls(database_url: str, version: str, month: datetime) -> pd.DataFrame:
    """The ``api_calls`` rows of the UTC month starting ``month`` (one per endpoint and day); calls and
    failures as whole numbers, ``day`` as a date. DataUnavailable on a database without the table."""
    frame = _frame(database_url, _api_calls_statement(month, api.budget_month_end(month)), numbers=False)
    frame["day"] = pd.to_datetime(frame["day"]).dt.date if not frame.empty else frame["day"]
    for column in ("calls", "failures"):
        frame[column] = pd.to_numeric(frame[column]).astype("int64")
    return frame


BUDGET_LOADERS = (load_api_calls,)
DASHBOARD_QUERIES.update({"api_calls_month": (_api_calls_statement(datetime(2026, 1, 1), datetime(2026, 2, 1)), {})})


# -- alerts ----------------------------------------------------------------------
# Rules are written through pipeline.api (create_rule, set_rule_enabled, delete_rule, which validate
# them); the pipeline evaluates them after every successful run and records what fired.

ALERT_EVENTS_LIMIT = 500


def _alert_rules_statement():
    r = api.alert_rules
    return select(r).order_by(r.c.rule_id)


def _alert_events_statement(limit: int):
    e = api.alert_events
    return select(e).order_by(e.c.fired_at.desc(), e.c.event_id.desc()).limit(limit)


def _alert_count_statement(since: datetime):
    e = api.alert_events
    return select(func.count().label("n")).where(e.c.fired_at > since)


@st.cache_data(ttl=RUNS_TTL, show_spinner=False, max_entries=8)
def load_alert_rules(database_url: str, version: str) -> pd.DataFrame:
    """Every alert rule, oldest first."""
    return _frame(database_url, _alert_rules_statement())


def _newest_alert_statement():
    e = api.alert_events
    return select(func.max(e.c.event_id).label("newest"))


def newest_alert_event(database_url: str) -> int:
    """The newest fired alert's id (0: none), read fresh on every render: the history's cache key, so the
    Alerts page lists every alert the sidebar badge has counted (the badge's own key moves every minute,
    sooner than the data version probe)."""
    frame = _frame(database_url, _newest_alert_statement(), numbers=False)
    value = frame["newest"].iloc[0] if not frame.empty else None
    return 0 if value is None or pd.isna(value) else int(value)


@st.cache_data(ttl=RUNS_TTL, show_spinner=False, max_entries=8)
def load_alert_events(
    database_url: str, version: str, newest_event: int, limit: int = ALERT_EVENTS_LIMIT
) -> pd.DataFrame:
    """The alerts that fired, newest first (``newest_event``: ``newest_alert_event``, the cache key)."""
    return _frame(database_url, _alert_events_statement(limit), numbers=False)


@st.cache_data(ttl=RUNS_TTL, show_spinner=False, max_entries=32)
def count_new_alerts(database_url: str, version: str, since: datetime) -> int:
    """How many alerts fired after ``since`` (the sidebar badge)."""
    frame = _frame(database_url, _alert_count_statement(since), numbers=False)
    return int(frame["n"].iloc[0]) if not frame.empty else 0


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=8)
def load_alert_stablecoins(database_url: str, version: str) -> list[str]:
    """Coins a de-peg rule can watch (USD stablecoins)."""
    try:
        return api.stablecoin_ids(engine_for(database_url))
    except SQLAlchemyError as exc:
        raise _unavailable(database_url, exc) from exc


def save_alert_rule(
    database_url: str, *, kind: str, coin_id: str, threshold: float, change_window: str | None, note: str | None
) -> int:
    """Save a new rule (``api.AlertRuleError`` when it is not valid); returns its id."""
    try:
        rule_id = api.create_rule(
            engine_for(database_url),
            kind=kind,
            coin_id=coin_id,
            threshold=threshold,
            change_window=change_window,
            note=note,
        )
    except SQLAlchemyError as exc:
        raise _unavailable(database_url, exc) from exc
    clear_alert_caches()
    return rule_id


def set_alert_rule_enabled(database_url: str, rule_id: int, enabled: bool) -> None:
    try:
        api.set_rule_enabled(engine_for(database_url), rule_id, enabled)
    except SQLAlchemyError as exc:
        raise _unavailable(database_url, exc) from exc
    clear_alert_caches()


def delete_alert_rule(database_url: str, rule_id: int) -> None:
    try:
        api.delete_rule(engine_for(database_url), rule_id)
    except SQLAlchemyError as exc:
        raise _unavailable(database_url, exc) from exc
    clear_alert_caches()


ALERT_LOADERS = (load_alert_rules, load_alert_events, count_new_alerts, load_alert_stablecoins)


def clear_alert_caches() -> None:
    for loader in ALERT_LOADERS:
        loader.clear()


# -- sectors ----------------------------------------------------------------------------------
#: Rows of sector_history read for the share-over-time chart (tracked + ten largest, hourly: ~60 days).
SECTOR_HISTORY_LIMIT = 20_000


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=8)
def load_sector_ranking(database_url: str, version: str) -> pd.DataFrame:
    """Every sector of the newest /coins/categories snapshot, by rank (sectors without a market cap last).
    An empty frame when the sector tables are not there yet (a database from before sectors)."""
    r = sector_ranking
    if not _has_table(database_url, r.name):
        return pd.DataFrame(columns=list(r.columns.keys()))
    return _frame(database_url, select(r).order_by(r.c.sector_rank.is_(None), r.c.sector_rank, r.c.category_id))


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=8)
def load_sector_history(database_url: str, version: str) -> pd.DataFrame:
    """The newest ``SECTOR_HISTORY_LIMIT`` rows of sector_history, oldest first."""
    h = sector_history
    if not _has_table(database_url, h.name):
        return pd.DataFrame(columns=list(h.columns.keys()))
    newest = select(h).order_by(h.c.snapshot_at.desc(), h.c.category_id).limit(SECTOR_HISTORY_LIMIT).subquery()
    frame = _frame(database_url, select(newest).order_by(newest.c.snapshot_at, newest.c.category_id))
    return frame


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=32)
def load_sector_member_ids(database_url: str, version: str, sector: str) -> frozenset[str]:
    """The coin ids CoinGecko files under ``sector`` (empty when it is not a tracked sector)."""
    m = ref_sector_members
    if not _has_table(database_url, m.name):
        return frozenset()
    frame = _frame(database_url, select(m.c.coin_id).where(m.c.category_id == sector))
    return frozenset(frame["coin_id"])


def _has_table(database_url: str, name: str) -> bool:
    try:
        with engine_for(database_url).connect() as conn:
            return bool(inspect(conn).has_table(name))
    except (SQLAlchemyError, *DRIVER_ERRORS) as exc:
        raise _unavailable(database_url, exc) from exc


# -- compare --------------------------------------------------------------------------------------
# The Compare page: the prices of 2-10 coins (and bitcoin, the beta benchmark) over one range, from
# silver snapshots and backfilled daily history. One query per table for all the coins (id = .. OR ..),
# never one per coin; the range counts back from the newest point of any of them (dashboard.ranges).


def _any_of(column, values: tuple[str, ...]):
    """``column IN (:a, :b, ...)``: one bound parameter each (``_frame`` runs the compiled text as it is, so
    an expanding ``IN`` list, compiled later, cannot be used). A list, not ``column = :a OR ...``: PostgreSQL
    plans the ORs as a bitmap of index scans, which reads the table's rows, where the list can be read from
    a covering index alone (the Compare page's daily closes of ten coins at 10M rows of history: 6,482
    heap pages and 28 ms, against none and 6 ms, ``schema.COMPARE_DAILY_INDEX``)."""
    if not values:
        return false()
    return column.in_([literal(value, column.type) for value in values])


def _compare_last_statements(coin_ids: tuple[str, ...]):
    s, h = staging_crypto_market, staging_coin_history
    return (
        select(func.max(s.c.snapshot_at).label("last")).where(_any_of(s.c.id, coin_ids)),
        select(func.max(h.c.ts).label("last")).where(_any_of(h.c.id, coin_ids)),
    )


def _compare_points_statements(coin_ids: tuple[str, ...], since: datetime | None):
    s, h = staging_crypto_market, staging_coin_history
    snaps = select(s.c.id, s.c.snapshot_at.label("ts"), s.c.current_price.label("price")).where(
        _any_of(s.c.id, coin_ids)
    )
    backfill = select(h.c.id, h.c.ts, h.c.price).where(_any_of(h.c.id, coin_ids))
    if since is not None:
        snaps, backfill = snaps.where(s.c.snapshot_at >= since), backfill.where(h.c.ts >= since)
    return snaps, backfill


def _compare_rollup_statements(coin_ids: tuple[str, ...], grain: str, since: datetime | None):
    """The chosen coins' last price per hour or day (the Compare page's step) from the rollups.
    Bounded by the range, not the history."""
    return _rollup_rows_statements(
        grain,
        since,
        lambda t: _any_of(t.c.id, coin_ids),
        lambda t: (t.c.id, t.c.close_at.label("ts"), t.c.close.label("price")),
    )


@dataclass(frozen=True)
class ComparePoints:
    """The chosen coins' prices over one range: rows id, ts, price, origin ('snapshot' | 'backfill')."""

    frame: pd.DataFrame
    since: datetime | None  # the range's start (None: everything)
    last: datetime | None  # the newest point of any of the coins


def _newest_time(database_url: str, statement) -> datetime | None:
    try:
        frame = _frame(database_url, statement)
    except DataUnavailable:  # an older database without the backfill table
        return None
    value = pd.to_datetime(frame["last"].iloc[0]) if not frame.empty else None
    return None if value is None or pd.isna(value) else value.to_pydatetime()


@st.cache_data(ttl=DATA_TTL, show_spinner=False, max_entries=32)
def load_compare_points(database_url: str, version: str, coin_ids: tuple[str, ...], range_key: str) -> ComparePoints:
    """The price points of ``coin_ids`` in the range, snapshots and backfill together, oldest first.

    The page compares one price per hour or day (``ranges.compare_grain``): the last one in it, which
    is what the hourly and daily rollups keep, so they are read (a few hundred rows per coin whatever
    the history's length). A database without rollup rows for these coins (upgraded, no run since)
    gives every raw point instead. Where a snapshot and a backfilled point of one coin share a time,
    the snapshot wins (as on the Coin page); of two providers' backfilled points at one time, one is kept.
    """
    columns = ["id", "ts", "price", "origin"]
    if not coin_ids:
        return ComparePoints(pd.DataFrame(columns=columns), None, None)
    newest = [_newest_time(database_url, statement) for statement in _compare_last_statements(coin_ids)]
    last = max((t for t in newest if t is not None), default=None)
    since = ranges.window_start(range_key, last)
    rolled, _ = _rollup_frame(
        database_url, _compare_rollup_statements(coin_ids, ranges.compare_grain(range_key), since), since
    )
    if not rolled.empty:
        return ComparePoints(_snapshot_first(rolled)[columns].reset_index(drop=True), since, last)
    snaps_statement, fill_statement = _compare_points_statements(coin_ids, since)
    snaps = _frame(database_url, snaps_statement).assign(origin="snapshot")
    try:
        backfill = _frame(database_url, fill_statement).assign(origin="backfill")
    except DataUnavailable:
        backfill = pd.DataFrame(columns=columns)
    frames = [f for f in (snaps, backfill) if not f.empty]
    if not frames:
        return ComparePoints(pd.DataFrame(columns=columns), since, last)
    points = pd.concat(frames, ignore_index=True)
    points["ts"] = pd.to_datetime(points["ts"])
    return ComparePoints(_snapshot_first(points)[columns].reset_index(drop=True), since, last)


def _snapshot_first(points: pd.DataFrame) -> pd.DataFrame:
    """Points sorted by coin and time, one per (coin, time): a snapshot over a backfilled point."""
    points = points.sort_values(["id", "ts", "origin"], ascending=[True, True, False], kind="stable")
    return points.drop_duplicates(["id", "ts"], keep="first")  # 'snapshot' sorts before 'backfill'


COMPARE_LOADERS = (load_compare_points,)

#: For ``python -m benchmarks.bench``: the Compare page's queries for the top 10 coins, "all" (every row).
_COMPARE_SAMPLE_IDS = (
    "bitcoin",
    "ethereum",
    "tether",
    "binancecoin",
    "ripple",
    "usd-coin",
    "cardano",
    "solana",
    "dogecoin",
    "polkadot",
)
DASHBOARD_QUERIES.update(
    {
        "compare_last_silver": (_compare_last_statements(_COMPARE_SAMPLE_IDS)[0], {}),
        "compare_last_backfill": (_compare_last_statements(_COMPARE_SAMPLE_IDS)[1], {}),
        # 7d hour by hour (the longest hourly range: 168 hours a coin), and "max" day by day.
        "compare_points_hourly": (
            _newest(
                _compare_rollup_statements(_COMPARE_SAMPLE_IDS, "hourly", None)[0],
                coin_history_hourly.c.bucket,
                rows=len(_COMPARE_SAMPLE_IDS) * 7 * 24,
            ),
            {},
        ),
        "compare_points_daily": (_compare_rollup_statements(_COMPARE_SAMPLE_IDS, "daily", None)[0], {}),
    }
)
