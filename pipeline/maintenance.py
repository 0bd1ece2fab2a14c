"""Maintenance commands: ``python -m pipeline backfill``, ``prune`` and ``verify``.

``pipeline.cli`` imports this module and calls :func:`register` to add them.
Failures are raised as the named errors of ``pipeline.errors``; ``cli.main``
prints them as one line with their exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Protocol

from pipeline import logs
from pipeline.config import Settings
from pipeline.errors import ConfigError

Command = Callable[[argparse.Namespace, Settings], int]


class AddCommand(Protocol):
    """``cli.build_parser``'s helper: add a subcommand (``writes``: it takes the lock)."""

    def __call__(
        self, name: str, func: Command, help_text: str, *, writes: bool = False
    ) -> argparse.ArgumentParser: ...


def _progress_printer() -> Callable[[int, int, str, str], None]:
    """One progress line per coin; when progress goes to a terminal the line starts with a text progress bar."""
    tty = logs.progress_on_terminal()

    def show(done: int, total: int, coin_id: str, message: str) -> None:
        width = len(str(total))
        bar = ""
        if tty:
            filled = round(20 * done / total) if total else 20
            bar = f"{'#' * filled}{'.' * (20 - filled)} {100 * done / total if total else 100:5.1f}% "
        logs.progress(None, f"[{done:>{width}}/{total}] {bar}{coin_id}: {message}")

    return show


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    """Build daily history (price, market cap, volume) for the tracked coins from /coins/{id}/market_chart.

    By default the coins are the current gold mart's, by market cap rank, top
    PIPELINE_TOP_N. Calls are paced by COINGECKO_CALLS_PER_MINUTE (about 10 min
    for 250 coins at 25 a minute) and hold the pipeline lock meanwhile. Every body
    is kept in bronze; each coin is loaded into staging_coin_history as soon as it
    arrives, so an interrupted backfill resumes where it stopped: coins whose
    history already covers the window are skipped.

    Example: python -m pipeline backfill --days 365 --coins 100
    """
    from pipeline.backfill import check_days, parse_ids, run_backfill

    check_days(settings, args.days)
    coin_ids = parse_ids(args.ids) if args.ids else None
    if args.coins is not None and args.coins < 1:
        raise ConfigError(f"--coins must be at least 1, got {args.coins}")
    result = run_backfill(
        settings, days=args.days, coin_ids=coin_ids, top=args.coins, trigger="cli", progress=_progress_printer()
    )
    logs.outcome(f"backfill {result.run_id} succeeded: {result.summary()}", run_id=result.run_id)
    return 0


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    """Remove silver rows and bronze folders older than --keep-days, never what the current gold shows.

    Silver: staging_crypto_market, staging_global_market, quarantine_crypto_market,
    staging_sparkline (by snapshot) and staging_coin_history (by point time), except the
    snapshot gold was built from. Bronze: run folders older than the cutoff, except
    the runs gold came from; empty date folders too. Gold is then rebuilt so
    market_history drops the pruned snapshots. --dry-run only reports.

    Example: python -m pipeline prune --keep-days 90 --dry-run
    """
    from pipeline.prune import prune

    report = prune(settings, keep_days=args.keep_days, dry_run=args.dry_run)
    print("\n".join(report.lines()))
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Check every bronze run's files against its manifest: bodies (size, sha256) and Parquet copies.

    Prints one line per damaged run (run id, folder, what is wrong) and per
    incomplete one (no manifest: the run stopped before finishing, not an error),
    then "N runs checked, M damaged". Exits 0 when every run is healthy, 1 when
    any is damaged. Reads files only (no database, no lock). --quick skips the
    Parquet copies; --run checks one run.

    Example: python -m pipeline verify --run 20250101T000000Z-abc123
    """
    from pipeline.errors import BronzeError
    from pipeline.verify import verify

    report = verify(settings.bronze, deep=args.deep, run_id=args.run)
    print("\n".join(report.lines()), flush=True)
    if not report.healthy:
        raise BronzeError(f"{len(report.damaged)} of {report.checked} bronze runs damaged (listed above)")
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Bring saved CoinGecko bodies through bronze, silver and gold, as a run of source 'import'.

    PATH: files or folders (walked for *.json) holding /coins/markets bodies (a JSON array of
    coin objects, as the API returns it) and /global bodies (an object with data.total_market_cap),
    told apart by their shape. Each markets body becomes one snapshot at its data's time (the
    median last_updated of its records) unless --at gives it; a /global imported with it joins
    the markets body nearest its updated_at (within 12 h). Importing the same body again changes
    nothing. A file that cannot be imported is listed and the others go on; exit 1 only when
    none could be used. Holds the pipeline lock; gold is rebuilt once at the end.

    Example: python -m pipeline import ~/saved/markets ~/saved/global_2025-04-07.json
    """
    from pipeline.importer import import_bodies, parse_at

    at = parse_at(args.at) if args.at else None
    result = import_bodies(
        settings, args.paths, at=at, vs_currency=args.vs_currency, trigger="cli", progress=logs.progress
    )
    print("\n".join(result.lines()), flush=True)
    return 0


def register(add: AddCommand) -> None:
    """Add the ``backfill``, ``prune``, ``verify`` and ``import`` subcommands (``add`` is cli.build_parser's helper)."""
    imp = add("import", cmd_import, "import saved /coins/markets and /global bodies (files or folders)", writes=True)
    imp.add_argument("paths", nargs="+", metavar="PATH", help="files or folders of saved response bodies")
    imp.add_argument(
        "--at",
        default=None,
        metavar="ISO_TIME",
        help="the data's time (UTC unless an offset is given), for a single markets body",
    )
    imp.add_argument(
        "--vs-currency",
        default="usd",
        metavar="CODE",
        help="the quote currency the bodies were requested in (default usd)",
    )

    backfill = add("backfill", cmd_backfill, "daily history for the tracked coins from market_chart", writes=True)
    backfill.add_argument(
        "--days",
        type=int,
        default=365,
        metavar="N",
        help="days of history (default 365, the most the free plan serves)",
    )
    which = backfill.add_mutually_exclusive_group()
    which.add_argument(
        "--coins",
        type=int,
        default=None,
        metavar="N",
        help="the top N tracked coins by market cap rank (default PIPELINE_TOP_N, 250)",
    )
    which.add_argument(
        "--ids", default=None, metavar="ID,ID", help="these CoinGecko coin ids instead, e.g. bitcoin,ethereum"
    )

    prune = add("prune", cmd_prune, "remove old silver rows and bronze folders", writes=True)
    prune.add_argument(
        "--keep-days",
        type=int,
        required=True,
        metavar="N",
        help="keep the last N days (the current gold snapshot is always kept)",
    )
    prune.add_argument("--dry-run", action="store_true", help="only report what would be removed")

    verify = add("verify", cmd_verify, "check bronze files against their manifests")
    depth = verify.add_mutually_exclusive_group()
    depth.add_argument(
        "--deep", dest="deep", action="store_true", default=True, help="bodies and Parquet copies (the default)"
    )
    depth.add_argument("--quick", dest="deep", action="store_false", help="bodies only, skip the Parquet copies")
    verify.add_argument("--run", default=None, metavar="RUN_ID", help="check only this run")

    from pipeline.publish import add_arguments, cmd_publish

    add_arguments(add("publish", cmd_publish, "publish a snapshot the plausibility gate held (--force)", writes=True))
