"""Table definitions for every layer, in one place.

The DDL a DBA reads in ``sql/schema/`` is generated from these definitions
(``python -m pipeline schema``) and a test keeps the two identical.
Floats are double precision, never a scaled NUMERIC: micro-cap prices such as
7.8666533e-10 must survive the round trip. Text that comes from the API (ids,
symbols, names) or a seed file is unbounded ``Text``: one record with a long name
must never stop a load (PostgreSQL enforces VARCHAR(n), SQLite does not).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from pipeline.silver.derived import DERIVED

SCHEMA_VERSION = 7

metadata = MetaData()

# -- silver ------------------------------------------------------------------

#: Numeric fields of a /coins/markets record, in load order, after renames.
MARKET_NUMERIC_COLUMNS = [
    "current_price",
    "market_cap",
    "fully_diluted_valuation",
    "total_volume",
    "high_24h",
    "low_24h",
    "price_change_24h",
    "price_change_percentage_1h",
    "price_change_percentage_24h",
    "price_change_percentage_7d",
    "price_change_percentage_30d",
    "market_cap_change_24h",
    "market_cap_change_percentage_24h",
    "circulating_supply",
    "total_supply",
    "max_supply",
    "ath",
    "ath_change_percentage",
    "atl",
    "atl_change_percentage",
]

#: Computed in silver from the other columns; each is declared once in pipeline/silver/derived.py.
DERIVED_COLUMNS = [column.name for column in DERIVED]

CATEGORY_COLUMNS = ["market_cap_category", "liquidity_category", "price_trend_category"]

#: ``source`` says why a row was made (api, sample, import, backfill: the run's origin);
#: ``provider`` whose data it is (a folder under pipeline/providers/). Rows written before
#: schema version 6 are CoinGecko's.
PROVIDER_DEFAULT = "coingecko"


def provider_column() -> Column[str]:
    return Column("provider", String(32), nullable=False, server_default=PROVIDER_DEFAULT)


staging_crypto_market = Table(
    "staging_crypto_market",
    metadata,
    Column("id", Text, nullable=False),
    Column("snapshot_at", DateTime, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("symbol", Text),
    Column("name", Text),
    Column("image", Text),
    Column("market_cap_rank", Integer),
    *[Column(name, Double) for name in MARKET_NUMERIC_COLUMNS],
    Column("ath_date", DateTime),
    Column("atl_date", DateTime),
    Column("last_updated", DateTime),
    *[Column(name, Double) for name in DERIVED_COLUMNS],
    *[Column(name, String(32), nullable=False) for name in CATEGORY_COLUMNS],
    #: When the response was received (snapshot_at is the moment the data describes).
    Column("fetched_at", DateTime),
    #: last_updated far older than the snapshot (PIPELINE_STALE_RECORD_HOURS): kept, flagged.
    Column("stale_record", Boolean),
    #: Not in the key: a snapshot time belongs to one run, so to one provider (gold and the
    #: snapshots ledger are keyed by time; pipeline.silver.load.unused_snapshot_time keeps it so).
    provider_column(),
    PrimaryKeyConstraint("id", "snapshot_at", name="pk_staging_crypto_market"),
    # PostgreSQL: one partition per month (created on demand by the loader), so
    # history can grow to millions of rows and retention drops whole months.
    postgresql_partition_by="RANGE (snapshot_at)",
)
Index("ix_staging_crypto_market_snapshot", staging_crypto_market.c.snapshot_at)
#: Covers the Coin page's history query (WHERE id = ? ORDER BY snapshot_at): a coin's
#: rows are one per heap page, so reading them from the index is ~10x fewer page reads.
COIN_HISTORY_INDEX = Index(
    "ix_staging_crypto_market_coin_history",
    staging_crypto_market.c.id,
    staging_crypto_market.c.snapshot_at,
    staging_crypto_market.c.current_price,
    staging_crypto_market.c.market_cap,
    staging_crypto_market.c.total_volume,
)

#: The newest 7-day sparkline per coin. 168 floats a row: kept once per coin,
#: not per snapshot, since price history is already in staging_crypto_market.
#: PostgreSQL keeps a row of up to ~8 kB as it is (toast_tuple_target, default ~2 kB): a sparkline
#: (~3 kB of 168 floats as text) is then neither compressed (it barely shrinks) nor moved out of line,
#: in staging_sparkline and in the mart that copies it (set on one table only, the other compresses
#: every copied sparkline with pglz: the mart's INSERT took 1.8-2.3 s instead of ~0.6 s). A whole
#: market's snapshot took 2.27-2.60 s instead of 2.35-2.85 s (benchmarks.whole_market's process_snapshot,
#: four runs each, alternated); each table holds one sparkline per coin, ~70 MB instead of ~55 MB for 17,000.
SPARKLINE_STORAGE = {"toast_tuple_target": 8160}

staging_sparkline = Table(
    "staging_sparkline",
    metadata,
    Column("id", Text, primary_key=True),
    Column("snapshot_at", DateTime, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("sparkline_7d", Text, nullable=False),
    postgresql_with=SPARKLINE_STORAGE,
)

staging_global_market = Table(
    "staging_global_market",
    metadata,
    Column("snapshot_at", DateTime, primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("vs_currency", String(16), nullable=False),
    Column("total_market_cap", Double),
    Column("total_volume", Double),
    Column("market_cap_change_percentage_24h", Double),
    Column("active_cryptocurrencies", Integer),
    Column("markets", Integer),
    Column("btc_dominance_pct", Double),
    Column("eth_dominance_pct", Double),
    Column("market_cap_percentage", Text),
    Column("updated_at", DateTime),
    Column("fetched_at", DateTime),
    #: False when this /global must not stand for the whole market of its snapshot
    #: (too old relative to the coins, or implausible); unusable_reason says why.
    Column("usable", Boolean),
    Column("unusable_reason", Text),
)

#: CoinGecko's own dominance per coin from /global's market_cap_percentage (keyed by symbol there).
staging_global_dominance = Table(
    "staging_global_dominance",
    metadata,
    Column("snapshot_at", DateTime, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("dominance_pct", Double),
    PrimaryKeyConstraint("snapshot_at", "symbol", name="pk_staging_global_dominance"),
)

#: One row per snapshot: which run made it, when it was fetched, and whether the
#: plausibility gate let it into gold ('published') or kept it back ('held', with reasons).
snapshots = Table(
    "snapshots",
    metadata,
    Column("snapshot_at", DateTime, primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("fetched_at", DateTime),
    Column("requested_coins", Integer),
    Column("coin_count", Integer),
    Column("status", String(16), nullable=False),
    Column("reasons", Text),
    Column("decided_at", DateTime, nullable=False),
)
Index("ix_snapshots_status", snapshots.c.status, snapshots.c.snapshot_at)

staging_coin_history = Table(
    "staging_coin_history",
    metadata,
    Column("id", Text, nullable=False),
    Column("ts", DateTime, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("price", Double),
    Column("market_cap", Double),
    Column("total_volume", Double),
    #: In the key: daily points of two providers for the same coin and day are both kept.
    provider_column(),
    PrimaryKeyConstraint("provider", "id", "ts", name="pk_staging_coin_history"),
)

quarantine_crypto_market = Table(
    "quarantine_crypto_market",
    metadata,
    Column("run_id", String(64), nullable=False),
    Column("record_index", Integer, nullable=False),
    Column("snapshot_at", DateTime, nullable=False),
    Column("record_id", Text),
    Column("reason", Text, nullable=False),
    Column("raw_record", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "record_index", name="pk_quarantine"),
)
Index("ix_quarantine_snapshot", quarantine_crypto_market.c.snapshot_at)

# -- gold --------------------------------------------------------------------

crypto_analytics_mart = Table(
    "crypto_analytics_mart",
    metadata,
    Column("id", Text, primary_key=True),
    Column("symbol", Text),
    Column("name", Text),
    Column("image", Text),
    Column("market_cap_rank", Integer),
    Column("current_price", Double),
    Column("market_cap", Double),
    Column("total_volume", Double),
    Column("market_dominance_pct", Double),
    #: 'global' (CoinGecko's whole market, /global) or 'top_n' (the tracked coins, derivative tokens left out).
    Column("dominance_basis", String(32), nullable=False),
    #: The basis's totals, so no page recomputes them, and why the basis is top_n (NULL when global).
    Column("basis_total_market_cap", Double),
    Column("basis_total_volume", Double),
    Column("basis_market_cap_change_percentage_24h", Double),
    Column("basis_note", Text),
    *[Column(name, String(32), nullable=False) for name in CATEGORY_COLUMNS],
    Column("price_change_percentage_1h", Double),
    Column("price_change_percentage_24h", Double),
    Column("price_change_percentage_7d", Double),
    Column("price_change_percentage_30d", Double),
    Column("market_cap_change_percentage_24h", Double),
    #: The derived columns the mart shows, named one by one: a new derived column reaches gold
    #: only when it is added here, to the mart's SQL and to its YAML.
    Column("price_volatility_24h", Double),
    Column("volume_to_mcap_ratio", Double),
    Column("distance_from_ath_pct", Double),
    Column("high_24h", Double),
    Column("low_24h", Double),
    Column("ath", Double),
    Column("circulating_supply", Double),
    Column("sparkline_7d", Text),
    Column("last_updated", DateTime),
    #: last_updated far older than the snapshot (PIPELINE_STALE_RECORD_HOURS): shown, marked, left out of movers.
    Column("stale_record", Boolean),
    Column("snapshot_at", DateTime, nullable=False),
    Column("source", String(16), nullable=False),
    Column("run_id", String(64), nullable=False),
    postgresql_with=SPARKLINE_STORAGE,  # it holds each coin's sparkline too
)
Index("ix_mart_category", crypto_analytics_mart.c.market_cap_category)
Index("ix_mart_rank", crypto_analytics_mart.c.market_cap_rank)
Index("ix_mart_liquidity", crypto_analytics_mart.c.liquidity_category)
Index("ix_mart_trend", crypto_analytics_mart.c.price_trend_category)

market_segment_analysis = Table(
    "market_segment_analysis",
    metadata,
    Column("market_cap_category", String(32), primary_key=True),
    Column("coin_count", Integer, nullable=False),
    Column("total_market_cap", Double),
    Column("market_cap_share_pct", Double),
    Column("market_dominance_pct", Double),
    Column("dominance_basis", String(32)),
    Column("total_volume", Double),
    Column("avg_price_change_24h", Double),
    Column("median_price_change_24h", Double),
    Column("avg_volatility_24h", Double),
    Column("avg_volume_to_mcap_ratio", Double),
    Column("gainers_count", Integer, nullable=False),
    Column("losers_count", Integer, nullable=False),
    Column("snapshot_at", DateTime, nullable=False),
)

market_history = Table(
    "market_history",
    metadata,
    Column("snapshot_at", DateTime, primary_key=True),
    Column("source", String(16), nullable=False),
    Column("coin_count", Integer, nullable=False),
    Column("total_market_cap", Double),
    Column("total_volume", Double),
    Column("btc_dominance_pct", Double),
    Column("eth_dominance_pct", Double),
    Column("stablecoin_dominance_pct", Double),
    Column("others_dominance_pct", Double),
    Column("dominance_basis", String(32), nullable=False),
    Column("market_cap_change_percentage_24h", Double),
    Column("basis_note", Text),
)

GOLD_TABLES = [crypto_analytics_mart, market_segment_analysis, market_history]

# -- reference and operations --------------------------------------------------

ref_stablecoins = Table(
    "ref_stablecoins",
    metadata,
    Column("id", Text, primary_key=True),
    Column("pegged_to", Text, nullable=False),
)

#: What a coin is, from CoinGecko's categories (stablecoins, wrapped, liquid staking, bridged):
#: stablecoins feed the stablecoin share; derivative tokens are left out of top-N totals.
ref_coin_classes = Table(
    "ref_coin_classes",
    metadata,
    Column("id", Text, nullable=False),
    Column("coin_class", String(32), nullable=False),
    Column("origin", String(32), nullable=False),
    Column("updated_at", DateTime, nullable=False),
    PrimaryKeyConstraint("id", "coin_class", name="pk_ref_coin_classes"),
)

pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("trigger", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("stage", String(16)),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("snapshot_at", DateTime),
    Column("bronze_records", Integer),
    Column("silver_rows", Integer),
    Column("gold_rows", Integer),
    Column("quarantined_count", Integer),
    Column("duplicates_dropped", Integer),
    Column("error_message", Text),
    Column("host", String(200)),
    Column("pid", Integer),
    #: Warnings of a run that still succeeded (e.g. a damaged bronze run skipped by a replay).
    Column("notes", Text),
)
Index("ix_pipeline_runs_started", pipeline_runs.c.started_at)

pipeline_lock = Table(
    "pipeline_lock",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("acquired_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

#: The refresh button's queue: the dashboard asks (pending), one server claims the request
#: (the scheduler sidecar, or the dashboard itself when no sidecar is alive) and runs it
#: (claimed), then records how it ended (done | failed | superseded). Written by
#: pipeline.run_requests only.
run_requests = Table(
    "run_requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("requested_at", DateTime, nullable=False),
    Column("requested_by", String(64), nullable=False),
    #: What to fetch: api, sample, or auto (api, else the bundled sample).
    Column("source", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    #: 1 while pending or claimed, NULL after: a unique column, so at most one request is open.
    Column("open_slot", Integer, unique=True),
    Column("claimed_by", String(200)),
    Column("claimed_at", DateTime),
    Column("run_id", String(64)),
    Column("finished_at", DateTime),
    #: How the run ended for the page: success | held | source_error | failed | locked.
    Column("outcome", String(16)),
    #: The latest progress line while claimed; then the error, or why the sample was used.
    Column("message", Text),
)
Index("ix_run_requests_state", run_requests.c.state, run_requests.c.requested_at)

#: One row per live sidecar (and per dashboard while it serves a request itself), beaten every
#: PIPELINE_SIDECAR_HEARTBEAT_SECONDS: how the dashboard knows whether anyone will take its request.
sidecar_heartbeats = Table(
    "sidecar_heartbeats",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("beat_at", DateTime, nullable=False),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime, nullable=False),
)

# -- watchlists (the dashboard's saved lists; no accounts: a list is known by its name) ----------

#: One row per named list. ``coin_ids`` is a JSON array of CoinGecko ids (TEXT, in the user's order):
#: a list is saved, loaded and deleted whole, so one row keeps each save atomic. Written by
#: pipeline.watchlists only.
watchlists = Table(
    "watchlists",
    metadata,
    Column("name", Text, primary_key=True),
    Column("coin_ids", Text, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# -- alerts (rules the user creates on the Alerts page, evaluated after every successful run) ---------
# Written by pipeline.alerts (rules, state, events) and pipeline.webhooks (delivery attempts) only.

#: One row per rule: what to watch (kind, coin, change window) and the threshold it crosses.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("rule_id", Integer, primary_key=True, autoincrement=True),
    #: price_above | price_below | change_above | change_below | volume_spike | dominance_above |
    #: dominance_below | depeg (pipeline.alerts.KINDS).
    Column("kind", String(32), nullable=False),
    Column("coin_id", Text, nullable=False),
    #: change_* only: 1h | 24h | 7d.
    Column("change_window", String(8)),
    #: In the kind's unit: USD, %, percentage points, a z-score, or a fraction of the $1 peg.
    Column("threshold", Double, nullable=False),
    Column("note", Text),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

#: Per enabled rule, the condition at its last evaluation: an alert fires only when it goes from
#: false (or never evaluated) to true. A disabled or deleted rule keeps no row.
alert_state = Table(
    "alert_state",
    metadata,
    Column("rule_id", Integer, primary_key=True, autoincrement=False),
    Column("condition_met", Boolean, nullable=False),
    Column("value", Double),
    #: The gold snapshot last evaluated: the same snapshot is never evaluated twice.
    Column("snapshot_at", DateTime, nullable=False),
    Column("evaluated_at", DateTime, nullable=False),
)

#: Every time a rule fired, kept after the rule is deleted (kind, coin and message are copied here).
alert_events = Table(
    "alert_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("rule_id", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("coin_id", Text, nullable=False),
    Column("threshold", Double),
    Column("value", Double),
    Column("message", Text, nullable=False),
    Column("fired_at", DateTime, nullable=False),
    Column("snapshot_at", DateTime, nullable=False),
    Column("run_id", String(64)),
    #: Webhook delivery (ALERTS_WEBHOOK_URL): tries so far, when it got through, the last error.
    Column("delivery_attempts", Integer, nullable=False),
    Column("delivered_at", DateTime),
    Column("delivery_error", Text),
)
Index("ix_alert_events_fired", alert_events.c.fired_at)

#: One row per webhook delivery attempt (status, error, how long it took).
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("event_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("attempted_at", DateTime, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("elapsed_ms", Double),
    PrimaryKeyConstraint("event_id", "attempt", name="pk_alert_deliveries"),
)

ALERT_TABLES = [alert_rules, alert_state, alert_events, alert_deliveries]

# -- sectors (CoinGecko's categories: pipeline.sectors, pipeline/silver/sectors.py, sql/gold/sector_*) ----

#: One row per category per /coins/categories fetch (hourly by default). ``snapshot_at`` is when
#: the body was received; ``updated_at`` CoinGecko's own time for the row. NULL stays NULL.
staging_sector_snapshot = Table(
    "staging_sector_snapshot",
    metadata,
    Column("category_id", Text, nullable=False),
    Column("snapshot_at", DateTime, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("name", Text),
    Column("market_cap", Double),
    Column("market_cap_change_24h", Double),
    Column("volume_24h", Double),
    #: JSON array of the category's three largest coins' ids (NULL when the body has no top_3_coins_id).
    Column("top_3_coins", Text),
    Column("updated_at", DateTime),
    PrimaryKeyConstraint("category_id", "snapshot_at", name="pk_staging_sector_snapshot"),
)
Index("ix_staging_sector_snapshot_time", staging_sector_snapshot.c.snapshot_at)

#: /coins/categories rows that cannot be a sector row, with the reason (like quarantine_crypto_market).
quarantine_sector_snapshot = Table(
    "quarantine_sector_snapshot",
    metadata,
    Column("run_id", String(64), nullable=False),
    Column("record_index", Integer, nullable=False),
    Column("snapshot_at", DateTime, nullable=False),
    Column("record_id", Text),
    Column("reason", Text, nullable=False),
    Column("raw_record", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "record_index", name="pk_quarantine_sector_snapshot"),
)

#: The tracked sectors' coins (/coins/markets?category=<id>, the first 250 by market cap), replaced
#: per sector on every membership refresh (daily by default).
ref_sector_members = Table(
    "ref_sector_members",
    metadata,
    Column("category_id", Text, nullable=False),
    Column("coin_id", Text, nullable=False),
    Column("seen_at", DateTime, nullable=False),
    Column("run_id", String(64), nullable=False),
    PrimaryKeyConstraint("category_id", "coin_id", name="pk_ref_sector_members"),
)

#: Gold: every category of the newest sector snapshot, ranked by market cap.
sector_ranking = Table(
    "sector_ranking",
    metadata,
    Column("category_id", Text, primary_key=True),
    Column("name", Text),
    #: 1 = largest; NULL when CoinGecko gives the category no market cap.
    Column("sector_rank", Integer),
    Column("market_cap", Double),
    Column("share_of_market_pct", Double),
    Column("market_cap_change_24h", Double),
    Column("volume_24h", Double),
    #: Members (ref_sector_members) among the coins of the current mart; NULL for an untracked sector.
    Column("tracked_coin_count", Integer),
    Column("is_tracked", Boolean, nullable=False),
    Column("top_3_coins", Text),
    Column("snapshot_at", DateTime, nullable=False),
    #: The /global snapshot whose total market cap the share is of (NULL: no usable /global yet).
    Column("global_snapshot_at", DateTime),
)

#: Gold: the tracked sectors' and each snapshot's ten largest sectors' share over time.
sector_history = Table(
    "sector_history",
    metadata,
    Column("category_id", Text, nullable=False),
    Column("snapshot_at", DateTime, nullable=False),
    Column("name", Text),
    Column("market_cap", Double),
    Column("share_of_market_pct", Double),
    Column("market_cap_change_24h", Double),
    Column("volume_24h", Double),
    PrimaryKeyConstraint("category_id", "snapshot_at", name="pk_sector_history"),
)

SECTOR_GOLD_TABLES = [sector_ranking, sector_history]
GOLD_TABLES.extend(SECTOR_GOLD_TABLES)

# -- API budget (pipeline.budget) ---------------------------------------------------------------

#: Every request sent to CoinGecko, retries and failures included, per endpoint (``/coins/markets``,
#: ``/global``, ``/coins/{id}/market_chart`` ...) and UTC day; a month is the sum of its days.
#: Written by pipeline.budget only, once at the end of each run.
api_calls = Table(
    "api_calls",
    metadata,
    Column("endpoint", String(100), nullable=False),
    Column("day", Date, nullable=False),
    Column("calls", Integer, nullable=False),
    #: Requests without an HTTP 200 answer (errors, rate limits, timeouts, dropped connections).
    Column("failures", Integer, nullable=False),
    Column("last_at", DateTime, nullable=False),
    PrimaryKeyConstraint("endpoint", "day", name="pk_api_calls"),
)
Index("ix_api_calls_day", api_calls.c.day)

#: The last successful fetch of each endpoint group (pipeline.budget.CADENCES): what ``due`` reads.
api_fetches = Table(
    "api_fetches",
    metadata,
    Column("group_name", String(32), primary_key=True),
    Column("last_at", DateTime, nullable=False),
)

# -- rollups (pipeline.rollups: maintained in the gold transaction of every run, kept by prune) --------
# History at hourly and daily grain, so a chart of a year reads ~365 rows instead of 35,000
# snapshots, and retention can drop raw snapshots while the rollups keep the history for ever.
# A bucket is named by its start (UTC); open_at/close_at are the first and last point in it.


def _coin_rollup(name: str, *extra: Column[str]) -> Table:
    table = Table(
        name,
        metadata,
        Column("id", Text, nullable=False),
        Column("bucket", DateTime, nullable=False),
        #: current_price of the first and last published snapshot in the bucket, and its extremes.
        Column("open", Double),
        Column("high", Double),
        Column("low", Double),
        Column("close", Double),
        #: As of the last snapshot in the bucket (close_at).
        Column("market_cap", Double),
        Column("total_volume", Double),
        Column("market_cap_rank", Integer),
        #: Snapshots in the bucket (a backfilled day counts its one point).
        Column("points", Integer, nullable=False),
        Column("open_at", DateTime, nullable=False),
        Column("close_at", DateTime, nullable=False),
        *extra,
        PrimaryKeyConstraint("id", "bucket", name=f"pk_{name}"),
    )
    #: The per-run delete of the buckets a run touched (bucket >= :start).
    Index(f"ix_{name}_bucket", table.c.bucket)
    return table


coin_history_hourly = _coin_rollup("coin_history_hourly")
#: origin 'snapshot' (from coin_history_hourly) or 'backfill' (a staging_coin_history day with no snapshot).
coin_history_daily = _coin_rollup("coin_history_daily", Column("origin", String(16), nullable=False))
#: Covers the Compare page's read of the chosen coins' daily closes (WHERE id IN (...), every day for
#: "max"): a run writes every coin's day together, so one coin's days lie one to a heap page. Ten
#: coins over 1,667 days (PostgreSQL, 10M rows of history): 7,129 heap pages read, 40 ms, against
#: 182 index pages, 3.7 ms, read from this index alone (PostgreSQL: once the table is vacuumed,
#: ``db.analyze_after_bulk_change``).
COMPARE_DAILY_INDEX = Index(
    "ix_coin_history_daily_closes",
    coin_history_daily.c.id,
    coin_history_daily.c.bucket,
    coin_history_daily.c.close_at,
    coin_history_daily.c.close,
    coin_history_daily.c.origin,
    coin_history_daily.c.points,
)


def _market_rollup(name: str) -> Table:
    """The last market_history row of each bucket (its columns, snapshot_at = close_at), plus the
    total market cap's open/high/low over the bucket."""
    return Table(
        name,
        metadata,
        Column("bucket", DateTime, primary_key=True),
        Column("snapshot_at", DateTime, nullable=False),
        Column("source", String(16), nullable=False),
        Column("coin_count", Integer, nullable=False),
        Column("total_market_cap", Double),
        Column("total_volume", Double),
        Column("btc_dominance_pct", Double),
        Column("eth_dominance_pct", Double),
        Column("stablecoin_dominance_pct", Double),
        Column("others_dominance_pct", Double),
        Column("dominance_basis", String(32), nullable=False),
        Column("market_cap_change_percentage_24h", Double),
        Column("basis_note", Text),
        Column("market_cap_open", Double),
        Column("market_cap_high", Double),
        Column("market_cap_low", Double),
        Column("points", Integer, nullable=False),
        Column("open_at", DateTime, nullable=False),
    )


market_history_hourly = _market_rollup("market_history_hourly")
market_history_daily = _market_rollup("market_history_daily")

#: Every coin ever published or backfilled, for the Coin page's picker (one row per coin instead of
#: a DISTINCT over millions of snapshots). name/symbol/rank are those of the newest snapshot
#: (named_at; NULL for a coin only backfilled). Never shrinks: prune keeps it.
coins_seen = Table(
    "coins_seen",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text),
    Column("symbol", Text),
    Column("market_cap_rank", Integer),
    Column("named_at", DateTime),
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
)

ROLLUP_TABLES = [coin_history_hourly, coin_history_daily, market_history_hourly, market_history_daily, coins_seen]
