"""The sidecar: run the pipeline at start, then every interval, until SIGTERM.

It calls the same ``run_pipeline`` as the CLI and the dashboard button, with
trigger ``schedule``. SIGTERM (docker stop) or SIGINT ends it within seconds:
between runs it just stops waiting; during a run the run is interrupted,
recorded as failed, its lock released, and gold stays as it was.
"""

from __future__ import annotations

import logging
import signal
import threading

import schedule

from pipeline.config import Settings
from pipeline.errors import PipelineError, RunLocked

log = logging.getLogger(__name__)


class Shutdown(BaseException):
    """Raised inside a running job when the process is asked to stop."""


def run_forever(settings: Settings, *, source: str = "api", interval_minutes: float | None = None) -> int:
    from pipeline.flow import prepare_database, run_pipeline

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

    def job() -> None:
        in_job.set()
        try:
            result = run_pipeline(settings, trigger="schedule", source=source, engine=engine)
            print(f"scheduler: run {result.run_id} succeeded ({result.silver_rows} rows, snapshot "
                  f"{result.snapshot_at:%Y-%m-%d %H:%M:%S} UTC)", flush=True)
        except RunLocked as exc:
            print(f"scheduler: skipped, {exc}", flush=True)
        except PipelineError as exc:
            print(f"scheduler: run failed: {exc}", flush=True)
        except Shutdown:
            raise
        except Exception as exc:  # keep the sidecar alive through an unexpected bug
            log.exception("scheduled run crashed")
            print(f"scheduler: run crashed: {type(exc).__name__}: {exc}", flush=True)
        finally:
            in_job.clear()

    scheduler = schedule.Scheduler()
    scheduler.every(interval).minutes.do(job)
    print(f"scheduler: running every {interval:g} minutes (source {source}); first run now", flush=True)
    try:
        job()
        while not stop.is_set():
            scheduler.run_pending()
            idle = scheduler.idle_seconds
            stop.wait(timeout=max(0.1, min(idle if idle is not None else 1.0, 1.0)))
    except Shutdown:
        print("scheduler: interrupted the running job; it is recorded as failed", flush=True)
    print("scheduler: stopped", flush=True)
    return 0
