"""The refresh flow behind the sidebar button and the first-start "Load data" button.

A refresh calls ``pipeline.flow.run_pipeline`` (the scheduler's entry point)
with ``trigger="button"`` in a background thread of the dashboard process, so
the run finishes and is recorded properly even when the person clicks around
or closes the tab meanwhile; the page only polls the job for progress.

Single flight: one job per dashboard process (a second click, from any
session, follows the running job), and the pipeline's database lock covers
other processes (the scheduler, the CLI, another dashboard replica): when it is
held, the caller follows that run through ``pipeline_runs`` instead of starting
a second one. A cooldown (``PIPELINE_REFRESH_COOLDOWN_SECONDS``) counted from
the newest run that called the API keeps clicks from hammering CoinGecko.

This module has no Streamlit calls; ``dashboard/ui.py`` draws the flow.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from dashboard import data
from pipeline.config import Settings
from pipeline.db import utcnow
from pipeline.errors import PipelineError, RunLocked, SnapshotHeld, SourceError
from pipeline.runs import STAGES, current_holder, get_run, reap_dead_runs

log = logging.getLogger(__name__)

#: How long a page waits for a run started elsewhere before it stops watching.
EXTERNAL_WAIT_SECONDS = 300.0
POLL_SECONDS = 0.25
KEEP_JOBS = 20


@dataclass
class Job:
    """One refresh running in this process. Read by any session; written by its thread only."""

    job_id: str
    source: str  # api | sample | auto (api, else the sample)
    started_at: datetime
    events: list[tuple[str, str]] = field(default_factory=list)  # (stage, message), in order
    state: str = "running"  # running | success | source_error | failed | locked | held
    error: str | None = None
    holder_run_id: str | None = None  # when locked: the run that holds the lock
    run_id: str | None = None
    snapshot_at: datetime | None = None
    used_source: str | None = None  # what the successful run used (auto may fall back)
    fallback_reason: str | None = None  # auto: why the sample was used
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def stage(self) -> str | None:
        return self.events[-1][0] if self.events else None

    def progress(self, stage: str, message: str) -> None:
        """The ``progress`` callback handed to ``run_pipeline``."""
        self.events.append((stage, message))

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _finish(self, state: str, **values) -> None:
        for key, value in values.items():
            setattr(self, key, value)
        self.state = state
        self._done.set()


@dataclass(frozen=True)
class Decision:
    """What a click led to: started or following a job, following another process's run, or cooling down."""

    kind: str  # started | attached | external | cooldown
    job: Job | None = None
    run_id: str | None = None  # external: the run holding the lock
    seconds_left: int = 0
    message: str = ""


_lock = threading.Lock()
_jobs: dict[str, Job] = {}
_active: Job | None = None


def get_job(job_id: str | None) -> Job | None:
    """A job of this process by id (kept after it ends, so its outcome can still be shown)."""
    return _jobs.get(job_id) if job_id else None


def active_job() -> Job | None:
    """The job running in this process right now, if any."""
    with _lock:
        return _active if _active is not None and _active.running else None


def cooldown_left(settings: Settings) -> int:
    """Seconds until the API may be called again from the dashboard (0 = now)."""
    if settings.refresh_cooldown_seconds <= 0:
        return 0
    try:
        started = data.last_api_run_started(settings.database_url)
    except data.DataUnavailable:  # no run log yet: nothing to wait for
        return 0
    if started is None:
        return 0
    left = settings.refresh_cooldown_seconds - (utcnow() - started).total_seconds()
    return max(0, int(left + 0.999))


def request_refresh(settings: Settings, source: str = "api", *, respect_cooldown: bool = True) -> Decision:
    """Start a refresh unless one is already going (here or elsewhere) or the cooldown applies."""
    global _active
    with _lock:
        if _active is not None and _active.running:
            return Decision("attached", job=_active, message="A refresh is already running; showing it.")
        holder = _lock_holder(settings)
        if holder is not None:
            return Decision(
                "external",
                run_id=holder["run_id"],
                message=f"Pipeline run {holder['run_id']} is already in progress "
                f"(pid {holder['pid']} on {holder['host']}); waiting for it instead of "
                f"starting a second one.",
            )
        if respect_cooldown and source != "sample":
            left = cooldown_left(settings)
            if left:
                return Decision(
                    "cooldown",
                    seconds_left=left,
                    message=f"CoinGecko was asked for data less than "
                    f"{settings.refresh_cooldown_seconds} s ago. To spare the API, the next "
                    f"refresh is possible in {left} s.",
                )
        job = Job(job_id=uuid.uuid4().hex[:12], source=source, started_at=utcnow())
        for old in [j for j in list(_jobs)[:-KEEP_JOBS] if not _jobs[j].running]:
            del _jobs[old]  # keep the outcome of the last few jobs only
        _jobs[job.job_id] = job
        _active = job
    thread = threading.Thread(target=_work, args=(job, settings), name=f"dashboard-refresh-{job.job_id}", daemon=True)
    thread.start()
    return Decision("started", job=job)


