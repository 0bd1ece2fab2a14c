"""Command line: ``python -m pipeline run | replay | schedule | status | schema``.

Parses arguments, calls one function per command, and turns named errors into
one clear line and a non-zero exit code (``--verbose`` shows the details).

Progress and each command's closing line are log records (``pipeline.logs``): text for
people by default, ``--log-format json`` (or PIPELINE_LOG_FORMAT=json) for a log
collector, ``--quiet`` for warnings only. What a command was asked to show (``status``,
``schema``, the reports of ``prune``, ``verify`` and ``import``) is its output on stdout,
and an error is one line on stderr, whatever the format.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from pipeline import interrupts, logs, maintenance
from pipeline.config import Settings, parse_top_n
from pipeline.errors import ConfigError, Interrupted, PipelineError, RunLocked
from pipeline.maintenance import Command

log = logs.get_logger("pipeline.cli")


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Fetch the newest market data and rebuild silver and gold.

    Example: python -m pipeline run --source sample --top 100
    Example: python -m pipeline run --top all   (the whole market: ~70 pages, ~3 minutes on the free plan)
    """
    from pipeline.flow import run_pipeline

    if hasattr(args, "top"):  # --top given: it overrides PIPELINE_TOP_N (None: the whole market)
        settings = settings.with_overrides(top_n=args.top)
    result = run_pipeline(settings, trigger=args.trigger, source=args.source, progress=logs.progress)
    basis = "" if result.global_basis else " (dominance from tracked coins: /global unavailable)"
    logs.outcome(
        f"run {result.run_id} succeeded: {result.silver_rows} silver rows, {result.quarantined} quarantined, "
        f"snapshot {result.snapshot_at:%Y-%m-%d %H:%M:%S} UTC, source {result.source}{basis}",
        run_id=result.run_id,
    )
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild silver and gold from every bronze file on disk, without the network.

    Example: python -m pipeline replay --engine dask --scheduler tcp://127.0.0.1:8786
    """
    from pipeline import engines
    from pipeline.flow import replay

    workers = args.workers if args.workers is not None else (settings.replay_workers if args.engine == "local" else 2)
    chosen = engines.plan(
        args.engine,
        workers=workers,
        scheduler=args.scheduler or (settings.dask_scheduler if args.engine == "dask" else None),
        worker_memory=settings.dask_worker_memory,
        timeout=engines.CONNECT_TIMEOUT_SECONDS,
    )
    result = replay(settings, trigger="cli", progress=logs.progress, plan=chosen)
    logs.outcome(
        f"replay {result.run_id} succeeded: {len(result.bronze_runs)} bronze runs, {result.silver_rows} silver rows, "
        f"{result.quarantined} quarantined",
        run_id=result.run_id,
    )
    return 0


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    """Run the pipeline now and then every PIPELINE_INTERVAL_MINUTES until SIGTERM.

    Example: PIPELINE_INTERVAL_MINUTES=5 python -m pipeline schedule
    """
    from pipeline.scheduler import run_forever

    return run_forever(settings, source=args.source, interval_minutes=args.interval)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Show the last runs, the data's freshness and who holds the lock.

    Example: python -m pipeline status --limit 5
    """
    from pipeline.status import format_status, freshness

    print(format_status(settings, limit=args.limit))
    if args.check:
        fresh = freshness(settings)
        return 0 if fresh and not fresh["stale"] else 1
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    """Print the CREATE statements for a dialect (what sql/schema/ holds), or apply them.

    Example: python -m pipeline schema --dialect postgresql > sql/schema/postgresql.sql
    """
    from pipeline.db import ensure_schema, make_engine, schema_ddl

    if args.apply:
        version = ensure_schema(make_engine(settings.database_url))
        logs.outcome(f"schema is at version {version}")
    else:
        sys.stdout.write(schema_ddl(args.dialect))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="CoinGecko market data → bronze files → silver history → gold marts.",
    )
    _add_logging_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str, *, writes: bool = False) -> argparse.ArgumentParser:
        """A subcommand; ``writes``: it takes the lock, so SIGTERM/SIGINT interrupt it cleanly (run recorded
        as failed, lock released)."""
        p = sub.add_parser(
            name, help=help_text, description=func.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.set_defaults(func=func, writes=writes)
        _add_logging_options(p, default=argparse.SUPPRESS)
        return p

    run = add("run", cmd_run, "fetch now and rebuild silver and gold", writes=True)
    run.add_argument(
        "--source",
        choices=["api", "sample"],
        default="api",
        help="live CoinGecko API (default) or the bundled offline sample",
    )
    run.add_argument(
        "--top",
        type=_top_n,
        default=argparse.SUPPRESS,
        metavar="N|all",
        help="coins to fetch by market cap, or all: the whole market (default PIPELINE_TOP_N, 250)",
    )
    run.add_argument("--trigger", choices=["cli", "schedule", "button"], default="cli", help=argparse.SUPPRESS)

    replay = add("replay", cmd_replay, "rebuild silver and gold from bronze files, offline", writes=True)
    replay.add_argument(
        "--engine",
        choices=["local", "dask"],
        default="local",
        help="where batch transforms run: local workers (default) or a Dask cluster",
    )
    replay.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:8786",
        help="the Dask scheduler (default DASK_SCHEDULER_ADDRESS; neither: a LocalCluster started for the replay)",
    )
    replay.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="local workers: threads into PostgreSQL, processes into SQLite (default PIPELINE_REPLAY_WORKERS); "
        "or LocalCluster workers (default 2)",
    )

    schedule = add("schedule", cmd_schedule, "the sidecar: run now, then every interval")
    schedule.add_argument("--source", choices=["api", "sample"], default="api")
    schedule.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="MINUTES",
        help="minutes between runs (default PIPELINE_INTERVAL_MINUTES, 15)",
    )

    status = add("status", cmd_status, "last runs and data freshness")
    status.add_argument("--limit", type=int, default=10, help="runs to list (default 10)")
    status.add_argument("--check", action="store_true", help="exit 1 when the data is missing or stale")

    schema = add("schema", cmd_schema, "print or apply the database schema")
    schema.add_argument("--dialect", choices=["postgresql", "sqlite"], default="postgresql")
    schema.add_argument("--apply", action="store_true", help="create or upgrade the schema in DATABASE_URL")

    maintenance.register(add)  # import, backfill, prune, verify, publish
    return parser


