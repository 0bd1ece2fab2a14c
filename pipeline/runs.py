"""The run log (``pipeline_runs``) and the single-flight lock. The only writer of both.

The lock is a lease row in ``pipeline_lock``, so it works the same across
processes on SQLite and PostgreSQL: the holder renews it while it works.

One liveness rule, used by every reader and writer (``holder_is_alive``): a
lease is alive while it has not expired, and, when it was taken on this host,
while its pid still runs (for this very process: while the run is still active
here). A dead holder's lease is taken over at once, and every ``running`` row
without a live lease is marked ``abandoned`` (``reap_dead_runs``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from pipeline import interrupts
from pipeline.db import utcnow
from pipeline.errors import DatabaseUnavailable, RunLocked
from pipeline.schema import pipeline_lock, pipeline_runs

log = logging.getLogger(__name__)

LOCK_NAME = "pipeline"
TRIGGERS = ("schedule", "button", "cli")
#: What a run does (the run log's ``source`` column); prune logs a run too, so "Running now" is always in the log.
SOURCES = ("api", "sample", "replay", "backfill", "import", "publish", "prune")
STAGES = ("fetch", "bronze", "silver", "gold")


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20261127T083000Z-1a2b3c``."""
    now = now or utcnow()
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


#: Runs this process is executing now: a lease naming our own pid but none of these was left behind
#: by a run whose release failed (database full or down), and is taken over at once.
_ACTIVE_RUNS: set[str] = set()

#: SQLite's words when another writer holds the file: a race to retry, not an outage.
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")

#: The lease a run takes over its own long write transaction on SQLite (``RunLease.long_write``).
LONG_WRITE_LEASE = timedelta(hours=1)