def _lock_holder(settings: Settings) -> dict | None:
    try:
        return data.load_lock_holder(settings.database_url)
    except data.DataUnavailable:  # no lock table yet (first start): nobody holds it
        return None


def _work(job: Job, settings: Settings) -> None:
    """Thread body: run the pipeline and record the outcome on the job. Never raises."""
    from pipeline.flow import run_pipeline

    try:
        try:
            result = run_pipeline(
                settings, trigger="button", source="api" if job.source == "auto" else job.source, progress=job.progress
            )
        except SourceError as exc:
            if job.source != "auto":
                raise
            job.fallback_reason = str(exc)
            job.progress("fetch", f"CoinGecko is unreachable ({exc}); loading the bundled sample instead")
            result = run_pipeline(settings, trigger="button", source="sample", progress=job.progress)
        job._finish("success", run_id=result.run_id, snapshot_at=result.snapshot_at, used_source=result.source)
    except RunLocked as exc:
        job._finish("locked", error=str(exc), holder_run_id=exc.holder_run_id)
    except SnapshotHeld as exc:  # the plausibility gate: not a crash; the pages keep the last published data
        job._finish("held", error="held: " + "; ".join(exc.reasons), run_id=exc.run_id, snapshot_at=exc.snapshot_at)
    except SourceError as exc:
        job._finish("source_error", error=str(exc))
    except PipelineError as exc:
        job._finish("failed", error=str(exc))
    except Exception as exc:  # a bug must not kill the thread silently: show it as a failed refresh
        log.exception("dashboard refresh crashed")
        job._finish("failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        data.clear_caches()


def follow_job(job: Job, on_tick: Callable[[Job], None], poll: float = POLL_SECONDS) -> Job:
    """Call ``on_tick(job)`` until the job ends (and once more at the end)."""
    while job.running:
        on_tick(job)
        job.wait(poll)
    on_tick(job)
    return job


@dataclass
class ExternalRun:
    """A run started by another process, as seen through ``pipeline_runs``."""

    run_id: str
    status: str = "running"
    stage: str | None = None
    error: str | None = None
    timed_out: bool = False


def follow_external(
    settings: Settings,
    run_id: str,
    on_tick: Callable[[ExternalRun], None],
    timeout: float = EXTERNAL_WAIT_SECONDS,
    poll: float = 0.5,
) -> ExternalRun:
    """Poll another process's run until it ends (or ``timeout``), calling ``on_tick`` each time."""
    engine = data.engine_for(settings.database_url)
    seen = ExternalRun(run_id)
    deadline = time.monotonic() + timeout
    while True:
        row = get_run(engine, run_id)
        if row is not None:
            seen.status, seen.stage, seen.error = row["status"], row["stage"], row["error_message"]
        holder = current_holder(engine)
        if seen.status == "running" and (holder is None or holder["run_id"] != run_id):
            # The one liveness rule (pipeline.runs): no live lease means the run is dead. Say so now
            # instead of waiting for a run that will never finish.
            if row is None or run_id in reap_dead_runs(engine):
                row = get_run(engine, run_id)
            if row is None:
                seen.status = "unknown"
            else:
                seen.status, seen.stage, seen.error = row["status"], row["stage"], row["error_message"]
        on_tick(seen)
        if seen.status != "running":
            break
        if time.monotonic() > deadline:
            seen.timed_out = True
            break
        time.sleep(poll)
    data.clear_caches()
    return seen


def stage_lines(current: str | None, finished: bool, failed: bool = False) -> list[tuple[str, str]]:
    """(stage, mark) for each of fetch, bronze, silver, gold: done ✅, now ⏳ (or ❌), to do ▫️."""
    lines = []
    position = STAGES.index(current) if current in STAGES else -1
    for index, stage in enumerate(STAGES):
        if finished and not failed:
            mark = "✅"
        elif index < position:
            mark = "✅"
        elif index == position:
            mark = "❌" if failed else ("✅" if finished else "⏳")
        else:
            mark = "▫️"
        lines.append((stage, mark))
    return lines
