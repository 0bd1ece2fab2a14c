"""Settings, read once from the environment.

This is the only module that reads ``os.environ``. Secrets (the API key, a
database password inside ``DATABASE_URL``) are kept here and never printed:
``Settings.describe()`` masks them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.storage import LocalStore, S3Options, Store, open_store, parse_s3_url

PUBLIC_BASE_URL = "https://api.coingecko.com/api/v3"
PRO_BASE_URL = "https://pro-api.coingecko.com/api/v3"
API_KEY_HEADERS = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}

#: Every environment variable ``Settings.from_env`` reads is one of these or starts with one of
#: these prefixes (tests clear exactly these, so no developer setting leaks into a test).
SETTING_NAMES = ("DATABASE_URL", "DATA_DIR", "VS_CURRENCY", "LAKE_URL", "BRONZE_URL", "DASK_SCHEDULER_ADDRESS")
SETTING_PREFIXES = ("COINGECKO_", "PIPELINE_", "ALERTS_", "AWS_")

#: Sectors whose coins are fetched by default (ids as in /coins/categories/list).
DEFAULT_TRACKED_SECTORS = (
    "layer-1",
    "decentralized-finance-defi",
    "meme-token",
    "artificial-intelligence",
    "stablecoins",
)


#: Coins a snapshot fetches by default (PIPELINE_TOP_N), and all the refresh button ever fetches.
DEFAULT_TOP_N = 250

#: PIPELINE_TOP_N / --top value for the whole market (``Settings.top_n`` is then None).
ALL_COINS = "all"


def is_setting(name: str) -> bool:
    """Is this environment variable one of the pipeline's settings?"""
    return name in SETTING_NAMES or name.startswith(SETTING_PREFIXES)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def parse_top_n(raw: str, name: str = "PIPELINE_TOP_N") -> int | None:
    """A top-N setting: a whole number of coins (at least 1), or ``all`` (None: the whole market)."""
    text = raw.strip().lower()
    if text == ALL_COINS:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of coins or 'all', got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1 (or 'all'), got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    """A fraction from 0 to 1 (e.g. 0.9 = 90 %)."""
    value = _float(env, name, default)
    if value > 1:
        raise ConfigError(f"{name} must be a fraction from 0 to 1 (0.9 = 90 %), got {value}")
    return value


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs: its COPY is the fast bulk path."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def mask_url(url: str) -> str:
    """Hide the password in a database URL so it can be logged."""
    url = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)
    data_dir: Path
    coingecko_base_url: str
    api_key: str | None = field(default=None, repr=False)
    api_plan: str = "demo"
    #: PIPELINE_TOP_N: coins per snapshot by market cap; None (``all``): the whole market, page after page
    #: until a short page (scheduled and command-line runs; the refresh button fetches DEFAULT_TOP_N).
    top_n: int | None = DEFAULT_TOP_N
    vs_currency: str = "usd"
    interval_minutes: int = 15
    refresh_cooldown_seconds: int = 60
    calls_per_minute: float = 25.0
    #: COINGECKO_MONTHLY_CALLS: the plan's monthly call allowance (the demo plan's 10,000); pipeline.budget
    #: counts every call against it and skips optional endpoint groups when the snapshots need the rest.
    monthly_calls: int = 10_000
    request_timeout_seconds: float = 20.0
    fetch_deadline_seconds: float = 300.0
    #: COINGECKO_SWEEP_DEADLINE_SECONDS: a whole-market sweep's fetch deadline (~70 calls at 25 a minute
    #: take ~170 s; the rest is room for retries). A sweep cut by it is held as partial, never published.
    sweep_deadline_seconds: float = 600.0
    max_retries: int = 5
    backoff_base_seconds: float = 2.0
    lock_ttl_seconds: float = 30.0
    replay_workers: int = 1
    #: PIPELINE_REPLAY_BATCH_RECORDS: records per replay batch (a partition: the unit a worker transforms);
    #: None: the database's own size (``pipeline.flow.REPLAY_BATCH_RECORDS``).
    replay_batch_records: int | None = None
    #: PIPELINE_DASK_WORKER_MEMORY: each worker's memory limit in a LocalCluster (``replay --engine dask``
    #: without ``--scheduler``); Dask pauses a worker at 80 % and restarts it at 95 % of it.
    dask_worker_memory: str = "1GiB"
    #: DASK_SCHEDULER_ADDRESS (Dask's own variable): the scheduler ``replay --engine dask`` uses without
    #: ``--scheduler``; None: a LocalCluster started for the replay.
    dask_scheduler: str | None = None
    backoff_cap_minutes: float = 60.0
    failure_banner_runs: int = 3
    max_response_bytes: int = 20 * 1024 * 1024
    #: CoinGecko's coin classes (stablecoins, wrapped, liquid staking, bridged) are fetched at most this often
    #: (0: never, the seed stablecoins are used).
    classes_refresh_hours: float = 24.0
    min_coverage: float = 0.9
    interactive_deadline_seconds: float = 10.0
    interactive_max_retries: int = 1
    #: A record whose last_updated is this much older than its snapshot is flagged stale_record.
    stale_record_hours: float = 6.0
    #: A /global body older (or newer) than this relative to the coins' data time is not used.
    global_max_age_minutes: float = 30.0
    #: The scheduler sidecar beats this often; after three missed beats the dashboard serves its own
    #: refresh requests (pipeline.run_requests).
    sidecar_heartbeat_seconds: float = 5.0
    #: PIPELINE_LOG_FORMAT: "text" for people, "json" (one object a line) for a log collector.
    log_format: str = "text"
    #: PIPELINE_PROVIDER: the folder live runs fetch from (pipeline.providers.registry).
    provider: str = "coingecko"
    #: ALERTS_WEBHOOK_URL: where fired alerts are POSTed as JSON (pipeline.webhooks); None: no delivery.
    #: Kept out of repr: a webhook URL often carries a token.
    alerts_webhook_url: str | None = field(default=None, repr=False)
    #: ALERTS_WEBHOOK_TIMEOUT_SECONDS: the most a run waits for the webhook, all deliveries together.
    alerts_webhook_timeout_seconds: float = 5.0
    #: ALERTS_WEBHOOK_MAX_ATTEMPTS: tries per fired alert (one per successful run) before giving up.
    alerts_webhook_max_attempts: int = 3
    #: Sectors (pipeline.sectors): /coins/categories at most this often (0: never), the tracked sectors'
    #: members (/coins/markets?category=...) at most this often, and which sectors are tracked.
    sectors_every_minutes: float = 60.0
    sector_members_every_minutes: float = 1440.0
    tracked_sectors: tuple[str, ...] = DEFAULT_TRACKED_SECTORS
    #: LAKE_URL: the Delta Lake table every run appends its silver rows to (pipeline.lake): a local
    #: folder or ``s3://bucket/prefix``; None: no lake.
    lake_url: str | None = None
    #: BRONZE_URL: where bronze lives; None: the local ``DATA_DIR/raw`` (``raw_dir``), else ``s3://bucket/prefix``
    #: on any S3-compatible store, reached with ``s3`` (the AWS_* settings; its keys are never printed).
    bronze_url: str | None = None
    s3: S3Options = field(default_factory=S3Options, repr=False)

    @property
    def lake_storage_options(self) -> tuple[tuple[str, str], ...]:
        """How an ``s3://`` lake is opened: the AWS_* settings bronze uses, under delta-rs's names
        (holds the secret key: never printed). Empty for a lake in a folder."""
        if self.lake_url is None or not self.lake_url.startswith(("s3://", "s3a://")):
            return ()
        return tuple(sorted(self.s3.delta_options().items()))

    @property
    def raw_dir(self) -> Path:
        """Local bronze lives in data/raw/YYYY-MM-DD/<run id>/ (BRONZE_URL unset)."""
        return self.data_dir / "raw"

    @property
    def bronze(self) -> Store:
        """Where bronze lives: the local ``raw_dir`` or the object store in ``bronze_url``."""
        if self.bronze_url is None:
            return LocalStore(self.raw_dir)
        return open_store(self.bronze_url, self.s3)

    @property
    def bronze_location(self) -> str:
        """Where bronze lives, printable (no credentials)."""
        return self.bronze.location()

    @property
    def button_top_n(self) -> int:
        """Coins the refresh button fetches: ``top_n``, but never the whole market (a person is waiting)."""
        return DEFAULT_TOP_N if self.top_n is None else self.top_n

    @property
    def stale_record_after(self) -> timedelta:
        return timedelta(hours=self.stale_record_hours)

    @property
    def api_key_header(self) -> str:
        return API_KEY_HEADERS[self.api_plan]

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """Settings safe to print: the key and the DB password are masked."""
        return {
            "database_url": mask_url(self.database_url),
            "data_dir": str(self.data_dir),
            "coingecko_base_url": self.coingecko_base_url,
            "api_key": "set" if self.api_key else "not set",
            "api_plan": self.api_plan,
            "top_n": ALL_COINS if self.top_n is None else self.top_n,
            "vs_currency": self.vs_currency,
            "interval_minutes": self.interval_minutes,
            "lake_url": mask_url(self.lake_url) if self.lake_url else "not set",
            "bronze": self.bronze_location,
            "aws_access_key_id": "set" if self.s3.access_key else "not set",
            "aws_secret_access_key": "set" if self.s3.secret_key else "not set",
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("DATA_DIR") or "data")
        plan = (env.get("COINGECKO_API_PLAN") or "demo").strip().lower()
        if plan not in API_KEY_HEADERS:
            raise ConfigError(f"COINGECKO_API_PLAN must be 'demo' or 'pro', got {plan!r}")
        api_key = (env.get("COINGECKO_API_KEY") or "").strip() or None
        default_base = PRO_BASE_URL if plan == "pro" and api_key else PUBLIC_BASE_URL
        database_url = env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'warehouse.db'}"
        if not re.match(r"^(sqlite|postgres(ql)?)(\+\w+)?://", database_url):
            raise ConfigError("DATABASE_URL must start with sqlite:/// or postgresql://")
        lake_url = (env.get("LAKE_URL") or "").strip().rstrip("/") or None
        bronze_url = _bronze_url(env)
        return cls(
            database_url=normalize_database_url(database_url),
            data_dir=data_dir,
            coingecko_base_url=(env.get("COINGECKO_BASE_URL") or default_base).rstrip("/"),
            api_key=api_key,
            api_plan=plan,
            top_n=parse_top_n(env["PIPELINE_TOP_N"]) if (env.get("PIPELINE_TOP_N") or "").strip() else DEFAULT_TOP_N,
            vs_currency=(env.get("VS_CURRENCY") or "usd").strip().lower(),
            interval_minutes=_int(env, "PIPELINE_INTERVAL_MINUTES", 15),
            refresh_cooldown_seconds=_int(env, "PIPELINE_REFRESH_COOLDOWN_SECONDS", 60, minimum=0),
            calls_per_minute=_float(env, "COINGECKO_CALLS_PER_MINUTE", 25.0),
            monthly_calls=_int(env, "COINGECKO_MONTHLY_CALLS", 10_000),
            request_timeout_seconds=_float(env, "COINGECKO_TIMEOUT_SECONDS", 20.0),
            fetch_deadline_seconds=_float(env, "COINGECKO_DEADLINE_SECONDS", 300.0),
            sweep_deadline_seconds=_float(env, "COINGECKO_SWEEP_DEADLINE_SECONDS", 600.0),
            max_retries=_int(env, "COINGECKO_MAX_RETRIES", 5, minimum=0),
            backoff_base_seconds=_float(env, "COINGECKO_BACKOFF_SECONDS", 2.0),
            lock_ttl_seconds=_float(env, "PIPELINE_LOCK_TTL_SECONDS", 30.0),
            replay_workers=_int(env, "PIPELINE_REPLAY_WORKERS", 1, minimum=0),
            replay_batch_records=(
                _int(env, "PIPELINE_REPLAY_BATCH_RECORDS", 0) if env.get("PIPELINE_REPLAY_BATCH_RECORDS") else None
            ),
            dask_worker_memory=(env.get("PIPELINE_DASK_WORKER_MEMORY") or "1GiB").strip(),
            dask_scheduler=(env.get("DASK_SCHEDULER_ADDRESS") or "").strip() or None,
            backoff_cap_minutes=_float(env, "PIPELINE_BACKOFF_CAP_MINUTES", 60.0),
            failure_banner_runs=_int(env, "PIPELINE_FAILURE_BANNER_RUNS", 3),
            max_response_bytes=_int(env, "COINGECKO_MAX_RESPONSE_BYTES", 20 * 1024 * 1024),
            min_coverage=_share(env, "PIPELINE_MIN_COVERAGE", 0.9),
            classes_refresh_hours=_float(env, "PIPELINE_CLASSES_REFRESH_HOURS", 24.0),
            interactive_deadline_seconds=_float(env, "COINGECKO_INTERACTIVE_DEADLINE_SECONDS", 10.0),
            interactive_max_retries=_int(env, "COINGECKO_INTERACTIVE_MAX_RETRIES", 1, minimum=0),
            stale_record_hours=_float(env, "PIPELINE_STALE_RECORD_HOURS", 6.0),
            global_max_age_minutes=_float(env, "PIPELINE_GLOBAL_MAX_AGE_MINUTES", 30.0),
            sidecar_heartbeat_seconds=_float(env, "PIPELINE_SIDECAR_HEARTBEAT_SECONDS", 5.0),
            log_format=_log_format(env),
            provider=(env.get("PIPELINE_PROVIDER") or "coingecko").strip(),
            alerts_webhook_url=(env.get("ALERTS_WEBHOOK_URL") or "").strip() or None,
            alerts_webhook_timeout_seconds=_float(env, "ALERTS_WEBHOOK_TIMEOUT_SECONDS", 5.0),
            alerts_webhook_max_attempts=_int(env, "ALERTS_WEBHOOK_MAX_ATTEMPTS", 3),
            sectors_every_minutes=_float(env, "PIPELINE_SECTORS_EVERY_MINUTES", 60.0),
            sector_members_every_minutes=_float(env, "PIPELINE_SECTOR_MEMBERS_EVERY_MINUTES", 1440.0),
            tracked_sectors=_sector_ids(env),
            lake_url=lake_url,
            bronze_url=bronze_url,
            s3=_s3_options(env, bronze_url),
        )


