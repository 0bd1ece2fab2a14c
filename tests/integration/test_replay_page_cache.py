"""SQLite: a replay appends each silver batch with a small page cache (the loading process does not
keep pages of earlier batches beside the batches in flight) and every connection has the usual cache
back for gold, when a batch loads and when it fails; PostgreSQL is left as it is."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from pipeline import flow
from pipeline.db import SQLITE_BATCH_CACHE_KIB, SQLITE_CACHE_KIB, batch_page_cache, make_engine
from pipeline.flow import replay, run_pipeline
from tests.conftest import make_settings


@pytest.fixture
def sqlite_settings(tmp_path):
    return make_settings(f"sqlite:///{tmp_path / 'warehouse.db'}", tmp_path / "data")


def cache_kib(conn) -> int:
    return -int(conn.execute(text("PRAGMA cache_size")).scalar())


def test_a_replayed_batch_loads_with_the_small_cache_and_gold_has_the_usual_one(sqlite_settings, monkeypatch):
    settings = sqlite_settings
    run_pipeline(settings, source="sample")
    seen_by_batches: list[int] = []
    seen_by_gold: list[int] = []
    load_batch, build_gold = flow.load_batch, flow.build_gold

    def watched_load(conn, prepared):
        seen_by_batches.append(cache_kib(conn))
        return load_batch(conn, prepared)

    def watched_gold(engine, *args, **kwargs):
        with engine.connect() as conn:
            seen_by_gold.append(cache_kib(conn))
        return build_gold(engine, *args, **kwargs)

    monkeypatch.setattr(flow, "load_batch", watched_load)
    monkeypatch.setattr(flow, "build_gold", watched_gold)
    result = replay(settings)

    assert result.silver_rows > 0
    assert seen_by_batches and set(seen_by_batches) == {SQLITE_BATCH_CACHE_KIB}
    assert seen_by_gold == [SQLITE_CACHE_KIB]


def test_the_usual_cache_comes_back_after_a_batch_that_failed(sqlite_settings):
    engine = make_engine(sqlite_settings.database_url)
    with pytest.raises(RuntimeError, match="the load broke"), engine.begin() as conn, batch_page_cache(conn):
        assert cache_kib(conn) == SQLITE_BATCH_CACHE_KIB
        raise RuntimeError("the load broke")
    with engine.connect() as conn:
        assert cache_kib(conn) == SQLITE_CACHE_KIB


def test_postgresql_keeps_its_own_settings(postgres_url):
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        before = conn.execute(text("SHOW work_mem")).scalar()
        with batch_page_cache(conn):
            assert conn.execute(text("SHOW work_mem")).scalar() == before
