"""Coin classes from CoinGecko's categories through the fake server, on SQLite and PostgreSQL:
fetch -> bronze -> ref_coin_classes, on a slow cadence, and a failure that keeps the old classes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from pipeline import bronze, classes
from pipeline.db import make_engine
from pipeline.flow import prepare_database, replay, run_pipeline
from pipeline.schema import ref_coin_classes
from tests.fakes.coingecko import load_fixture

MEMBERS = load_fixture("categories/category_members_2022-10-16.json")
EXPECTED = sorted((coin_id, classes.CATEGORY_CLASSES[category]) for category, ids in MEMBERS.items() for coin_id in ids)


@pytest.fixture
def settings(settings):
    """The shared test settings turn the classes off (PIPELINE_CLASSES_REFRESH_HOURS=0): on here, daily."""
    return settings.with_overrides(classes_refresh_hours=24)


def class_rows(settings) -> list[tuple]:
    t = ref_coin_classes
    with make_engine(settings.database_url).connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(t.c.id, t.c.coin_class, t.c.origin, t.c.updated_at).order_by(t.c.id, t.c.coin_class)
            )
        ]


def classes_runs(settings, *, include_incomplete=False) -> list[bronze.BronzeRun]:
    runs, _ = bronze.scan_runs(settings.raw_dir, include_incomplete=include_incomplete)
    return [r for r in runs if r.source == classes.BRONZE_SOURCE]


def test_an_api_run_fills_the_classes_through_bronze_and_replay_leaves_them_out(settings, fake_coingecko):
    result = run_pipeline(settings, source="api")
    assert result.status == "success" and not any("coin classes" in w for w in result.warnings)
    rows = class_rows(settings)
    assert [(i, c) for i, c, _, _ in rows] == EXPECTED
    assert {o for _, _, o, _ in rows} == {"coingecko"}
    assert [r.query["category"] for r in fake_coingecko.requests_to("category")] == list(classes.CATEGORY_CLASSES)
    (run,) = classes_runs(settings)
    assert run.run_id.endswith("-classes") and run.manifest["complete"]
    bodies = {e["endpoint"]: e for e in run.manifest["entries"]}
    assert set(bodies) == {f"category_{c}" for c in classes.CATEGORY_CLASSES}
    assert bodies["category_stablecoins"]["records"] == len(MEMBERS["stablecoins"])
    assert bodies["category_bridged-tokens"]["records"] == 0
    # Replay rebuilds from the markets runs only: the classes run is no snapshot.
    replayed = replay(settings)
    assert replayed.status == "success" and replayed.bronze_runs == [result.run_id]


def test_classes_are_fetched_at_most_once_per_period(settings, fake_coingecko):
    run_pipeline(settings, source="api")
    first = class_rows(settings)
    fake_coingecko.clear_requests()
    run_pipeline(settings, source="api")
    assert fake_coingecko.calls_to("category") == 0 and class_rows(settings) == first
    assert len(classes_runs(settings)) == 1
    # Due again once the period is over.
    engine = prepare_database(settings)
    later = first[0][3] + timedelta(hours=24)
    assert classes.refresh_if_due(settings, engine, now=later).status == "refreshed"
    assert {r[3] for r in class_rows(settings)} == {later}


def test_a_failing_category_call_keeps_the_old_classes_and_never_fails_the_run(settings, fake_coingecko):
    run_pipeline(settings, source="api")
    before = class_rows(settings)
    settings = settings.with_overrides(classes_refresh_hours=1e-9)  # due again at once
    fake_coingecko.clear_requests()
    fake_coingecko.add_fault("500", endpoint="category", times=50)
    result = run_pipeline(settings, source="api")
    assert result.status == "success"
    assert any("coin classes not refreshed" in w and "previous classes are kept" in w for w in result.warnings)
    assert class_rows(settings) == before
    failed = [r for r in classes_runs(settings, include_incomplete=True) if not r.manifest["complete"]]
    assert len(failed) == 1 and failed[0].manifest["error"]
    assert any(e["status"] == 500 for e in failed[0].manifest["entries"])  # the failed answers are in bronze
    # The next run within the hour does not try again (the slow cadence holds for failures too).
    fake_coingecko.clear_faults()
    fake_coingecko.clear_requests()
    assert run_pipeline(settings, source="api").status == "success"
    assert fake_coingecko.calls_to("category") == 0 and class_rows(settings) == before


def test_an_empty_or_wrong_stablecoins_answer_keeps_the_old_classes(settings, fake_coingecko):
    engine = prepare_database(settings)
    assert classes.refresh_if_due(settings, engine, force=True).status == "refreshed"
    before = class_rows(settings)
    fake_coingecko.set_categories({**MEMBERS, "stablecoins": []})
    outcome = classes.refresh_if_due(settings, engine, force=True)
    assert outcome.status == "failed" and "stablecoins category came back empty" in outcome.reason
    fake_coingecko.set_categories({k: v for k, v in MEMBERS.items() if k != "wrapped-tokens"})  # 404
    assert classes.refresh_if_due(settings, engine, force=True).status == "failed"
    assert class_rows(settings) == before


def test_readers_fall_back_to_the_seed_until_coingecko_classes_exist(settings, fake_coingecko):
    engine = prepare_database(settings)
    with engine.connect() as conn:
        seed = classes.stablecoin_ids(conn)
    assert {"tether", "usd-coin", "dai", "terrausd"} <= seed  # sql/seeds/ref_stablecoins.csv
    classes.refresh_if_due(settings, engine, force=True)
    with engine.connect() as conn:
        assert classes.stablecoin_ids(conn) == set(MEMBERS["stablecoins"])


def test_the_refresh_button_does_not_wait_for_classes_and_0_turns_them_off(settings, fake_coingecko):
    result = run_pipeline(settings, source="api", trigger="button")
    assert result.status == "success"
    assert fake_coingecko.calls_to("category") == 0 and class_rows(settings) == []
    off = settings.with_overrides(classes_refresh_hours=0)
    assert run_pipeline(off, source="api").status == "success"
    assert fake_coingecko.calls_to("category") == 0 and class_rows(settings) == [] and classes_runs(settings) == []


def test_new_classes_rebuild_the_whole_history_so_a_replay_gives_the_same(settings, fake_coingecko):
    """History built before the classes existed is rebuilt when they arrive (top-N totals leave
    derivative tokens out, stablecoins come from CoinGecko): replaying afterwards changes nothing."""
    fake_coingecko.add_fault("500", endpoint="global", times=100)  # the top-N basis, where classes matter
    run_pipeline(settings.with_overrides(classes_refresh_hours=0), source="api")  # no classes yet
    run_pipeline(settings, source="api")  # classes arrive with this run
    engine = make_engine(settings.database_url)

    def history() -> list[tuple]:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT snapshot_at, dominance_basis, total_market_cap, stablecoin_dominance_pct "
                    "FROM market_history ORDER BY snapshot_at"
                )
            ]

    before = history()
    assert len(before) == 2 and {b for _, b, _, _ in before} == {"top_n"}
    replay(settings)
    assert history() == before


def test_top_n_shares_add_up_to_100_with_derivative_tokens_left_out(settings, fake_coingecko):
    fake_coingecko.add_fault("500", endpoint="global", times=100)
    run_pipeline(settings, source="api")
    derivatives = {i for i, c in EXPECTED if c in ("wrapped", "liquid_staking", "bridged")}
    with make_engine(settings.database_url).connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, market_dominance_pct, dominance_basis FROM crypto_analytics_mart").all()
    assert {basis for _, _, basis in rows} == {"top_n"}
    assert derivatives & {i for i, _, _ in rows}, "the fixture must list a derivative token among the coins"
    assert all(pct is None for i, pct, _ in rows if i in derivatives)
    assert sum(pct for _, pct, _ in rows if pct is not None) == pytest.approx(100.0)
