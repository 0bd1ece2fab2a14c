"""Silver history as a Delta Lake table (LAKE_URL): every run's silver rows, partitioned by snapshot date.

Why: the warehouse holds what the dashboard reads (and prune drops old months); the lake keeps silver's
history as open Parquet files plus a Delta log, which any engine reads (pandas, pyarrow, DuckDB, Polars).

* A live run writes its rows in ONE commit, after its silver transactions succeeded and before gold is
  published. The commit replaces exactly the run's own snapshots (an overwrite with a predicate on
  ``snapshot_at``): a new snapshot is appended, a snapshot written again (the bundled sample) is not
  duplicated. A run that fails before the commit leaves the table as it was; a failed commit is the
  run's failure, one line (:class:`LakeError`).
* A replay rebuilds the table from the replayed batches: the first overwrites it, later ones append,
  so memory holds one batch (~10k rows). A replay that fails part-way restores the version it started from.

Rows keep silver's types (``pipeline.silver.transform.silver_schema``: timestamps as timestamp[us],
floats as float64, NULL stays NULL) plus ``snapshot_date`` (date32), the partition column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import logs
from pipeline.config import Settings, mask_url
from pipeline.errors import PipelineError
from pipeline.silver.transform import SILVER_COLUMNS, silver_schema

log = logs.get_logger(__name__)

#: The partition column: the UTC date of ``snapshot_at``.
PARTITION = "snapshot_date"

#: Every network call has a deadline: object storage requests included (object_store's client timeout).
STORAGE_TIMEOUT = "60s"


class LakeError(PipelineError):
    """The lake table could not be written (the run is recorded failed with this one line)."""


def lake_schema() -> Any:
    """Silver's Arrow schema plus the partition column."""
    return silver_schema().append(pa.field(PARTITION, pa.date32()))


def lake_rows(rows: Any) -> Any:
    """Silver rows (a pyarrow Table with silver's columns) as lake rows: silver's columns and types, in
    its order, plus ``snapshot_date``."""
    table = rows.select(SILVER_COLUMNS).cast(silver_schema())
    return table.append_column(PARTITION, pc.cast(table.column("snapshot_at"), pa.date32()))


def storage_options(settings: Settings) -> dict[str, str] | None:
    """delta-rs storage options: the AWS_* values for an ``s3://`` table (never logged), None for a folder."""
    if not settings.lake_storage_options:
        return None
    return {"timeout": STORAGE_TIMEOUT, **dict(settings.lake_storage_options)}


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 300 else text[:297] + "..."


def _literal(value: date | datetime) -> str:
    return "'" + (value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()) + "'"


def snapshots_predicate(times: list[datetime]) -> str:
    """The rows of these snapshots (their dates first, so whole partitions are skipped)."""
    dates = sorted({t.date() for t in times})
    return (
        f"{PARTITION} IN ({', '.join(map(_literal, dates))}) "
        f"AND snapshot_at IN ({', '.join(map(_literal, sorted(set(times))))})"
    )


class LakeSink:
    """Where one run's silver rows go on their way to the lake table.

    ``rebuild`` (a replay): each batch is written as it comes (the first replaces the table).
    Otherwise (a live run): the batches are kept until :meth:`commit` writes them in one commit.
    deltalake is imported where it is used: a run without LAKE_URL never loads delta-rs.
    """

    def __init__(self, url: str, options: dict[str, str] | None, *, rebuild: bool):
        self.url = url
        self.options = options
        self.rebuild = rebuild
        self.rows = 0
        self.commits = 0
        self._pending: list[Any] = []
        self._started_from: int | None = None

    def add(self, rows: Any) -> None:
        """One silver batch (as ``PreparedBatch.rows``)."""
        if not rows.num_rows:
            return
        table = lake_rows(rows)
        self.rows += table.num_rows
        if not self.rebuild:
            self._pending.append(table)
            return
        if self.commits == 0:
            self._started_from = self.version()
            self._write(table, mode="overwrite", schema_mode="overwrite")
        else:
            self._write(table, mode="append")

    def commit(self) -> None:
        """A live run's one commit (nothing to write: no commit); a rebuild with no rows empties the table."""
        if self.rebuild:
            if self.commits == 0:
                self._started_from = self.version()
                self._write(lake_schema().empty_table(), mode="overwrite", schema_mode="overwrite")
            return
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending = []
        times = table.column("snapshot_at").unique().to_pylist()
        self._write(table, mode="overwrite", predicate=snapshots_predicate(times), schema_mode="merge")

    def abort(self) -> None:
        """The run failed: drop what a live run kept; put back the table a failed rebuild had started to replace.

        Never raises: the run's own error is the news."""
        self._pending = []
        if not (self.rebuild and self.commits):
            return
        try:
            if self._started_from is None:  # there was no table: leave an empty one, not a partial one
                self._write(lake_schema().empty_table(), mode="overwrite", schema_mode="overwrite")
            else:
                from deltalake import DeltaTable

                DeltaTable(self.url, storage_options=self.options).restore(self._started_from)
        except Exception as exc:  # noqa: BLE001 - the replay's error is being raised
            log.warning("could not restore the lake table after the failed replay: %s", _one_line(exc))

    def version(self) -> int | None:
        """The table's current version (None: no table there yet)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return int(DeltaTable(self.url, storage_options=self.options).version())
        except TableNotFoundError:
            return None
        except Exception as exc:
            raise LakeError(f"lake table {mask_url(self.url)} could not be read: {_one_line(exc)}") from exc

    def _write(self, table: Any, *, mode: str, **options: Any) -> None:
        from deltalake import write_deltalake

        if "://" not in self.url and Path(self.url).is_file():  # delta-rs would say "Path does not exist"
            raise LakeError(f"lake write to {self.url} failed: it is a file, not a folder")
        try:
            write_deltalake(
                self.url,
                table,
                mode=mode,  # type: ignore[call-overload]  # the overloads split modes; each call is valid
                partition_by=[PARTITION],
                storage_options=self.options,
                **options,
            )
        except Exception as exc:
            raise LakeError(f"lake write to {mask_url(self.url)} failed: {_one_line(exc)}") from exc
        self.commits += 1


class Carrier(Protocol):
    """The run result the sink rides on (``flow.RunResult``): silver's ``apply`` hands it each batch."""

    lake: LakeSink | None


@contextmanager
def writing(
    settings: Settings, result: Carrier, *, rebuild: bool, progress: Callable[[str, str], None] | None = None
) -> Iterator[LakeSink | None]:
    """Around a run's silver load: ``result.lake`` collects the batches, the lake commit follows a clean exit
    (and a ``progress`` line says what it wrote). Without LAKE_URL this does nothing (``result.lake`` stays None)."""
    if settings.lake_url is None:
        yield None
        return
    sink = LakeSink(settings.lake_url, storage_options(settings), rebuild=rebuild)
    result.lake = sink
    try:
        yield sink
    except BaseException:
        sink.abort()
        raise
    finally:
        result.lake = None
    sink.commit()
    line = f"lake: {sink.rows} rows in {sink.commits} commit(s) to {mask_url(settings.lake_url)}"
    if progress is not None:
        progress("silver", line)
    else:
        log.info("%s", line)