ABANDONED_MESSAGE = "the process running it stopped without finishing (killed or crashed); marked abandoned"


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

    def __init__(self, engine: Engine, run_id: str, ttl_seconds: float = 30.0):
        self.engine = engine
        self.run_id = run_id
        self.ttl = timedelta(seconds=ttl_seconds)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._paused = threading.Event()
        #: Serialises the renewal's write with ``long_write``'s, so a renewal cannot land after it.
        self._lease_write = threading.Lock()
        self._thread: threading.Thread | None = None

    def acquire(self) -> RunLease:
        """Take the lock or raise RunLocked naming the run that holds it.

        SQLite's "database is locked" (another process wrote between our read and
        write) is retried; any other database error is an outage, not a lock.
        A stop (SIGTERM) on the way in waits until the lock is ours, then gives it back.
        """
        taken = False
        try:
            with interrupts.shielded():
                for attempt in range(5):
                    try:
                        self._try_acquire()
                        break
                    except OperationalError as exc:
                        if not any(word in str(exc.orig).lower() for word in _SQLITE_BUSY):
                            raise DatabaseUnavailable(
                                f"cannot take the pipeline lock: {str(exc.orig).strip().splitlines()[0]}"
                            ) from exc
                        if attempt == 4:
                            raise RunLocked("another pipeline run is starting right now") from None
                        time.sleep(0.2 * (attempt + 1))
                taken = True
                _ACTIVE_RUNS.add(self.run_id)
                self._thread = threading.Thread(target=self._renew, name="pipeline-lock-renewal", daemon=True)
                self._thread.start()
        except BaseException:
            if taken:  # not yet owned by a `with`: nobody else would release it
                self.release()
            raise
        return self

    def _try_acquire(self) -> None:
        now = utcnow()
        row = {
            "name": LOCK_NAME,
            "run_id": self.run_id,
            "host": self.host,
            "pid": self.pid,
            "acquired_at": now,
            "expires_at": now + self.ttl,
        }
        with self.engine.begin() as conn:
            holder = (
                conn.execute(select(pipeline_lock).where(pipeline_lock.c.name == LOCK_NAME).with_for_update())
                .mappings()
                .first()
            )
            if holder is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(pipeline_lock).values(**row))
                except IntegrityError:
                    raise RunLocked("another pipeline run has just started") from None
            else:
                if holder_is_alive(holder, now):
                    raise RunLocked(
                        f"pipeline run {holder['run_id']} is already in progress "
                        f"(started {holder['acquired_at']:%Y-%m-%d %H:%M:%S} UTC by pid {holder['pid']} "
                        f"on {holder['host']})",
                        holder_run_id=holder["run_id"],
                    )
                taken = conn.execute(
                    update(pipeline_lock)
                    .where(pipeline_lock.c.name == LOCK_NAME, pipeline_lock.c.run_id == holder["run_id"])
                    .values(**row)
                )
                if taken.rowcount != 1:
                    raise RunLocked("another pipeline run took the lock first")
                log.warning("took over the lock from dead run %s", holder["run_id"])
            _mark_abandoned(conn, keep=self.run_id, now=now)

    def _renew(self) -> None:
        interval = max(0.5, self.ttl.total_seconds() / 3)
        while not self._stop.wait(interval):
            with self._lease_write:
                if self._paused.is_set():
                    continue
                try:
                    self._expire_in(self.ttl)
                except Exception:  # keep renewing through a transient database error
                    log.warning("could not renew the pipeline lock", exc_info=True)

    def _expire_in(self, lease: timedelta) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(pipeline_lock)
                .where(pipeline_lock.c.name == LOCK_NAME, pipeline_lock.c.run_id == self.run_id)
                .values(expires_at=utcnow() + lease)
            )

    @contextmanager
    def long_write(self) -> Iterator[None]:
        """Hold the lock through one write transaction that may outlast the TTL (gold of a long
        history: 200 s at 10M rows).

        SQLite has one writer: while the transaction is open the renewal cannot be written, so the
        lease would expire and the live run look dead to every other process (which could then take
        the lock). The lease is set to ``LONG_WRITE_LEASE`` first; nobody else can write meanwhile
        anyway, and a holder that dies is still seen dead at once on its host (its pid is gone).
        PostgreSQL renews the lock row beside the transaction: nothing to do.
        """
        if self.engine.dialect.name != "sqlite":
            yield
            return
        try:
            with self._lease_write:
                self._paused.set()
                self._expire_in(LONG_WRITE_LEASE)
            yield
        finally:
            with self._lease_write:
                self._paused.clear()
                try:
                    self._expire_in(self.ttl)
                except Exception:  # the renewal thread tries again within a third of the TTL
                    log.warning("could not shorten the pipeline lock's lease after a long write", exc_info=True)

    def release(self) -> None:
        """Give the lock back. Never raises: a release that cannot be written (database full or
        down) leaves a lease that ``holder_is_alive`` already calls dead in this process, and that
        expires within the TTL everywhere else. A stop (SIGTERM) waits until it is given back."""
        with interrupts.shielded():
            self._release()

    def _release(self) -> None:
        self._stop.set()
        _ACTIVE_RUNS.discard(self.run_id)
        if self._thread:
            self._thread.join(timeout=5)
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        delete(pipeline_lock).where(
                            pipeline_lock.c.name == LOCK_NAME, pipeline_lock.c.run_id == self.run_id
                        )
                    )
                return
            except SQLAlchemyError as exc:
                log.info(
                    "could not release the pipeline lock (attempt %d): %s",
                    attempt + 1,
                    str(getattr(exc, "orig", exc)).strip().splitlines()[0],
                )
                time.sleep(0.2 * (attempt + 1))

    def __enter__(self) -> RunLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_is_alive(holder: Mapping[Any, Any], now: datetime | None = None) -> bool:
    """The one liveness rule for a lease row (the lock) or a run's host/pid.

    Alive: the lease has not expired, and if it was taken on this host its process
    still runs (for this very process: the run is still active here).
    """
    now = now or utcnow()
    if holder["expires_at"] < now:
        return False
    if holder["host"] == socket.gethostname():
        if holder["pid"] == os.getpid():
            return bool(holder["run_id"] in _ACTIVE_RUNS)
        return _pid_alive(holder["pid"])
    return True


