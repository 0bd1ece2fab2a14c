"""The sidecar: run the pipeline at start, then every interval, until SIGTERM; between runs,
serve the dashboard's refresh requests.

Scheduled runs call the same ``run_pipeline`` as the CLI, with trigger ``schedule``.
After a failed run it backs off: the next try waits the interval, then twice, four
times ... as long, up to PIPELINE_BACKOFF_CAP_MINUTES, so a dead API is not hammered;
the first success restores the interval.

Between runs it looks for a pending refresh request every second
(``pipeline.run_requests``: one cheap query), claims it and runs it as the button
would (trigger ``button``, interactive budgets). A background thread beats in
``sidecar_heartbeats`` every PIPELINE_SIDECAR_HEARTBEAT_SECONDS, also during a run,
so the dashboard knows a sidecar will take its request.

SIGTERM (docker stop) or SIGINT ends it within seconds: between runs it just stops
waiting; during a run (scheduled or requested) the run is interrupted, recorded as
failed, its lock released, and gold stays as it was.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime, timedelta
from types import FrameType

import schedule
from sqlalchemy import Engine

from pipeline import budget, interrupts, logs
from pipeline import run_requests as requests
from pipeline.config import Settings
from pipeline.errors import PipelineError, RunLocked, SnapshotHeld

log = logs.get_logger(__name__)


class Shutdown(BaseException):
    """Raised inside a running job when the process is asked to stop."""


def retry_delay_minutes(interval: float, consecutive_failures: int, cap: float) -> float:
    """Minutes until the next run: the interval, doubled per failure beyond the first, capped
    (never below the interval itself)."""
    if consecutive_failures <= 1:
        return interval
    return min(interval * 2.0 ** (consecutive_failures - 1), max(cap, interval))


def serve_pending_request(settings: Settings, engine: Engine, name: str) -> requests.Outcome | None:
    """Claim and run the oldest pending refresh request, if any (None: nothing was waiting)."""
    from pipeline.runs import reap_dead_runs

    request = requests.claim_next(engine, name)
    if request is None:
        return None
    logs.outcome(f"scheduler: serving refresh request {request.request_id} (source {request.source})")
    reap_dead_runs(engine)
    outcome = requests.serve(settings, engine, request)
    level = logging.INFO if outcome.outcome == "success" else logging.WARNING
    logs.outcome(
        f"scheduler: refresh request {request.request_id} {outcome.state} ({outcome.outcome}"
        + (f", run {outcome.run_id}" if outcome.run_id else "")
        + (f": {outcome.message}" if outcome.message else "")
        + ")",
        run_id=outcome.run_id,
        level=level,
    )
    return outcome


def run_forever(settings: Settings, *, source: str = "api", interval_minutes: float | None = None) -> int:
    from pipeline.db import prepare_database
    from pipeline.flow import run_pipeline
    from pipeline.runs import reap_dead_runs

    interval = interval_minutes or settings.interval_minutes
    stop = threading.Event()
    in_job = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logs.outcome(f"scheduler: received {signal.Signals(signum).name}, stopping")
        stop.set()
        if in_job.is_set():
            interrupts.raise_or_defer(Shutdown())  # not inside the lock's bookkeeping (pipeline.interrupts)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # The API budget plans with the interval in use: cadences (pipeline.budget.CADENCES) and the calls the
    # month's remaining runs need; the plan is logged at start, a warning when it exceeds the allowance.
    settings = settings.with_overrides(interval_minutes=interval)
    engine = prepare_database(settings)
    budget_plan = budget.plan(settings)
    logs.outcome(f"scheduler: {budget_plan.line()}", level=logging.INFO if budget_plan.fits else logging.WARNING)
    budget.warning_line(settings, engine)  # a warning when this month is already past 80 % of it
    failures = 0
    backoff_until: list[datetime] = []  # set by a failed job, applied after schedule re-plans it

    def job() -> None:
        nonlocal failures
        in_job.set()
        try:
            reap_dead_runs(engine)
            result = run_pipeline(settings, trigger="schedule", source=source, engine=engine)
            failures = 0
            logs.outcome(
                f"scheduler: run {result.run_id} succeeded ({result.silver_rows} rows, snapshot "
                f"{result.snapshot_at:%Y-%m-%d %H:%M:%S} UTC)",
                run_id=result.run_id,
            )
        except RunLocked as exc:
            logs.outcome(f"scheduler: skipped, {exc}")
        except SnapshotHeld as exc:  # a failure to deliver data: backs off and counts toward the banner
            failures += 1
            logs.outcome(
                f"scheduler: run held ({failures} failed in a row): {exc}", run_id=exc.run_id, level=logging.WARNING
            )
        except PipelineError as exc:
            failures += 1
            logs.outcome(f"scheduler: run failed ({failures} in a row): {exc}", level=logging.WARNING)
        except Shutdown:
            raise
        except Exception as exc:  # keep the sidecar alive through an unexpected bug
            failures += 1
            log.exception("scheduled run crashed")
            logs.outcome(f"scheduler: run crashed: {type(exc).__name__}: {exc}", level=logging.ERROR)
        finally:
            in_job.clear()
        if failures > 1:
            delay = retry_delay_minutes(interval, failures, settings.backoff_cap_minutes)
            backoff_until.append(datetime.now() + timedelta(minutes=delay))
            logs.outcome(f"scheduler: backing off, next try in {delay:g} minutes")

    heartbeat = requests.Heartbeat(engine, requests.ROLE_SIDECAR, settings.sidecar_heartbeat_seconds)

    def serve_requests() -> None:
        """Between runs: the dashboard's waiting refresh request, if any. A database hiccup only skips a poll."""
        in_job.set()
        try:
            requests.reap_orphans(engine, settings.sidecar_heartbeat_seconds)
            serve_pending_request(settings, engine, heartbeat.name)
        except Shutdown:
            raise
        except Exception:
            log.warning("could not serve the refresh requests", exc_info=True)
        finally:
            in_job.clear()

    scheduler = schedule.Scheduler()
    # schedule annotates the interval as int; a fraction of a minute works (it becomes a timedelta).
    scheduled = scheduler.every(interval).minutes.do(job)  # type: ignore[arg-type]
    logs.outcome(
        f"scheduler: running every {interval:g} minutes (source {source}), serving refresh requests; first run now"
    )

    def apply_backoff() -> None:
        if backoff_until:
            scheduled.next_run = backoff_until.pop()
            backoff_until.clear()

    poll = requests.POLL_SECONDS
    heartbeat.start()
    try:
        requests.prune_heartbeats(engine)
        job()
        apply_backoff()
        while not stop.is_set():
            scheduler.run_pending()
            apply_backoff()
            if not stop.is_set():
                serve_requests()
            idle = scheduler.idle_seconds  # the next poll for requests comes within POLL_SECONDS
            stop.wait(timeout=max(0.1, min(idle if idle is not None else poll, poll)))
    except Shutdown:
        logs.outcome("scheduler: interrupted the running job; it is recorded as failed")
    finally:
        try:  # a stop between claiming a request and serving it leaves no request waiting on us
            requests.close_claims(engine, heartbeat.name, requests.INTERRUPTED)
        except Exception:
            log.warning("could not close this sidecar's refresh requests", exc_info=True)
        heartbeat.stop()
    logs.outcome("scheduler: stopped")
    return 0
