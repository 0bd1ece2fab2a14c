"""Named errors. The CLI turns each into one clear line and a non-zero exit."""


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


class BronzeError(PipelineError):
    """Raw files on disk are missing or do not match their manifest."""
