"""The run log (``pipeline_runs``) and the single-flight lock. The only writer of both.

The lock is a lease row in ``pipeline_lock``, so it works the same across
processes on SQLite and PostgreSQL: the holder renews it while it works; a
holder that died (even by SIGKILL) stops renewing, and its lease is taken over
once it expires, or at once when the holder's pid is gone on this host.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from pipeline.db import utcnow
from pipeline.errors import RunLocked
from pipeline.schema import pipeline_lock, pipeline_runs

log = logging.getLogger(__name__)

LOCK_NAME = "pipeline"
TRIGGERS = ("schedule", "button", "cli")
SOURCES = ("api", "sample", "replay", "backfill")
STAGES = ("fetch", "bronze", "silver", "gold")


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20261127T083000Z-1a2b3c``."""
    now = now or utcnow()
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLease:
    """Holds the pipeline lock for one run and renews it from a background thread."""

    def __init__(self, engine: Engine, run_id: str, ttl_seconds: float = 120.0):
        self.engine = engine
        self.run_id = run_id
        self.ttl = timedelta(seconds=ttl_seconds)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> "RunLease":
        """Take the lock or raise RunLocked naming the run that holds it."""
        for attempt in range(5):
            try:
                self._try_acquire()
                break
            except OperationalError:  # SQLite: another process wrote between our read and write
                if attempt == 4:
                    raise RunLocked("another pipeline run is starting right now") from None
                time.sleep(0.2 * (attempt + 1))
        self._thread = threading.Thread(target=self._renew, name="pipeline-lock-renewal", daemon=True)
        self._thread.start()
        return self

    def _try_acquire(self) -> None:
        now = utcnow()
        row = {"name": LOCK_NAME, "run_id": self.run_id, "host": self.host, "pid": self.pid,
               "acquired_at": now, "expires_at": now + self.ttl}
        with self.engine.begin() as conn:
            holder = conn.execute(select(pipeline_lock).where(pipeline_lock.c.name == LOCK_NAME)
                                  .with_for_update()).mappings().first()
            if holder is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(pipeline_lock).values(**row))
                except IntegrityError:
                    raise RunLocked("another pipeline run has just started") from None
            else:
                stale = holder["expires_at"] < now or (holder["host"] == self.host and holder["pid"] != self.pid
                                                       and not _pid_alive(holder["pid"]))
                if not stale:
                    raise RunLocked(f"pipeline run {holder['run_id']} is already in progress "
                                    f"(started {holder['acquired_at']:%Y-%m-%d %H:%M:%S} UTC by pid {holder['pid']} "
                                    f"on {holder['host']})", holder_run_id=holder["run_id"])
                taken = conn.execute(update(pipeline_lock)
                                     .where(pipeline_lock.c.name == LOCK_NAME,
                                            pipeline_lock.c.run_id == holder["run_id"])
                                     .values(**row))
                if taken.rowcount != 1:
                    raise RunLocked("another pipeline run took the lock first")
                conn.execute(update(pipeline_runs)
                             .where(pipeline_runs.c.run_id == holder["run_id"], pipeline_runs.c.status == "running")
                             .values(status="abandoned", finished_at=now,
                                     error_message="the process running it stopped without finishing "
                                                   "(killed or crashed); its lock was taken over"))
                log.warning("took over the lock from abandoned run %s", holder["run_id"])

    def _renew(self) -> None:
        interval = max(0.5, self.ttl.total_seconds() / 3)
        while not self._stop.wait(interval):
            try:
                with self.engine.begin() as conn:
                    conn.execute(update(pipeline_lock)
                                 .where(pipeline_lock.c.name == LOCK_NAME, pipeline_lock.c.run_id == self.run_id)
                                 .values(expires_at=utcnow() + self.ttl))
            except Exception:  # keep renewing through a transient database error
                log.warning("could not renew the pipeline lock", exc_info=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        with self.engine.begin() as conn:
            conn.execute(delete(pipeline_lock).where(pipeline_lock.c.name == LOCK_NAME,
                                                     pipeline_lock.c.run_id == self.run_id))

    def __enter__(self) -> "RunLease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def current_holder(engine: Engine) -> dict | None:
    """The live lock holder, if any (an expired lease counts as free)."""
    with engine.connect() as conn:
        row = conn.execute(select(pipeline_lock).where(pipeline_lock.c.name == LOCK_NAME)).mappings().first()
    if row is None or row["expires_at"] < utcnow():
        return None
    return dict(row)


class RunLog:
    """Writes one ``pipeline_runs`` row through its life: running → success | failed."""

    def __init__(self, engine: Engine, run_id: str, *, trigger: str, source: str):
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")
        self.engine = engine
        self.run_id = run_id
        self.trigger = trigger
        self.source = source

    def start(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(pipeline_runs).values(
                run_id=self.run_id, trigger=self.trigger, source=self.source, status="running",
                started_at=utcnow(), host=socket.gethostname(), pid=os.getpid()))

    def update(self, **values) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(pipeline_runs).where(pipeline_runs.c.run_id == self.run_id).values(**values))

    def stage(self, name: str) -> None:
        self.update(stage=name)

    def succeed(self, **counts) -> None:
        self.update(status="success", finished_at=utcnow(), **counts)

    def fail(self, message: str, **counts) -> None:
        self.update(status="failed", finished_at=utcnow(), error_message=message[:2000], **counts)


def recent_runs(engine: Engine, limit: int = 20) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(pipeline_runs).order_by(pipeline_runs.c.started_at.desc()).limit(limit))
        return [dict(r) for r in rows.mappings()]


def get_run(engine: Engine, run_id: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == run_id)).mappings().first()
    return dict(row) if row else None
