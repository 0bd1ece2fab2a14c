"""Named errors. The CLI turns each into one clear line and a non-zero exit."""

import signal
from datetime import datetime


class PipelineError(Exception):
    """Base class: anything the pipeline reports to a person as one line."""

    exit_code = 1


class ConfigError(PipelineError):
    """A setting in the environment is missing or malformed."""

    exit_code = 2


class SourceError(PipelineError):
    """The CoinGecko API could not be reached or kept failing until the deadline."""

    exit_code = 3


class RateLimited(SourceError):
    """CoinGecko answered 429 and asked us to wait longer than the deadline allows."""


class SchemaDrift(SourceError):
    """A response body is not the shape the API documents (truncated JSON, wrong type)."""


class ResponseTooLarge(SourceError):
    """A response body (decoded) passed COINGECKO_MAX_RESPONSE_BYTES; it was not kept and not retried."""


class RunLocked(PipelineError):
    """Another pipeline run holds the lock (scheduler, dashboard button or CLI)."""

    exit_code = 4

    def __init__(self, message: str, holder_run_id: str | None = None):
        super().__init__(message)
        self.holder_run_id = holder_run_id


class DatabaseUnavailable(PipelineError):
    """The database in DATABASE_URL cannot be reached or opened."""

    exit_code = 5


class DatabaseError(PipelineError):
    """The database refused a statement mid-run (a constraint, a changed table, bad data).

    The message is the driver's first line only: never the SQL, never its parameters
    (``pipeline.db.as_pipeline_error`` builds it).
    """

    exit_code = 5


class SnapshotHeld(PipelineError):
    """The plausibility gate kept a new snapshot out of gold (pipeline.plausibility); the dashboard keeps
    showing the last published one. ``python -m pipeline publish RUN_ID --force`` publishes it anyway."""

    exit_code = 6

    def __init__(self, reasons: list[str], run_id: str | None = None, snapshot_at: datetime | None = None):
        self.reasons = list(reasons)
        self.run_id = run_id
        self.snapshot_at = snapshot_at
        super().__init__("snapshot held, gold unchanged: " + "; ".join(self.reasons))


class SchemaNotReady(PipelineError):
    """The tables are missing or older than this code, and the command may not create them
    (read-only commands such as ``status`` never write)."""


class BronzeError(PipelineError):
    """Raw files on disk are missing or do not match their manifest."""


class ObjectStoreUnavailable(PipelineError):
    """The object store in BRONZE_URL cannot be reached (within its connect deadline) or refused a request.

    The message names the ``s3://`` location and the store's own reason, never a key."""

    exit_code = 7


class ClusterUnavailable(PipelineError):
    """The Dask scheduler given for a distributed replay cannot be reached, or has no workers."""

    exit_code = 8


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived while a command was writing.

    A BaseException (through KeyboardInterrupt), so no ``except Exception`` swallows it:
    the flow's ``except BaseException`` records the run as failed and the lease is
    released on the way out. Deriving from KeyboardInterrupt also makes psycopg cancel
    the statement in progress on the server instead of leaving the connection busy.
    """

    def __init__(self, signum: int):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (143 for SIGTERM, 130 for SIGINT)."""
        return 128 + self.signum