def _bronze_url(env: Mapping[str, str]) -> str | None:
    """BRONZE_URL: unset or empty for the local ``DATA_DIR/raw``; a folder, ``file://`` or ``s3://bucket/prefix``."""
    raw = (env.get("BRONZE_URL") or "").strip()
    if not raw:
        return None
    if raw.startswith("s3://"):
        parse_s3_url(raw)  # ConfigError when malformed, before any work
    else:
        open_store(raw)
    return raw


def _s3_options(env: Mapping[str, str], bronze_url: str | None) -> S3Options:
    """The AWS_* settings, the one reader of them (bronze and the lake); an s3:// BRONZE_URL needs
    both keys (a ConfigError before any work). AWS_REGION wins over AWS_DEFAULT_REGION, as in the AWS SDKs."""

    def value(name: str) -> str | None:
        return (env.get(name) or "").strip() or None

    options = S3Options(
        endpoint_url=value("AWS_ENDPOINT_URL"),
        region=value("AWS_REGION") or value("AWS_DEFAULT_REGION"),
        access_key=value("AWS_ACCESS_KEY_ID"),
        secret_key=value("AWS_SECRET_ACCESS_KEY"),
        session_token=value("AWS_SESSION_TOKEN"),
        allow_http=value("AWS_ALLOW_HTTP"),
    )
    if bronze_url is not None and bronze_url.startswith("s3://"):
        missing = [
            name
            for name, value in (
                ("AWS_ACCESS_KEY_ID", options.access_key),
                ("AWS_SECRET_ACCESS_KEY", options.secret_key),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"BRONZE_URL is an object store ({bronze_url}): set {' and '.join(missing)}")
        if options.endpoint_url and not re.match(r"^https?://[^/\s]+/?$", options.endpoint_url):
            raise ConfigError("AWS_ENDPOINT_URL must be http(s)://host[:port]")
    return options


def _sector_ids(env: Mapping[str, str]) -> tuple[str, ...]:
    """PIPELINE_TRACKED_SECTORS: CoinGecko category ids, comma-separated (empty: the default handful)."""
    raw = env.get("PIPELINE_TRACKED_SECTORS") or ""
    ids = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    for sector in ids:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,99}", sector):
            raise ConfigError(f"PIPELINE_TRACKED_SECTORS: {sector[:40]!r} is not a CoinGecko category id")
    return ids or DEFAULT_TRACKED_SECTORS


def provider_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """PIPELINE_PROVIDER_PATH: more folders holding provider folders (separated like PATH).

    Read on its own, not through Settings: a replay worker finds the provider of a bronze
    run it reads without being handed the settings."""
    raw = (os.environ if env is None else env).get("PIPELINE_PROVIDER_PATH") or ""
    return [Path(part) for part in raw.split(os.pathsep) if part.strip()]


def _log_format(env: Mapping[str, str]) -> str:
    value = (env.get("PIPELINE_LOG_FORMAT") or "text").strip().lower()
    if value not in ("text", "json"):
        raise ConfigError(f"PIPELINE_LOG_FORMAT must be 'text' or 'json', got {value!r}")
    return value
