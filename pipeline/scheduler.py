"""The sidecar: run the pipeline at start, then every interval, until SIGTERM.

It calls the same ``run_pipeline`` as the CLI and the dashboard button, with
trigger ``schedule``. After a failed run it backs off: the next try waits the
interval, then twice, four times ... as long, up to PIPELINE_BACKOFF_CAP_MINUTES,
so a dead API is not hammered; the first success restores the interval. SIGTERM (docker stop) or SIGINT ends it within seconds:
between runs it just stops waiting; during a run the run is interrupted,
recorded as failed, its lock released, and gold stays as it was.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime, timedelta

import schedule

from pipeline.config import Settings
from pipeline.errors import PipelineError, RunLocked, SnapshotHeld

log = logging.getLogger(__name__)


class Shutdown(BaseException):
    """Raised inside a running job when the process is asked to stop."""


def retry_delay_minutes(interval: float, consecutive_failures: int, cap: float) -> float:
    """Minutes until the next run: the interval, doubled per failure beyond the first, capped
    (never below the interval itself)."""
    if consecutive_failures <= 1:
        return interval
    return min(interval * 2 ** (consecutive_failures - 1), max(cap, interval))


def run_forever(settings: Settings, *, source: str = "api", interval_minutes: float | None = None) -> int:
    from pipeline.flow import prepare_database, run_pipeline
    from pipeline.runs import reap_dead_runs

    interval = interval_minutes or settings.interval_minutes
    stop = threading.Event()
    in_job = threading.Event()

    def on_signal(signum, _frame):
        print(f"scheduler: received {signal.Signals(signum).name}, stopping", flush=True)
        stop.set()
        if in_job.is_set():
            raise Shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    engine = prepare_database(settings)
    failures = 0
    backoff_until: list[datetime] = []  # set by a failed job, applied after schedule re-plans it

    def job() -> None:
        nonlocal failures
        in_job.set()
        try:
            reap_dead_runs(engine)
            result = run_pipeline(settings, trigger="schedule", source=source, engine=engine)
            failures = 0
            print(
                f"scheduler: run {result.run_id} succeeded ({result.silver_rows} rows, snapshot "
                f"{result.snapshot_at:%Y-%m-%d %H:%M:%S} UTC)",
                flush=True,
            )
        except RunLocked as exc:
            print(f"scheduler: skipped, {exc}", flush=True)
        except SnapshotHeld as exc:  # a failure to deliver data: backs off and counts toward the banner
            failures += 1
            print(f"scheduler: run held ({failures} failed in a row): {exc}", flush=True)
        except PipelineError as exc:
            failures += 1
            print(f"scheduler: run failed ({failures} in a row): {exc}", flush=True)
        except Shutdown:
            raise
        except Exception as exc:  # keep the sidecar alive through an unexpected bug
            failures += 1
            log.exception("scheduled run crashed")
            print(f"scheduler: run crashed: {type(exc).__name__}: {exc}", flush=True)
        finally:
            in_job.clear()
        if failures > 1:
            delay = retry_delay_minutes(interval, failures, settings.backoff_cap_minutes)
            backoff_until.append(datetime.now() + timedelta(minutes=delay))
            print(f"scheduler: backing off, next try in {delay:g} minutes", flush=True)

    scheduler = schedule.Scheduler()
    scheduled = scheduler.every(interval).minutes.do(job)
    print(f"scheduler: running every {interval:g} minutes (source {source}); first run now", flush=True)

    def apply_backoff() -> None:
        if backoff_until:
            scheduled.next_run = backoff_until.pop()
            backoff_until.clear()

    try:
        job()
        apply_backoff()
        while not stop.is_set():
            scheduler.run_pending()
            apply_backoff()
            idle = scheduler.idle_seconds
            stop.wait(timeout=max(0.1, min(idle if idle is not None else 1.0, 1.0)))
    except Shutdown:
        print("scheduler: interrupted the running job; it is recorded as failed", flush=True)
    print("scheduler: stopped", flush=True)
    return 0
