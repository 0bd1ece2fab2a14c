"""Logging for the command line: one format for people, JSON lines for the sidecar.

Two kinds of record, both through :mod:`logging`:

* progress and a command's outcome (``[ fetch] 250 coins``, ``run … succeeded``) on the
  ``pipeline.progress`` logger (:func:`progress`, :func:`outcome`): shown by default,
  hidden by ``--quiet``;
* diagnostics on the module loggers under ``pipeline`` (``get_logger(__name__)``):
  warnings always, details only with ``--verbose``.

As text, progress goes to stdout as a bare line (``[ stage] message``) and diagnostics to
stderr with time, level and logger, as the command line always printed them. As JSON
lines every record is one object (time, level, logger, message, plus run_id and stage
when given) on one stream, so a log collector reads the sidecar without parsing text.

Only ``cli.main`` calls :func:`configure`; without it (the dashboard, a test calling the
flow) progress is dropped and warnings reach whatever handles the root logger.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

ROOT = "pipeline"
PROGRESS = "pipeline.progress"

#: ``--verbose`` / default / ``--quiet``: the level of the diagnostics, and whether progress shows.
VERBOSITIES = ("debug", "info", "warning")
#: PIPELINE_LOG_FORMAT and ``--log-format``.
FORMATS = ("text", "json")
#: ``extra`` keys a JSON line carries when a record has them.
FIELDS = ("run_id", "stage")

_DIAGNOSTIC_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """The logger of a pipeline module (``get_logger(__name__)``); names outside ``pipeline`` go under it."""
    return logging.getLogger(name if name == ROOT or name.startswith(ROOT + ".") else f"{ROOT}.{name}")


_progress_log = logging.getLogger(PROGRESS)


def progress(stage: str | None, message: str, *, run_id: str | None = None) -> None:
    """One progress line, ``[ stage] message`` as text (the flow's ``progress`` callback signature);
    without a stage, the message alone (a backfill's ``[3/250] bitcoin: ...``)."""
    _progress_log.info(message, extra=_extra(stage=stage, run_id=run_id))


def outcome(message: str, *, run_id: str | None = None, level: int = logging.INFO) -> None:
    """A command's closing line (``run … succeeded: …``), a bare line as text."""
    _progress_log.log(level, message, extra=_extra(run_id=run_id))


#: The run whose work is being logged (set by ``run_context``): every JSON line carries its id.
_current_run: ContextVar[str | None] = ContextVar("pipeline_run_id", default=None)


@contextmanager
def bound_run(run_id: str) -> Iterator[None]:
    """Tag the records logged in this block (this thread) with ``run_id``."""
    token = _current_run.set(run_id)
    try:
        yield
    finally:
        _current_run.reset(token)


def _extra(**fields: str | None) -> dict[str, str]:
    return {key: value for key, value in fields.items() if value is not None}


def _is_progress(record: logging.LogRecord) -> bool:
    return record.name == PROGRESS or record.name.startswith(PROGRESS + ".")


class TextFormatter(logging.Formatter):
    """Progress as a bare line (``[ stage] message``); anything else with time, level and logger."""

    def __init__(self) -> None:
        super().__init__(_DIAGNOSTIC_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if not _is_progress(record):
            return super().format(record)
        message = record.getMessage()
        stage = getattr(record, "stage", None)
        return f"[{stage:>6}] {message}" if stage else message


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, run_id/stage when given."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if key == "run_id" and value is None:
                value = _current_run.get()
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Handler(logging.Handler):
    """Writes to a given stream, or to sys.stdout / sys.stderr as they are when the record comes.

    Looking the stream up per record (like logging's last-resort handler) keeps a handler
    valid when a test swaps sys.stdout for each test.
    """

    def __init__(self, target: Callable[[], TextIO], accept: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__()
        self._target = target
        self.addFilter(accept)

    @property
    def stream(self) -> TextIO:
        return self._target()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self._target()
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _stdout() -> TextIO:
    return sys.stdout


def _stderr() -> TextIO:
    return sys.stderr


@dataclass
class _State:
    handlers: list[logging.Handler] = field(default_factory=list)
    levels: dict[str, int] = field(default_factory=dict)
    json_lines: bool = False


_state = _State()


def configure(verbosity: str = "info", json_lines: bool = False, stream: TextIO | None = None) -> None:
    """Send the pipeline's records to the terminal (or ``stream``), replacing an earlier configure.

    ``verbosity``: "info" (progress + warnings, the default), "debug" (``--verbose``: every
    record) or "warning" (``--quiet``: warnings and errors only). ``json_lines``: one JSON
    object a line, all on ``stream`` (default stdout). As text, progress goes to ``stream``
    (default stdout) and diagnostics to ``stream`` (default stderr).
    """
    if verbosity not in VERBOSITIES:
        raise ValueError(f"verbosity must be one of {', '.join(VERBOSITIES)}, got {verbosity!r}")
    reset()
    out: Callable[[], TextIO] = (lambda: stream) if stream is not None else _stdout
    err: Callable[[], TextIO] = (lambda: stream) if stream is not None else _stderr
    handlers: list[logging.Handler]
    if json_lines:
        handlers = [_Handler(out, lambda record: True)]
        handlers[0].setFormatter(JsonFormatter())
    else:
        handlers = [_Handler(out, _is_progress), _Handler(err, lambda record: not _is_progress(record))]
        for each in handlers:
            each.setFormatter(TextFormatter())
    root, progress_logger = logging.getLogger(ROOT), logging.getLogger(PROGRESS)
    _state.levels = {ROOT: root.level, PROGRESS: progress_logger.level}
    root.setLevel(logging.DEBUG if verbosity == "debug" else logging.WARNING)
    progress_logger.setLevel(logging.WARNING if verbosity == "warning" else logging.DEBUG)
    for each in handlers:
        root.addHandler(each)
    _state.handlers = handlers
    _state.json_lines = json_lines


def reset() -> None:
    """Undo :func:`configure` (its handlers and levels); harmless when it was not called."""
    root = logging.getLogger(ROOT)
    for handler in _state.handlers:
        root.removeHandler(handler)
    for name, level in _state.levels.items():
        logging.getLogger(name).setLevel(level)
    _state.handlers, _state.levels, _state.json_lines = [], {}, False


def progress_on_terminal() -> bool:
    """Do progress lines go, as text, to a terminal (where a progress bar is worth drawing)?"""
    if _state.json_lines:
        return False
    for handler in _state.handlers:
        if isinstance(handler, _Handler) and handler.filter(_PROBE):
            isatty = getattr(handler.stream, "isatty", None)
            return bool(isatty and isatty())
    return False


_PROBE = logging.LogRecord(PROGRESS, logging.INFO, __file__, 0, "", None, None)
