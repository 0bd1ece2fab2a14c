"""One writing run: the lock, its run-log row, and how it ends. Every command that writes uses it.

::

    with run_context(settings, trigger="cli", origin="replay") as run:
        result = run.track(RunResult(run_id=run.run_id, source="replay"))
        run.stage("silver")
        ...                       # the command's own work
        run.succeed()             # or let the block end: that is a success too

On the way in: the pipeline lock is taken (``RunLease``: RunLocked before anything is
written, renewed from a background thread while the run works), the ``pipeline_runs``
row is opened as ``running``, and the run's log records are tagged with its id.

On the way out, exactly one end is recorded, with the tracked result's counts:

* the body recorded one itself (``succeed``, ``fail``, ``hold``): nothing more;
* the block ended normally: ``success``;
* :class:`SnapshotHeld`: ``held`` with its reasons, then raised;
* any other exception (``Interrupted`` by SIGTERM too): ``failed`` with one line; a
  database error is raised as its one-line PipelineError (exit 5, no SQL), chained to it.

Recording an end never hides the error being raised: when the database cannot take
the record, the lease is released (or expires) and the next run marks this one
``abandoned`` (``runs.reap_dead_runs``, the liveness rule of :mod:`pipeline.runs`).
Then the lock is released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol, TypeVar

from sqlalchemy import Engine

from pipeline import budget, interrupts, logs
from pipeline.config import Settings
from pipeline.db import as_pipeline_error, prepare_database
from pipeline.errors import PipelineError, SnapshotHeld
from pipeline.runs import RunLease, RunLog, new_run_id

log = logs.get_logger(__name__)


class Tracked(Protocol):
    """What a command reports about its run: a status the context sets, and the counts to log."""

    status: str

    def counts(self) -> Mapping[str, object]: ...


T = TypeVar("T", bound=Tracked)


def failure_message(exc: BaseException) -> str:
    """The one line a failed run keeps: a PipelineError's own words, else ``Type: message``."""
    detail = str(exc)
    if isinstance(exc, PipelineError):
        return detail or type(exc).__name__
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class RunContext:
    """A run in progress: its id, engine and settings, its run-log row, and the result it reports."""

    def __init__(self, settings: Settings, engine: Engine, run_log: RunLog, lease: RunLease):
        self.settings = settings
        self.engine = engine
        self.log = run_log
        self.lease = lease
        self.result: Tracked | None = None
        self.status = "running"

    @property
    def run_id(self) -> str:
        return self.log.run_id

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def track(self, result: T) -> T:
        """The result whose counts every end records (and whose status it sets)."""
        self.result = result
        return result

    def counts(self) -> dict[str, object]:
        return dict(self.result.counts()) if self.result is not None else {}

    def stage(self, name: str) -> None:
        """The stage the run is in (what the dashboard shows while it runs, and where a failure happened)."""
        self.log.stage(name)

    def succeed(self) -> None:
        self.log.succeed(**self.counts())
        self._set_status("success")

    def fail(self, message: str) -> None:
        """End the run as failed on purpose (e.g. a backfill where some coins failed); the caller then raises."""
        self.log.fail(message, **self.counts())
        self._set_status("failed")

    def hold(self, reasons: list[str]) -> None:
        self.log.hold(reasons, **self.counts())
        self._set_status("held")

    def _set_status(self, status: str) -> None:
        self.status = status
        if self.result is not None:
            self.result.status = status

    def _record(self, what: str, record: Callable[[], None]) -> None:
        """Write an end while an error is on its way out: never raises, says why in the log."""
        try:
            record()
        except Exception as record_error:  # noqa: BLE001 - the error being raised is the news
            log.info(
                "could not record the %s of run %s: %s",
                what,
                self.run_id,
                str(getattr(record_error, "orig", record_error)).strip().splitlines()[0],
            )

    def _ended_by(self, exc: BaseException) -> BaseException:
        """Record how ``exc`` ended the run; returns what to raise (a database error as one line, exit 5)."""
        if self.finished:
            return exc
        if isinstance(exc, SnapshotHeld):
            self._set_status("held")
            self._record("hold", lambda: self.log.hold(exc.reasons, **self.counts()))
            return exc
        error = as_pipeline_error(exc)
        self._set_status("failed")
        self._record("failure", lambda: self.log.fail(failure_message(error), **self.counts()))
        return error


@contextmanager
def run_context(
    settings: Settings,
    *,
    trigger: str,
    origin: str,
    engine: Engine | None = None,
    run_id: str | None = None,
) -> Iterator[RunContext]:
    """Hold the lock and the run-log row of one writing run (see the module docstring).

    ``origin``: what the run does (``runs.SOURCES``: api, sample, replay, backfill, import,
    publish, prune); ``trigger``: who asked (``runs.TRIGGERS``).
    """
    engine = engine or prepare_database(settings)
    run_id = run_id or new_run_id()
    run_log = RunLog(engine, run_id, trigger=trigger, source=origin)
    # budget.metering: the run's API calls are counted in memory and flushed to api_calls once it has ended.
    with (
        RunLease(engine, run_id, settings.lock_ttl_seconds) as lease,
        logs.bound_run(run_id),
        budget.metering(engine, settings.monthly_calls),
    ):
        run = RunContext(settings, engine, run_log, lease)
        started = False
        try:
            with interrupts.shielded():  # a stop (SIGTERM) waits for the 'running' row, then ends it as failed
                run_log.start()
                started = True
            yield run
        except BaseException as exc:
            if not started:
                raise
            error = run._ended_by(exc)
            if error is exc:
                raise
            raise error from exc
        if not run.finished:
            run.succeed()
