"""``python -m pipeline publish RUN_ID --force``: publish a snapshot the plausibility gate held.

The gate (``pipeline.plausibility``) keeps an implausible snapshot in silver and out of
gold. When an operator has looked at it and decides it is right after all (a real crash,
a real de-peg), this command publishes it deliberately: the ledger row becomes
'published' with its reasons kept behind "forced by operator: ", and gold is rebuilt
from that snapshot on. It is a run of its own in the run log (trigger cli, source
'publish') and holds the pipeline lock like any other writer. Without ``--force`` it
only prints why the snapshot was held and refuses.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, or_, select

from pipeline import logs
from pipeline import snapshots as ledger
from pipeline.config import Settings
from pipeline.db import prepare_database
from pipeline.errors import PipelineError, SnapshotHeld
from pipeline.schema import snapshots

if TYPE_CHECKING:
    from pipeline.flow import RunResult

FORCED_PREFIX = "forced by operator: "


def find_snapshots(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """Ledger rows made by this run (a multi-snapshot sample run's bronze ids are RUN_ID-sNN)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(snapshots)
            .where(or_(snapshots.c.run_id == run_id, snapshots.c.run_id.like(f"{run_id}-s%")))
            .order_by(snapshots.c.snapshot_at)
        ).mappings()
        return [dict(r) for r in rows]


def publish_held(
    settings: Settings,
    run_id: str,
    *,
    force: bool = False,
    trigger: str = "cli",
    progress: Callable[[str, str], None] = logs.progress,
    engine: Engine | None = None,
) -> RunResult:
    """Publish the held snapshot(s) of ``run_id``; returns the publish run's RunResult.

    Raises SnapshotHeld (exit 6) without ``force``, PipelineError when the run made no snapshot
    or none of its snapshots is held, RunLocked when another run holds the lock.
    """
    from pipeline.flow import RunResult, publish_gold
    from pipeline.run_context import run_context

    engine = engine or prepare_database(settings)
    rows = find_snapshots(engine, run_id)
    if not rows:
        raise PipelineError(f"run {run_id} made no snapshot the ledger knows (see `python -m pipeline status`)")
    held = [r for r in rows if r["status"] == ledger.HELD]
    if not held:
        raise PipelineError(
            f"the snapshot of run {run_id} is not held (status {rows[0]['status']}): nothing to publish"
        )
    reasons = [reason for r in held for reason in ledger.split_reasons(r["reasons"])]
    if not force:
        for row in held:
            progress(
                "held", f"snapshot {row['snapshot_at']:%Y-%m-%d %H:%M:%S} UTC of run {row['run_id']}: {row['reasons']}"
            )
        progress("held", f"not published; to publish it anyway: python -m pipeline publish {run_id} --force")
        raise SnapshotHeld(reasons, run_id=run_id, snapshot_at=held[-1]["snapshot_at"])

    with run_context(settings, trigger=trigger, origin="publish", engine=engine) as run:
        since: datetime = min(r["snapshot_at"] for r in held)
        result = run.track(
            RunResult(
                run_id=run.run_id,
                source="publish",
                snapshot_at=max(r["snapshot_at"] for r in held),
                silver_rows=sum(r["coin_count"] or 0 for r in held),
            )
        )
        result.warnings.append(f"published the held snapshot(s) of run {run_id} by operator: " + "; ".join(reasons))
        with engine.begin() as conn:
            for row in held:
                ledger.set_status(
                    conn, row["snapshot_at"], ledger.PUBLISHED, FORCED_PREFIX + (row["reasons"] or "held")
                )
        try:
            return publish_gold(run, result, progress, since=since)
        except BaseException:
            with engine.begin() as conn:  # gold was not rebuilt: the snapshots stay held
                for row in held:
                    ledger.set_status(conn, row["snapshot_at"], ledger.HELD, row["reasons"])
            raise


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    """Publish a snapshot the plausibility gate held (its run ended 'held', exit 6).

    Without --force: prints why the run's snapshot was held and refuses (exit 6).
    With --force: marks it published ("forced by operator: <reasons>" in the
    snapshots ledger), rebuilds gold from it on, and records this as a run of its
    own (source publish) that holds the pipeline lock.

    Example: python -m pipeline publish 20261130T091500Z-1a2b3c --force
    """
    result = publish_held(settings, args.run_id, force=args.force, trigger="cli")
    logs.outcome(
        f"publish {result.run_id} succeeded: snapshot {result.snapshot_at:%Y-%m-%d %H:%M:%S} UTC of run "
        f"{args.run_id} is published",
        run_id=result.run_id,
    )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="the held run (python -m pipeline status lists it)")
    parser.add_argument("--force", action="store_true", help="publish it although the gate held it")