def current_holder(engine: Engine) -> dict[str, Any] | None:
    """The live lock holder, if any (a dead one counts as free)."""
    with engine.connect() as conn:
        row = conn.execute(select(pipeline_lock).where(pipeline_lock.c.name == LOCK_NAME)).mappings().first()
    if row is None or not holder_is_alive(row):
        return None
    return dict(row)


def _mark_abandoned(conn: Connection, *, keep: str | None, now: datetime) -> list[str]:
    """Every ``running`` row but ``keep`` and the live holder's becomes ``abandoned``."""
    holder = conn.execute(select(pipeline_lock).where(pipeline_lock.c.name == LOCK_NAME)).mappings().first()
    live = {keep}
    if holder is not None and holder_is_alive(holder, now):
        live.add(holder["run_id"])
    dead = [
        r
        for r in conn.execute(select(pipeline_runs.c.run_id).where(pipeline_runs.c.status == "running")).scalars()
        if r not in live
    ]
    if dead:
        conn.execute(
            update(pipeline_runs)
            .where(pipeline_runs.c.run_id.in_(dead), pipeline_runs.c.status == "running")
            .values(status="abandoned", finished_at=now, error_message=ABANDONED_MESSAGE)
        )
        log.warning("marked dead run(s) abandoned: %s", ", ".join(dead))
    return dead


def reap_dead_runs(engine: Engine) -> list[str]:
    """Mark every ``running`` row whose process is gone as ``abandoned`` (and free its lease)."""
    now = utcnow()
    with engine.begin() as conn:
        holder = conn.execute(select(pipeline_lock).where(pipeline_lock.c.name == LOCK_NAME)).mappings().first()
        if holder is not None and not holder_is_alive(holder, now):
            conn.execute(
                delete(pipeline_lock).where(
                    pipeline_lock.c.name == LOCK_NAME, pipeline_lock.c.run_id == holder["run_id"]
                )
            )
        return _mark_abandoned(conn, keep=None, now=now)


def effective_status(run: Mapping[Any, Any], holder: Mapping[Any, Any] | None) -> str:
    """A run's status as a reader should show it: a ``running`` row without a live lease is
    ``abandoned`` even before anyone has written that down (read-only commands write nothing)."""
    if run["status"] != "running":
        return str(run["status"])
    return "running" if holder is not None and holder["run_id"] == run["run_id"] else "abandoned"


class RunLog:
    """Writes one ``pipeline_runs`` row through its life: running → success | failed | held."""

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
            conn.execute(
                insert(pipeline_runs).values(
                    run_id=self.run_id,
                    trigger=self.trigger,
                    source=self.source,
                    status="running",
                    started_at=utcnow(),
                    host=socket.gethostname(),
                    pid=os.getpid(),
                )
            )

    def update(self, **values: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(pipeline_runs).where(pipeline_runs.c.run_id == self.run_id).values(**values))

    def stage(self, name: str) -> None:
        self.update(stage=name)

    def succeed(self, **counts: object) -> None:
        self.update(status="success", finished_at=utcnow(), **counts)

    def fail(self, message: str, **counts: object) -> None:
        self.update(status="failed", finished_at=utcnow(), error_message=message[:2000], **counts)

    def hold(self, reasons: list[str], **counts: object) -> None:
        """The plausibility gate held the run's snapshot: silver has it, gold does not (status ``held``)."""
        self.update(status="held", finished_at=utcnow(), error_message=("held: " + "; ".join(reasons))[:2000], **counts)


def recent_runs(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(pipeline_runs).order_by(pipeline_runs.c.started_at.desc()).limit(limit))
        return [dict(r) for r in rows.mappings()]


def get_run(engine: Engine, run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == run_id)).mappings().first()
    return dict(row) if row else None
