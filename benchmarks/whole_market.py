"""Processing one whole-market snapshot (issue 11 item 3): silver + gold for ~17,000 coins, fetch excluded.

Target: under 3 s on SQLite and on PostgreSQL. One synthetic snapshot of ``--coins`` coins
(``benchmarks.benchgen``: real recorded records cloned down to micro-caps, 68 pages of 250
plus /global, written to bronze as a live run writes it) is processed as a live run does after
its fetch: silver (transform + load), the plausibility gate and the snapshots ledger, then gold
from the run's snapshot on (``build_gold(since=...)``, as every run but one a day does).
``--full-gold`` rebuilds all of gold instead and refreshes PostgreSQL's statistics after it, as the
run that finds new coin classes (once a day at most) and a replay do. A cold database each time
(schema created first, not timed), so gold has nothing else to read.

    python -m benchmarks.whole_market                  # 17,000 coins, SQLite and PostgreSQL
    python -m benchmarks.whole_market --full-gold      # the daily run's full gold rebuild instead
    python -m benchmarks.whole_market --profile 25     # and the top 25 cProfile entries per database
    python -m benchmarks.whole_market --pg-admin ''    # SQLite only (--no-sqlite: PostgreSQL only)

Last line: ``whole_market_coins=<n> sqlite_s=<s> postgresql_s=<p>``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench import PgServer
from benchmarks.benchgen import generate_bronze
from pipeline import bronze
from pipeline import snapshots as ledger
from pipeline.config import Settings
from pipeline.db import make_engine, prepare_database
from pipeline.flow import RunResult, _load_silver, _record_snapshots
from pipeline.gold import build_gold

#: About how many coins CoinGecko's /coins/markets lists (pipeline.providers.coingecko.settings).
DEFAULT_COINS = 17_000
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _quiet(stage: str, message: str) -> None:
    pass


def process_snapshot(settings: Settings, run: bronze.BronzeRun, *, full_gold: bool = False) -> dict[str, float]:
    """Silver, gate + ledger, gold for one bronze run, as ``run_pipeline`` does after the fetch; seconds per stage.

    Gold from the run's snapshot on, as a run's gold stage is (``full_gold``: all of it, then ANALYZE)."""
    engine = prepare_database(settings)
    times: dict[str, float] = {}
    start = time.perf_counter()
    result = RunResult(run_id=run.run_id, source="api")
    _load_silver(engine, [run], result, _quiet, workers=0)
    times["silver"] = time.perf_counter() - start
    mark = time.perf_counter()
    held = ledger.gate(engine, [{"snapshot_at": run.snapshot_at, "run_id": run.run_id, "requested": None}])
    _record_snapshots(engine, [run], requested=None, held=held)
    times["gate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    rows = build_gold(engine, since=None if full_gold else run.snapshot_at)
    times["gold"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - start
    if held or result.silver_rows + result.quarantined + result.duplicates_dropped < run.markets_record_count:
        raise RuntimeError(f"the snapshot did not go through: held={held}, silver={result.silver_rows}")
    if rows.get("crypto_analytics_mart", 0) < result.silver_rows:
        raise RuntimeError(f"gold has {rows} for {result.silver_rows} silver rows")
    return times


def _timed(label: str, action: Callable[[], dict[str, float]], profile: int) -> dict[str, float]:
    if not profile:
        return action()
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return action()
    finally:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(profile)
        print(f"--- cProfile, {label} (cumulative) ---\n{out.getvalue()}")


def bench_whole_market_snapshot(
    coins: int = DEFAULT_COINS,
    *,
    pg_admin: str | None = DEFAULT_PG_ADMIN,
    profile: int = 0,
    sqlite: bool = True,
    full_gold: bool = False,
) -> dict[str, dict[str, float]]:
    """Seconds to process one ``coins``-coin snapshot (silver + gold, fetch excluded) per database; prints them."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="whole-market-") as folder:
        data_dir = Path(folder) / "data"
        generate_bronze(data_dir / "raw", coins, 1, sparklines="all")
        (run,) = [r for r in bronze.healthy_runs(data_dir / "raw")[0]]
        print(f"one snapshot of {run.markets_record_count:,} coins, {len(run.manifest['entries'])} bodies")
        targets = {"sqlite": f"sqlite:///{folder}/warehouse.db"} if sqlite else {}
        pg = PgServer(pg_admin) if pg_admin else None
        try:
            if pg is not None:
                targets["postgresql"] = pg.create("whole_market")
            for name, url in targets.items():
                settings = Settings.from_env({"DATABASE_URL": url, "DATA_DIR": str(data_dir)})
                prepare_database(settings)  # the schema is not part of the timing
                if pg is not None and name == "postgresql":
                    pg.checkpoint()
                results[name] = _timed(name, lambda s=settings: process_snapshot(s, run, full_gold=full_gold), profile)
                stages = ", ".join(f"{k} {v:.2f}" for k, v in results[name].items() if k != "total")
                print(f"{name}: {results[name]['total']:.2f} s ({stages})")
                make_engine(settings.database_url).dispose()
        finally:
            if pg is not None:
                pg.drop_all()
    line = f"whole_market_coins={coins} " + " ".join(f"{n}_s={r['total']:.2f}" for n, r in results.items())
    print(line)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.whole_market", description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=DEFAULT_COINS, help="coins in the snapshot (default 17,000)")
    parser.add_argument("--pg-admin", default=DEFAULT_PG_ADMIN, help="PostgreSQL server URL ('' to skip PostgreSQL)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N cProfile entries")
    parser.add_argument(
        "--full-gold", action="store_true", help="rebuild all of gold (the once-a-day run) instead of from the snapshot"
    )
    args = parser.parse_args(argv)
    bench_whole_market_snapshot(
        args.coins,
        pg_admin=args.pg_admin or None,
        profile=args.profile,
        sqlite=not args.no_sqlite,
        full_gold=args.full_gold,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
