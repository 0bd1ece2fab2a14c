"""The one run context every writing command uses (SQLite and PostgreSQL): lock, run-log row, one end."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from pipeline import prune as prune_module
from pipeline.db import make_engine, prepare_database
from pipeline.errors import DatabaseError, PipelineError, RunLocked, SnapshotHeld
from pipeline.flow import run_pipeline
from pipeline.prune import prune
from pipeline.run_context import failure_message, run_context
from pipeline.runs import RunLease, current_holder, get_run


@dataclass
class Counted:
    status: str = "running"
    silver_rows: int = 0

    def counts(self) -> dict[str, object]:
        return {"silver_rows": self.silver_rows}


def runs(settings) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(
            text("SELECT run_id, trigger, source, status, silver_rows, error_message, notes FROM pipeline_runs"), conn
        )


def test_a_block_that_ends_is_a_success_with_its_counts_and_the_lock_is_free(settings):
    with run_context(settings, trigger="cli", origin="replay") as run:
        assert current_holder(run.engine)["run_id"] == run.run_id
        assert get_run(run.engine, run.run_id)["status"] == "running"
        result = run.track(Counted())
        result.silver_rows = 7
    assert result.status == "success"
    (row,) = runs(settings).itertuples()
    assert (row.run_id, row.source, row.trigger, row.status, row.silver_rows) == (
        run.run_id,
        "replay",
        "cli",
        "success",
        7,
    )
    assert current_holder(run.engine) is None


def test_an_error_is_recorded_once_as_one_line_and_raised_as_it_was(settings):
    boom = ValueError("boom")
    with pytest.raises(ValueError) as raised, run_context(settings, trigger="cli", origin="replay") as run:
        run.track(Counted(silver_rows=3))
        run.stage("silver")
        raise boom
    assert raised.value is boom
    (row,) = runs(settings).itertuples()
    assert (row.status, row.error_message, row.silver_rows) == ("failed", "ValueError: boom", 3)
    assert get_run(run.engine, run.run_id)["stage"] == "silver"
    assert current_holder(run.engine) is None


def test_a_database_error_is_raised_as_one_line_exit_5_chained_to_the_original(settings):
    original = IntegrityError("UPDATE pipeline_runs SET secret = 1", {}, Exception("CHECK constraint failed: sabotage"))
    with pytest.raises(DatabaseError) as raised, run_context(settings, trigger="cli", origin="replay"):
        raise original
    assert raised.value.exit_code == 5 and raised.value.__cause__ is original
    (row,) = runs(settings).itertuples()
    assert row.status == "failed" and "sabotage" in row.error_message and "UPDATE" not in row.error_message


def test_a_held_snapshot_ends_the_run_held(settings):
    with pytest.raises(SnapshotHeld), run_context(settings, trigger="schedule", origin="api") as run:
        result = run.track(Counted())
        raise SnapshotHeld(["only 100 coins"])
    assert result.status == "held"
    (row,) = runs(settings).itertuples()
    assert (row.status, row.error_message) == ("held", "held: only 100 coins")


def test_an_end_the_body_recorded_is_kept(settings):
    with pytest.raises(PipelineError), run_context(settings, trigger="cli", origin="backfill") as run:
        run.track(Counted())
        run.fail("backfill incomplete: 1 of 2 coin(s) failed")
        raise PipelineError("something else on the way out")
    (row,) = runs(settings).itertuples()
    assert (row.status, row.error_message) == ("failed", "backfill incomplete: 1 of 2 coin(s) failed")


def test_a_held_lock_refuses_before_anything_is_written(settings):
    engine = prepare_database(settings)
    with RunLease(engine, "someone-else"), pytest.raises(RunLocked, match="someone-else"):
        with run_context(settings, trigger="cli", origin="replay", engine=engine):
            pytest.fail("the body must not run")
    assert runs(settings).empty


def test_failure_message_is_one_line_without_an_empty_tail():
    assert failure_message(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert failure_message(KeyError("x")) == "KeyError: 'x'"
    assert failure_message(PipelineError("no bronze")) == "no bronze"


def test_prune_is_a_run_in_the_log_and_running_now_names_it(settings, monkeypatch):
    run_pipeline(settings, source="sample")
    seen = {}
    real_scan = prune_module.scan_bronze

    def scan(*args, **kwargs):
        engine = make_engine(settings.database_url)
        holder = current_holder(engine)
        seen["holder"] = holder and holder["run_id"]
        seen["row"] = holder and get_run(engine, holder["run_id"])
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(prune_module, "scan_bronze", scan)
    prune(settings, keep_days=30, dry_run=True)
    assert seen["holder"] is None  # a dry run takes no lock and logs no run
    assert list(runs(settings).source) == ["sample"]

    prune(settings, keep_days=30)
    assert seen["row"] is not None and seen["row"]["source"] == "prune" and seen["row"]["status"] == "running"
    pruned = runs(settings).set_index("run_id").loc[seen["holder"]]
    assert (pruned.source, pruned.trigger, pruned.status) == ("prune", "cli", "success")
    assert pruned.notes.startswith("prune, keep 30 day(s): removed ")


def test_a_failed_prune_is_a_failed_run(settings, monkeypatch):
    run_pipeline(settings, source="sample")

    def broken(*args, **kwargs):
        raise PipelineError("could not remove bronze folder x: Permission denied")

    monkeypatch.setattr(prune_module, "scan_bronze", broken)
    with pytest.raises(PipelineError, match="Permission denied"):
        prune(settings, keep_days=30)
    row = runs(settings).set_index("source").loc["prune"]
    assert row.status == "failed" and row.error_message == "could not remove bronze folder x: Permission denied"
    assert current_holder(make_engine(settings.database_url)) is None
