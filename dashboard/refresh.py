"""The refresh flow behind the sidebar button and the first-start "Load data" button.

A click asks; the scheduler sidecar does. ``request_refresh`` queues a run request
(``pipeline.run_requests``) and a background thread of the dashboard process follows it
for the page: once the sidecar claims it, the run's stages come from the run log, and
its outcome from the request. When no sidecar has beaten lately (a lone ``streamlit
run``, or a sidecar that died), the same thread claims the request and runs
``pipeline.flow.run_pipeline`` here, as the button always did (``trigger="button"``,
interactive budgets). Either way the run finishes and is recorded properly even when
the person clicks around or closes the tab; the page only polls the job.

Single flight: one open request at a time (a second click, from any session or
dashboard replica, follows it), and the pipeline's database lock covers the rest:
when a run (the scheduler's, the CLI's) holds it, the caller follows that run through
``pipeline_runs`` instead of asking for another. A cooldown
(``PIPELINE_REFRESH_COOLDOWN_SECONDS``) counted from the newest run that called the
API keeps clicks from hammering CoinGecko.

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
from pipeline.api import STAGES, Settings, current_holder, get_run, prepare_database, reap_dead_runs, utcnow
from pipeline.api import run_requests as requests

log = logging.getLogger(__name__)

#: How long a page waits for a run started elsewhere before it stops watching.
EXTERNAL_WAIT_SECONDS = 300.0
POLL_SECONDS = 0.25
KEEP_JOBS = 20
#: What the page says while a request waits for the sidecar.
WAITING_MESSAGE = "asked the scheduler for a run; waiting for it to start…"


@dataclass
class Job:
    """One refresh request followed (or served) by this process. Read by any session; written by its thread only.

    ``job_id`` is the request's id.
    """

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
    served_by: str | None = None  # who claimed the request: the sidecar, or this dashboard
    request_less: bool = False  # the request table could not be written: run here, as before the queue
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

    def _finish_with(self, outcome: requests.Outcome) -> None:
        """Record how the request ended, in the words the page uses."""
        if outcome.outcome == "success":
            self._finish(
                "success",
                run_id=outcome.run_id,
                snapshot_at=outcome.snapshot_at,
                used_source=outcome.used_source,
                fallback_reason=outcome.message if outcome.used_source == "sample" else None,
            )
        elif outcome.outcome == "locked":
            self._finish("locked", error=outcome.message, holder_run_id=outcome.run_id)
        elif outcome.outcome == "held":
            self._finish("held", error=outcome.message, run_id=outcome.run_id, snapshot_at=outcome.snapshot_at)
        else:
            self._finish(outcome.outcome, error=outcome.message or "unknown error", run_id=outcome.run_id)


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
    """Ask for a refresh unless one is already going (here or elsewhere) or the cooldown applies."""
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
        try:
            engine = _request_engine(settings)
            waiting = requests.open_request(engine)
        except Exception as exc:  # the database refuses: run here, and let the run say what is wrong
            log.warning("cannot queue a refresh request (%s); running it in this process", exc)
            engine, waiting = None, None
        if waiting is None and respect_cooldown and source != "sample":
            left = cooldown_left(settings)
            if left:
                return Decision(
                    "cooldown",
                    seconds_left=left,
                    message=f"CoinGecko was asked for data less than "
                    f"{settings.refresh_cooldown_seconds} s ago. To spare the API, the next "
                    f"refresh is possible in {left} s.",
                )
        job, created = _job_for_request(engine, waiting, source)
        for old in [j for j in list(_jobs)[:-KEEP_JOBS] if not _jobs[j].running]:
            del _jobs[old]  # keep the outcome of the last few jobs only
        _jobs[job.job_id] = job
        _active = job
    target = _work if job.request_less else _follow
    thread = threading.Thread(target=target, args=(job, settings), name=f"dashboard-refresh-{job.job_id}", daemon=True)
    thread.start()
    if created:
        return Decision("started", job=job)
    return Decision("attached", job=job, message="A refresh is already running; showing it.")


def _job_for_request(engine, waiting: requests.Request | None, source: str) -> tuple[Job, bool]:
    """A job following the open request (``waiting``) or a new one; (job, created). Without an engine, or
    when the request cannot be written, a job that runs here without a request."""
    try:
        if engine is not None:
            request, created = (waiting, False) if waiting is not None else requests.request_run(engine, source=source)
            return Job(job_id=request.request_id, source=request.source, started_at=request.requested_at), created
    except Exception as exc:
        log.warning("cannot queue a refresh request (%s); running it in this process", exc)
    return Job(job_id=uuid.uuid4().hex[:12], source=source, started_at=utcnow(), request_less=True), True


def _lock_holder(settings: Settings) -> dict | None:
    try:
        return data.load_lock_holder(settings.database_url)
    except data.DataUnavailable:  # no lock table yet (first start): nobody holds it
        return None


def _request_engine(settings: Settings):
    """The engine to queue requests in; on a first start (no tables yet) the schema is created first,
    as the first run would have done."""
    engine = data.engine_for(settings.database_url)
    try:
        requests.open_request(engine)
    except Exception:  # no run_requests table yet (or an older schema): create or upgrade it
        return prepare_database(settings)
    return engine


def _follow(job: Job, settings: Settings) -> None:
    """Thread body: follow the job's request until it ends, serving it here when no sidecar will.
    Never raises."""
    engine = data.engine_for(settings.database_url)
    beat = settings.sidecar_heartbeat_seconds
    shown: tuple[str, str] | None = None
    try:
        while True:
            request = requests.get_request(engine, job.job_id)
            if request is None:
                job._finish("failed", error=f"refresh request {job.job_id} is gone")
                return
            if request.state == "pending":
                alive = requests.sidecar_alive(engine, beat)
                if requests.serve_here(request, sidecar_is_alive=alive, heartbeat_seconds=beat):
                    # Beat before claiming: a claim whose server does not beat is an orphan to everyone else.
                    with requests.Heartbeat(engine, requests.ROLE_DASHBOARD, beat) as heartbeat:
                        if requests.claim(engine, request.request_id, heartbeat.name):
                            job.served_by = heartbeat.name
                            _work(job, settings, request)
                            return
                    continue  # a sidecar or another dashboard claimed it a moment ago: follow it
                event = ("fetch", WAITING_MESSAGE)
            elif request.state == "claimed":
                job.served_by = request.claimed_by
                if requests.reap_orphans(engine, beat):
                    continue
                stage = requests.run_stage(engine, request.run_id) if request.run_id else None
                message = request.message or f"{request.claimed_by} took the request; starting…"
                event = (stage or "fetch", message)
            else:
                outcome = requests.outcome_of(engine, request)
                assert outcome is not None
                job._finish_with(outcome)
                return
            if event != shown:
                job.progress(*event)
                shown = event
            time.sleep(POLL_SECONDS)
    except Exception as exc:  # the database went away mid-follow: show it as a failed refresh
        log.exception("following refresh request %s failed", job.job_id)
        job._finish("failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        if job.running:
            job._finish("failed", error="the refresh stopped unexpectedly")
        data.clear_caches()


def _work(job: Job, settings: Settings, request: requests.Request | None = None) -> None:
    """Run the pipeline in this process and record the outcome on the job. Never raises.

    ``request``: the request this process claimed (its heartbeat beating), kept current as it runs;
    without one (the request table cannot be written) the run is just run, as before the queue."""
    try:
        if request is None:
            outcome = requests.execute(settings, source=job.source, progress=job.progress)
        else:
            outcome = requests.serve(settings, data.engine_for(settings.database_url), request, progress=job.progress)
        job._finish_with(outcome)
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
