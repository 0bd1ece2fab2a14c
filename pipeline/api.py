"""The pipeline as the dashboard sees it: the one ``pipeline`` module ``dashboard/`` imports.

Everything the Streamlit app needs from the pipeline package is named here, so the
dashboard's dependency on the pipeline is this list and nothing else (a layout test
checks that no dashboard module imports another ``pipeline`` module):

* settings and their errors (``Settings``, ``ConfigError``, ``mask_url``);
* the tables the dashboard reads, for the statements in ``dashboard/data.py`` (the only
  dashboard module that talks SQL), and the engine they run on;
* the category bands and their labels;
* freshness, the run log's liveness rule and the lock holder;
* for the refresh button: the run stages, the errors a run raises and ``run_pipeline``
  (imported on first use: the whole ETL is not loaded by a page that only reads).

Functions that touch the database are listed in ``READS_DATABASE``: outside
``dashboard/data.py`` no dashboard module may call them (the layout test again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import run_requests
from pipeline.alerts import KINDS as ALERT_KINDS
from pipeline.alerts import WINDOWS as ALERT_WINDOWS
from pipeline.alerts import (
    AlertRuleError,
    create_rule,
    delete_rule,
    set_rule_enabled,
    stablecoin_ids,
)
from pipeline.budget import WARN_SHARE as BUDGET_WARN_SHARE
from pipeline.budget import Usage as BudgetUsage
from pipeline.budget import month_end as budget_month_end
from pipeline.budget import month_start as budget_month_start
from pipeline.budget import plan as budget_plan
from pipeline.budget import usage as budget_usage
from pipeline.categories import (
    LABELS,
    LIQUIDITY_BANDS,
    LIQUIDITY_CATEGORIES,
    MARKET_CAP_BANDS,
    MARKET_CAP_CATEGORIES,
    PRICE_TREND_BANDS,
    PRICE_TREND_CATEGORIES,
    SHORT_LABELS,
    UNKNOWN,
    UNKNOWN_LABEL,
    Band,
    Scale,
    scale_for,
)
from pipeline.config import Settings, mask_url
from pipeline.db import DRIVER_ERRORS, make_engine, prepare_database, utcnow
from pipeline.errors import ConfigError, DatabaseUnavailable, PipelineError, RunLocked, SnapshotHeld, SourceError
from pipeline.runs import LOCK_NAME, STAGES, current_holder, get_run, reap_dead_runs
from pipeline.schema import (
    alert_events,
    alert_rules,
    api_calls,
    coin_history_daily,
    coin_history_hourly,
    coins_seen,
    crypto_analytics_mart,
    market_history,
    market_history_daily,
    market_history_hourly,
    market_segment_analysis,
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
from pipeline.status import Freshness, data_freshness, format_age, freshness_statement
from pipeline.watchlists import (
    Watchlist,
    WatchlistError,
    delete_watchlist,
    list_watchlists,
    load_watchlist,
    parse_ids,
    save_watchlist,
)

if TYPE_CHECKING:
    from pipeline.flow import run_pipeline

__all__ = [
    # settings
    "ConfigError",
    "Settings",
    "mask_url",
    # the database: engine, driver errors, the tables the dashboard reads
    "DRIVER_ERRORS",
    "DatabaseUnavailable",
    "make_engine",
    "utcnow",
    "crypto_analytics_mart",
    "market_history",
    "market_segment_analysis",
    "pipeline_lock",
    "pipeline_runs",
    "quarantine_crypto_market",
    "snapshots",
    "staging_coin_history",
    "staging_crypto_market",
    "staging_global_market",
    "staging_sparkline",
    # categories
    "Band",
    "LABELS",
    "LIQUIDITY_BANDS",
    "LIQUIDITY_CATEGORIES",
    "MARKET_CAP_BANDS",
    "MARKET_CAP_CATEGORIES",
    "PRICE_TREND_BANDS",
    "PRICE_TREND_CATEGORIES",
    "SHORT_LABELS",
    "Scale",
    "UNKNOWN",
    "UNKNOWN_LABEL",
    "scale_for",
    # freshness and the run log
    "Freshness",
    "LOCK_NAME",
    "STAGES",
    "current_holder",
    "data_freshness",
    "format_age",
    "freshness_statement",
    "get_run",
    "reap_dead_runs",
    # running the pipeline (the refresh button): queue a request, or serve it here without a sidecar
    "prepare_database",
    "run_requests",
    "PipelineError",
    "RunLocked",
    "SnapshotHeld",
    "SourceError",
    "run_pipeline",
    # alerts (rules saved from the Alerts page; evaluated by the pipeline after every successful run)
    "ALERT_KINDS",
    "ALERT_WINDOWS",
    "AlertRuleError",
    "alert_events",
    "alert_rules",
    "create_rule",
    "delete_rule",
    "set_rule_enabled",
    "stablecoin_ids",
    # watchlists (named lists of coin ids, saved from the dashboard)
    "Watchlist",
    "WatchlistError",
    "delete_watchlist",
    "list_watchlists",
    "load_watchlist",
    "parse_ids",
    "save_watchlist",
    # the API budget (pure: the month's use against COINGECKO_MONTHLY_CALLS, the plan; the counts are api_calls)
    "BUDGET_WARN_SHARE",
    "BudgetUsage",
    "api_calls",
    "budget_month_end",
    "budget_month_start",
    "budget_plan",
    "budget_usage",
    # sectors (CoinGecko's categories: gold sector_ranking / sector_history, the tracked sectors' members)
    "ref_sector_members",
    "sector_history",
    "sector_ranking",
    # rollups (pipeline.rollups: history at hourly and daily grain, every coin ever seen)
    "coin_history_daily",
    "coin_history_hourly",
    "coins_seen",
    "market_history_daily",
    "market_history_hourly",
]

#: The names above that open a connection or run a pipeline: only ``dashboard/data.py`` (reads) and
#: ``dashboard/refresh.py`` (run requests) may call them.
READS_DATABASE = frozenset(
    {"make_engine", "prepare_database", "current_holder", "data_freshness", "get_run", "reap_dead_runs", "run_pipeline"}
    | {"create_rule", "delete_rule", "set_rule_enabled", "stablecoin_ids"}
    | {"save_watchlist", "load_watchlist", "list_watchlists", "delete_watchlist"}
)


def __getattr__(name: str) -> object:
    """``run_pipeline`` on first use: importing the ETL (HTTP client, bronze, silver, gold) costs a second."""
    if name == "run_pipeline":
        from pipeline.flow import run_pipeline

        return run_pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