def _top_n(raw: str) -> int | None:
    """``--top``: a number of coins, or ``all`` (None)."""
    try:
        return parse_top_n(raw, "--top")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_logging_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """``-v``/``-q``/``--log-format``, before or after the command (``default``: SUPPRESS on a command,
    so the command's parser does not overwrite what was given before it)."""
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v", "--verbose", action="store_true", default=default or False, help="log details and show tracebacks"
    )
    loudness.add_argument(
        "-q", "--quiet", action="store_true", default=default or False, help="only warnings and errors, no progress"
    )
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=default,
        help="text for people (default) or json: one object a line (default PIPELINE_LOG_FORMAT)",
    )


def _writes(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "writes", False)) or (args.command == "schema" and getattr(args, "apply", False))


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM (docker stop, systemd, kill) and SIGINT raise Interrupted in the main thread.

    Interrupted is a BaseException: the flow records the run as failed ("interrupted by
    SIGTERM") and the lease is released on the way out, instead of the process dying with
    its run left 'running' and its lock held. A second signal during that cleanup is
    ignored so the cleanup can finish. The previous handlers are restored afterwards.
    """
    fired: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if fired:
            return
        fired.append(signum)
        interrupts.raise_or_defer(Interrupted(signum))  # not inside the lock's bookkeeping (pipeline.interrupts)

    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}
    try:
        for wanted in (signal.SIGTERM, signal.SIGINT):
            previous[wanted] = signal.signal(wanted, on_signal)
    except ValueError:  # not the main thread (main() called from a test's thread): keep the defaults
        pass
    try:
        yield
    finally:
        for restored, handler in previous.items():
            signal.signal(restored, handler)


def _database_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    from pipeline.db import DRIVER_ERRORS

    return (SQLAlchemyError, *DRIVER_ERRORS)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose: bool = getattr(args, "verbose", False)
    verbosity = "debug" if verbose else "warning" if getattr(args, "quiet", False) else "info"
    log_format: str | None = getattr(args, "log_format", None)
    logs.configure(verbosity, json_lines=log_format == "json")
    try:
        return _run(args, verbose=verbose, verbosity=verbosity, log_format=log_format)
    finally:
        logs.reset()


def _run(args: argparse.Namespace, *, verbose: bool, verbosity: str, log_format: str | None) -> int:
    try:
        settings = Settings.from_env()
        if log_format is None and settings.log_format == "json":
            logs.configure(verbosity, json_lines=True)
        if verbose:
            log.info("settings: %s", settings.describe())
        command: Command = args.func
        if _writes(args):
            with interruptible():
                return command(args, settings)
        return command(args, settings)
    except RunLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except PipelineError as exc:
        if verbose:
            log.exception("failed")
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        if verbose:
            log.info("stopped by %s", exc.signal_name)
        print("interrupted", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a database error, or an unexpected bug: still one line unless --verbose
        if verbose:
            log.exception("failed")  # the statement and its parameters, for whoever asked
        if isinstance(exc, _database_errors()):
            from pipeline.db import as_pipeline_error

            error = as_pipeline_error(exc)
            print(f"error: {error}", file=sys.stderr)
            return getattr(error, "exit_code", 5)
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --verbose for details)", file=sys.stderr)
        return 1
