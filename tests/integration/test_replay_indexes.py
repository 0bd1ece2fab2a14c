"""A replay into an empty silver table builds silver's secondary indexes after its load, and the
indexes are always there again afterwards: when the replay ends, when it fails, and (after a
process was killed during the load) at the next start."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from pipeline import flow
from pipeline.db import ensure_schema, make_engine
from pipeline.flow import replay, run_pipeline
from pipeline.schema import staging_crypto_market

SECONDARY = {index.name for index in staging_crypto_market.indexes}


def secondary_indexes(settings) -> set[str]:
    engine = make_engine(settings.database_url)
    try:
        return {i["name"] for i in inspect(engine).get_indexes(staging_crypto_market.name)} & SECONDARY
    finally:
        engine.dispose()


def empty_silver(settings) -> None:
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM staging_crypto_market"))
    engine.dispose()


def test_the_secondary_indexes_are_declared():
    assert SECONDARY == {"ix_staging_crypto_market_snapshot", "ix_staging_crypto_market_coin_history"}


def test_a_replay_into_empty_silver_loads_without_them_and_builds_them_after(settings):
    run_pipeline(settings, source="sample")
    run_pipeline(settings, source="sample")
    empty_silver(settings)
    seen_during_load: list[set[str]] = []

    def progress(stage: str, message: str) -> None:
        if stage == "silver" and "rows loaded" in message:
            seen_during_load.append(secondary_indexes(settings))

    result = replay(settings, progress=progress)

    assert result.silver_rows > 0
    assert seen_during_load and all(found == set() for found in seen_during_load)
    assert secondary_indexes(settings) == SECONDARY


def test_a_replay_over_existing_silver_keeps_them_throughout(settings):
    run_pipeline(settings, source="sample")
    seen_during_load: list[set[str]] = []

    def progress(stage: str, message: str) -> None:
        if stage == "silver" and "rows loaded" in message:
            seen_during_load.append(secondary_indexes(settings))

    replay(settings, progress=progress)

    assert seen_during_load and all(found == SECONDARY for found in seen_during_load)
    assert secondary_indexes(settings) == SECONDARY


def test_a_replay_that_fails_during_the_load_puts_them_back(settings, monkeypatch):
    run_pipeline(settings, source="sample")
    empty_silver(settings)

    def broken(*args, **kwargs):
        raise RuntimeError("the load broke")

    monkeypatch.setattr(flow, "load_batch", broken)
    with pytest.raises(RuntimeError, match="the load broke"):
        replay(settings)

    assert secondary_indexes(settings) == SECONDARY


def test_a_process_killed_during_the_load_leaves_them_to_the_next_start(settings):
    run_pipeline(settings, source="sample")
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:  # what a replay killed inside its load leaves behind
        for index in staging_crypto_market.indexes:
            index.drop(conn)
    assert secondary_indexes(settings) == set()

    ensure_schema(engine)
    engine.dispose()

    assert secondary_indexes(settings) == SECONDARY
