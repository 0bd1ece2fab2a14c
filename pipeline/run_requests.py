"""The refresh button asks, the sidecar does: run requests and the sidecar's heartbeat.

A click inserts a row in ``run_requests`` (``request_run``). The scheduler sidecar
polls for pending requests between its own runs, claims one (``claim``: an UPDATE
that only a pending row passes, so exactly one server wins on SQLite and PostgreSQL
alike) and serves it (``serve``): the same ``run_pipeline`` as the button always
ran, trigger ``button`` with the interactive budgets. The row then ends
``done``, ``failed`` or ``superseded`` (another run held the lock: that run is the
answer). At most one request is open (pending or claimed) at a time, so a second
click joins the first request instead of queueing another run.

The sidecar beats in ``sidecar_heartbeats`` (``Heartbeat``). When no sidecar beat
lately (a lone ``streamlit run``, or a sidecar that died after its last beat) the
dashboard claims the request itself and runs it in-process; while serving, it beats
too (role ``dashboard``), so a request whose server died is seen as orphaned by the
same rule (``is_fresh``) and closed (``reap_orphans``) instead of staying open.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, RowMapping, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from pipeline import logs
from pipeline.config import Settings
from pipeline.db import utcnow
from pipeline.errors import PipelineError, RunLocked, SnapshotHeld, SourceError
from pipeline.runs import current_holder, get_run
from pipeline.schema import pipeline_runs, run_requests, sidecar_heartbeats

log = logs.get_logger(__name__)

#: A request's run is recorded as the button's: interactive fetch deadlines, as before the queue.
TRIGGER = "button"
REQUESTED_BY_DASHBOARD = "dashboard"
SOURCES = ("api", "sample", "auto")
STATES = ("pending", "claimed", "done", "failed", "superseded")
OPEN_STATES = ("pending", "claimed")
#: How a served request ended, for the page: the dashboard's words for it.
OUTCOMES = ("success", "held", "source_error", "failed", "locked")
_STATE_OF_OUTCOME = {
    "success": "done",
    "locked": "superseded",
    "held": "failed",
    "source_error": "failed",
    "failed": "failed",
}
#: The sidecar looks for new requests this often between its scheduled runs.
POLL_SECONDS = 1.0
#: A heartbeat older than this many intervals is stale: its process is taken for gone.
STALE_AFTER_BEATS = 3
ROLE_SIDECAR = "scheduler"
ROLE_DASHBOARD = "dashboard"
INTERRUPTED = "interrupted: the server stopped"

Progress = Callable[[str, str], None]


def _quiet(stage: str, message: str) -> None:
    """The default progress callback (the sidecar's): a detail, as for its scheduled runs."""
    log.info("[%s] %s", stage, message)


@dataclass(frozen=True)
class Request:
    """One row of ``run_requests``."""

    request_id: str
    requested_at: datetime
    requested_by: str
    source: str
    state: str
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    run_id: str | None = None
    finished_at: datetime | None = None
    outcome: str | None = None
    message: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @classmethod
    def from_row(cls, row: RowMapping) -> Request:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Outcome:
    """How one served request ended: what the page shows and what its row records."""

    outcome: str  # one of OUTCOMES
    run_id: str | None = None  # the run that served it (locked: the run that held the lock)
    message: str | None = None  # the error; on success, why the bundled sample was used
    snapshot_at: datetime | None = None
    used_source: str | None = None

    @property
    def state(self) -> str:
        return _STATE_OF_OUTCOME[self.outcome]


def new_request_id(now: datetime | None = None) -> str:
    """Sortable and unique, like a run id: ``20261127T083000Z-r1a2b3c4``."""
    now = now or utcnow()
    return f"{now:%Y%m%dT%H%M%SZ}-r{uuid.uuid4().hex[:8]}"


# -- asking -------------------------------------------------------------------------------------


def request_run(
    engine: Engine, *, source: str = "api", requested_by: str = REQUESTED_BY_DASHBOARD
) -> tuple[Request, bool]:
    """The open request, or a new pending one. Returns (request, created).

    ``open_slot`` is unique and set while a request is open, so two clicks racing
    in two processes still leave one request: the loser reads the winner's.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    for _attempt in range(3):
        existing = open_request(engine)
        if existing is not None:
            return existing, False
        now = utcnow()
        row = {
            "request_id": new_request_id(now),
            "requested_at": now,
            "requested_by": requested_by,
            "source": source,
            "state": "pending",
            "open_slot": 1,
        }
        try:
            with engine.begin() as conn:
                conn.execute(insert(run_requests).values(**row))
        except IntegrityError:
            continue  # another click won the open slot a moment ago: join it
        created = get_request(engine, str(row["request_id"]))
        assert created is not None
        return created, True
    raise PipelineError("could not queue a refresh request: the request table is busy")


def get_request(engine: Engine, request_id: str) -> Request | None:
    with engine.connect() as conn:
        row = conn.execute(select(run_requests).where(run_requests.c.request_id == request_id)).mappings().first()
    return Request.from_row(row) if row is not None else None


def open_request(engine: Engine) -> Request | None:
    """The request waiting or being served now, if any."""
    with engine.connect() as conn:
        row = conn.execute(select(run_requests).where(run_requests.c.open_slot == 1)).mappings().first()
    return Request.from_row(row) if row is not None else None


def recent_requests(engine: Engine, limit: int = 20) -> list[Request]:
    with engine.connect() as conn:
        rows = conn.execute(select(run_requests).order_by(run_requests.c.requested_at.desc()).limit(limit))
        return [Request.from_row(r) for r in rows.mappings()]


# -- claiming and serving -----------------------------------------------------------------------


def claim(engine: Engine, request_id: str, claimed_by: str) -> bool:
    """Take a pending request for ``claimed_by``. Atomic: of many claimers exactly one gets True."""
    with engine.begin() as conn:
        result = conn.execute(
            update(run_requests)
            .where(run_requests.c.request_id == request_id, run_requests.c.state == "pending")
            .values(state="claimed", claimed_by=claimed_by, claimed_at=utcnow())
        )
    return result.rowcount == 1


def claim_next(engine: Engine, claimed_by: str) -> Request | None:
    """Claim the oldest pending request, if there is one (the sidecar's cheap poll)."""
    with engine.connect() as conn:
        request_id = conn.execute(
            select(run_requests.c.request_id)
            .where(run_requests.c.state == "pending")
            .order_by(run_requests.c.requested_at)
            .limit(1)
        ).scalar()
    if request_id is None or not claim(engine, request_id, claimed_by):
        return None
    return get_request(engine, request_id)


def _update_claimed(engine: Engine, request_id: str, **values: object) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(run_requests)
            .where(run_requests.c.request_id == request_id, run_requests.c.state == "claimed")
            .values(**values)
        )


def finish(engine: Engine, request_id: str, outcome: Outcome) -> bool:
    """Record how a claimed request ended and free the open slot. False when it was no longer claimed."""
    with engine.begin() as conn:
        result = conn.execute(
            update(run_requests)
            .where(run_requests.c.request_id == request_id, run_requests.c.state == "claimed")
            .values(
                state=outcome.state,
                open_slot=None,
                outcome=outcome.outcome,
                run_id=outcome.run_id,
                message=outcome.message[:2000] if outcome.message else None,
                finished_at=utcnow(),
            )
        )
    return result.rowcount == 1


def execute(settings: Settings, *, source: str, progress: Progress = _quiet, engine: Engine | None = None) -> Outcome:
    """Run the pipeline as the refresh button does and say how it ended. Never raises an Exception.

    ``auto`` tries the API, and loads the bundled sample when CoinGecko cannot be reached.
    """
    from pipeline.flow import run_pipeline  # flow imports the whole pipeline; a request may never run

    fallback: str | None = None
    try:
        try:
            result = run_pipeline(
                settings,
                trigger=TRIGGER,
                source="api" if source == "auto" else source,
                progress=progress,
                engine=engine,
            )
        except SourceError as exc:
            if source != "auto":
                raise
            fallback = str(exc)
            progress("fetch", f"CoinGecko is unreachable ({exc}); loading the bundled sample instead")
            result = run_pipeline(settings, trigger=TRIGGER, source="sample", progress=progress, engine=engine)
        return Outcome(
            "success", run_id=result.run_id, message=fallback, snapshot_at=result.snapshot_at, used_source=result.source
        )
    except RunLocked as exc:
        return Outcome("locked", run_id=exc.holder_run_id, message=str(exc))
    except SnapshotHeld as exc:  # the plausibility gate: not a crash; the pages keep the last published data
        return Outcome(
            "held", run_id=exc.run_id, message="held: " + "; ".join(exc.reasons), snapshot_at=exc.snapshot_at
        )
    except SourceError as exc:
        return Outcome("source_error", message=str(exc))
    except PipelineError as exc:
        return Outcome("failed", message=str(exc))
    except Exception as exc:  # a bug must not kill the server silently: show it as a failed refresh
        log.exception("refresh request crashed")
        return Outcome("failed", message=f"{type(exc).__name__}: {exc}")


def serve(settings: Settings, engine: Engine, request: Request, *, progress: Progress = _quiet) -> Outcome:
    """Run a request this process has claimed, keeping its row current: the run id as soon as the
    run holds the lock, the latest progress line, then the outcome.

    A BaseException (the sidecar's shutdown, Ctrl-C) closes the request as failed and goes on.
    """
    known_run: list[str] = []

    def watch(stage: str, message: str) -> None:
        values: dict[str, object] = {"message": message[:2000]}
        if not known_run:
            holder = current_holder(engine)
            if holder is not None and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname():
                known_run.append(holder["run_id"])
                values["run_id"] = holder["run_id"]
        try:
            _update_claimed(engine, request.request_id, **values)
        except Exception:  # the run matters more than its progress line
            log.warning("could not record the progress of request %s", request.request_id, exc_info=True)
        progress(stage, message)

    try:
        outcome = execute(settings, source=request.source, progress=watch, engine=engine)
    except BaseException:
        finish(engine, request.request_id, Outcome("failed", run_id=_first(known_run), message=INTERRUPTED))
        raise
    if outcome.run_id is None and known_run:
        outcome = Outcome(outcome.outcome, known_run[0], outcome.message, outcome.snapshot_at, outcome.used_source)
    finish(engine, request.request_id, outcome)
    return outcome


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def outcome_of(engine: Engine, request: Request) -> Outcome | None:
    """A finished request's outcome as the page shows it (None while it is open)."""
    if request.is_open:
        return None
    run = get_run(engine, request.run_id) if request.run_id else None
    used_source = str(run["source"]) if run is not None else None
    snapshot_at = run["snapshot_at"] if run is not None else None
    return Outcome(request.outcome or "failed", request.run_id, request.message, snapshot_at, used_source)


def run_stage(engine: Engine, run_id: str) -> str | None:
    """The stage the run log shows for a request's run."""
    with engine.connect() as conn:
        stage = conn.execute(select(pipeline_runs.c.stage).where(pipeline_runs.c.run_id == run_id)).scalar()
    return str(stage) if stage is not None else None


# -- heartbeats -----------------------------------------------------------------------------------


def stale_after(heartbeat_seconds: float) -> timedelta:
    """How old a beat may be before its process counts as gone."""
    return timedelta(seconds=STALE_AFTER_BEATS * heartbeat_seconds)


def is_fresh(beat_at: datetime, heartbeat_seconds: float, now: datetime | None = None) -> bool:
    """The one liveness rule for a heartbeat: it beat within the last STALE_AFTER_BEATS intervals."""
    return (now or utcnow()) - beat_at <= stale_after(heartbeat_seconds)


def heartbeat_name(role: str) -> str:
    """This process's heartbeat row (and what its claims name): ``scheduler pid 42 on web-1``."""
    return f"{role} pid {os.getpid()} on {socket.gethostname()}"


def beat(engine: Engine, name: str, role: str) -> None:
    """Record that ``name`` is alive now."""
    now = utcnow()
    with engine.begin() as conn:
        updated = conn.execute(update(sidecar_heartbeats).where(sidecar_heartbeats.c.name == name).values(beat_at=now))
        if updated.rowcount == 1:
            return
        conn.execute(
            insert(sidecar_heartbeats).values(
                name=name, role=role, host=socket.gethostname(), pid=os.getpid(), started_at=now, beat_at=now
            )
        )


def forget(engine: Engine, name: str) -> None:
    """Remove a heartbeat row (a clean stop: nobody should wait for this process)."""
    with engine.begin() as conn:
        conn.execute(delete(sidecar_heartbeats).where(sidecar_heartbeats.c.name == name))


def fresh_heartbeats(engine: Engine, heartbeat_seconds: float, role: str | None = None) -> list[str]:
    """Names of the processes that beat lately (of one role, or all)."""
    since = utcnow() - stale_after(heartbeat_seconds)
    query = select(sidecar_heartbeats.c.name).where(sidecar_heartbeats.c.beat_at >= since)
    if role is not None:
        query = query.where(sidecar_heartbeats.c.role == role)
    with engine.connect() as conn:
        return [str(name) for name in conn.execute(query).scalars()]


def sidecar_alive(engine: Engine, heartbeat_seconds: float) -> bool:
    """Will a scheduler sidecar pick up a request? (Has one beaten lately?)"""
    return bool(fresh_heartbeats(engine, heartbeat_seconds, ROLE_SIDECAR))


def reap_orphans(engine: Engine, heartbeat_seconds: float) -> list[str]:
    """Close every claimed request whose server stopped beating: failed, so the slot opens again."""
    alive = set(fresh_heartbeats(engine, heartbeat_seconds))
    with engine.connect() as conn:
        claimed = conn.execute(
            select(run_requests.c.request_id, run_requests.c.claimed_by, run_requests.c.run_id).where(
                run_requests.c.state == "claimed"
            )
        ).all()
    reaped = []
    for request_id, claimed_by, run_id in claimed:
        if claimed_by in alive:
            continue
        message = f"{claimed_by or 'its server'} stopped while serving it"
        if finish(engine, request_id, Outcome("failed", run_id=run_id, message=message)):
            reaped.append(request_id)
            log.warning("refresh request %s: %s", request_id, message)
    return reaped


def close_claims(engine: Engine, claimed_by: str, message: str) -> list[str]:
    """Close every request still claimed by ``claimed_by`` as failed (a server stopping mid-request)."""
    with engine.connect() as conn:
        claimed = conn.execute(
            select(run_requests.c.request_id, run_requests.c.run_id).where(
                run_requests.c.state == "claimed", run_requests.c.claimed_by == claimed_by
            )
        ).all()
    return [
        request_id
        for request_id, run_id in claimed
        if finish(engine, request_id, Outcome("failed", run_id=run_id, message=message))
    ]


def prune_heartbeats(engine: Engine, older_than: timedelta = timedelta(days=1)) -> None:
    """Drop the rows of processes long gone (a killed sidecar leaves its row behind)."""
    with engine.begin() as conn:
        conn.execute(delete(sidecar_heartbeats).where(sidecar_heartbeats.c.beat_at < utcnow() - older_than))


class Heartbeat:
    """Beats for this process from a background thread while in use; removes its row on exit."""

    def __init__(self, engine: Engine, role: str, interval_seconds: float) -> None:
        self.engine = engine
        self.role = role
        self.name = heartbeat_name(role)
        self.interval = max(interval_seconds, 0.1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        beat(self.engine, self.name, self.role)
        self._thread = threading.Thread(target=self._run, name=f"{self.role}-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                beat(self.engine, self.name, self.role)
            except Exception:  # keep beating through a transient database error
                log.warning("could not write the heartbeat", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            forget(self.engine, self.name)
        except Exception:  # a stale row is harmless: it stops counting after STALE_AFTER_BEATS
            log.warning("could not remove the heartbeat", exc_info=True)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_here(
    request: Request, *, sidecar_is_alive: bool, heartbeat_seconds: float, now: datetime | None = None
) -> bool:
    """Should a dashboard serve its own pending request? Yes when no sidecar beats (a lone
    ``streamlit run``), or when a live sidecar left it pending for as long as a dead one would
    be noticed (busy with a long scheduled run: claiming then meets that run's lock and follows it)."""
    if request.state != "pending":
        return False
    return not sidecar_is_alive or (now or utcnow()) - request.requested_at > stale_after(heartbeat_seconds)
