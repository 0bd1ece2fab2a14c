"""Sectors from CoinGecko's categories through the fake server (real HTTP over loopback, real
recorded bodies), on SQLite and PostgreSQL: fetch -> bronze -> staging_sector_snapshot /
ref_sector_members -> sector_ranking / sector_history, on their cadences; a failure never fails
the run and keeps the previous sector data; replay rebuilds the sectors from bronze."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from pipeline import bronze, budget, sectors
from pipeline.db import make_engine
from pipeline.flow import prepare_database, replay, run_pipeline
from pipeline.gold import build_gold
from pipeline.schema import (
    quarantine_sector_snapshot,
    ref_sector_members,
    sector_history,
    sector_ranking,
    staging_global_market,
    staging_sector_snapshot,
)
from tests.fakes.coingecko import REPO_ROOT, default_categories_body, load_fixture

REAL = REPO_ROOT.parent / "shared" / "data" / "real"

MEMBERS = {
    **load_fixture("categories/sector_members_2022-10-16.json"),
    "stablecoins": load_fixture("categories/category_members_2022-10-16.json")["stablecoins"],
}
LISTED = {r["category_id"] for r in load_fixture("categories/categories_list_2023-01-08_JKorf-CoinGecko.Net.json")}


@pytest.fixture
def settings(settings):
    """The shared test settings turn sectors off (PIPELINE_SECTORS_EVERY_MINUTES=0): on here, hourly."""
    return settings.with_overrides(sectors_every_minutes=60, sector_members_every_minutes=1440)


def rows(settings, table, *columns, order=None):
    with make_engine(settings.database_url).connect() as conn:
        cols = [table.c[c] for c in columns]
        return [tuple(r) for r in conn.execute(select(*cols).order_by(*(order or cols)))]


def count(settings, table) -> int:
    with make_engine(settings.database_url).connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar()


def sector_runs(settings, *, include_incomplete=False) -> list[bronze.BronzeRun]:
    runs, _ = bronze.scan_runs(settings.raw_dir, include_incomplete=include_incomplete)
    return [r for r in runs if r.source == sectors.BRONZE_SOURCE]


def test_an_api_run_fetches_sectors_into_bronze_silver_and_gold(settings, fake_coingecko):
    result = run_pipeline(settings, source="api")
    assert result.status == "success" and not any("sector" in w for w in result.warnings)
    body = default_categories_body()
    # The calls: one /coins/categories, one list, one /coins/markets?category= per tracked sector.
    assert fake_coingecko.calls_to("categories") == 1 and fake_coingecko.calls_to("categories_list") == 1
    assert [r.query["category"] for r in fake_coingecko.requests_to("category")] == list(settings.tracked_sectors)
    (run,) = sector_runs(settings)
    assert run.run_id == result.run_id + "-sectors" and run.manifest["complete"]
    endpoints = {e["endpoint"] for e in run.manifest["entries"]}
    assert endpoints == {"categories", "categories_list"} | {f"category_{s}" for s in settings.tracked_sectors}
    # Silver: every category of the real body, NULL market caps kept as NULL, nothing quarantined.
    assert count(settings, staging_sector_snapshot) == len(body) and count(settings, quarantine_sector_snapshot) == 0
    nulls = sum(1 for r in body if r.get("market_cap") is None)
    with make_engine(settings.database_url).connect() as conn:
        assert (
            conn.execute(
                select(func.count())
                .select_from(staging_sector_snapshot)
                .where(staging_sector_snapshot.c.market_cap.is_(None))
            ).scalar()
            == nulls
        )
    # Members: the fake's recorded records of each tracked sector.
    members = rows(settings, ref_sector_members, "category_id", "coin_id")
    assert members == sorted((s, c) for s in settings.tracked_sectors for c in MEMBERS[s])
    # Gold ranking: every category, ranked by market cap; share of the whole market from /global.
    ranking = rows(
        settings,
        sector_ranking,
        "category_id",
        "sector_rank",
        "market_cap",
        "share_of_market_pct",
        "tracked_coin_count",
        "is_tracked",
        "global_snapshot_at",
        order=[sector_ranking.c.category_id],
    )
    assert len(ranking) == len(body)
    by_id = {r[0]: r for r in ranking}
    largest = max((r for r in body if r.get("market_cap") is not None), key=lambda r: r["market_cap"])
    assert by_id[largest["id"]][1] == 1
    # The default recorded /global is 5.5 h older than its coins: not usable, so no share (not a wrong one).
    assert {r[3] for r in ranking} == {None} and {r[6] for r in ranking} == {None}
    for sector in settings.tracked_sectors:
        if sector in by_id:  # the 2023 fallback body lacks layer-1 and artificial-intelligence
            assert by_id[sector][4] == len(MEMBERS[sector]) and bool(by_id[sector][5])
    untracked = next(r for r in ranking if r[0] not in settings.tracked_sectors)
    assert untracked[4] is None and not untracked[5]
    # Gold history: the tracked sectors and the ten largest, one row each for this snapshot.
    history = {r[0] for r in rows(settings, sector_history, "category_id")}
    ten = {
        r["id"]
        for r in sorted((r for r in body if r.get("market_cap") is not None), key=lambda r: -r["market_cap"])[:10]
    }
    assert history == ten | {s for s in settings.tracked_sectors if s in by_id}


@pytest.mark.skipif(not REAL.is_dir(), reason="the shared real recordings are not next to the repo")
def test_the_share_of_the_market_is_of_the_same_runs_global_on_a_real_day(settings, fake_coingecko):
    """2023-01-08: /coins/markets, /global and /coins/categories all recorded that day (JKorf/CoinGecko.Net)."""
    fake_coingecko.set_markets(json.loads((REAL / "markets/markets_2023-01-08_JKorf-CoinGecko.Net.json").read_text()))
    global_body = json.loads((REAL / "global/global_2023-01-08_JKorf-CoinGecko.Net.json").read_text())
    fake_coingecko.set_global(global_body)
    body = load_fixture("categories/categories_2023-01-08_JKorf-CoinGecko.Net.utf8.json")
    fake_coingecko.set_categories_body(body)
    result = run_pipeline(settings, source="api")
    total = global_body["data"]["total_market_cap"]["usd"]
    ranking = rows(settings, sector_ranking, "category_id", "share_of_market_pct", "global_snapshot_at", "sector_rank")
    assert len(ranking) == len(body)
    with make_engine(settings.database_url).connect() as conn:
        run_global = conn.execute(
            select(staging_global_market.c.snapshot_at).where(staging_global_market.c.run_id == result.run_id)
        ).scalar()
    for category_id, share, global_at, _rank in ranking:
        record = next(r for r in body if r["id"] == category_id)
        assert global_at == run_global
        assert share == pytest.approx(record["market_cap"] * 100 / total)
    defi = next(r for r in ranking if r[0] == "decentralized-finance-defi")
    assert 0 < defi[1] < 100
    history = rows(settings, sector_history, "category_id", "share_of_market_pct")
    assert dict(history)["decentralized-finance-defi"] == pytest.approx(defi[1])


def test_sectors_follow_their_cadences(settings, fake_coingecko):
    run_pipeline(settings, source="api")
    fake_coingecko.clear_requests()
    run_pipeline(settings, source="api")  # within the hour: no sector call at all
    assert fake_coingecko.calls_to("categories") == 0 and fake_coingecko.calls_to("category") == 0
    assert len(sector_runs(settings)) == 1
    engine = prepare_database(settings)
    first = budget.last_fetch(engine, budget.CATEGORIES)
    assert first is not None and budget.last_fetch(engine, budget.CATEGORY_MEMBERS) == first
    # An hour later the snapshot is due, the members (daily) are not.
    assert sectors.refresh_if_due(settings, engine, now=first + timedelta(minutes=60)).status == "refreshed"
    assert fake_coingecko.calls_to("categories") == 1 and fake_coingecko.calls_to("category") == 0
    assert fake_coingecko.calls_to("categories_list") == 0
    # A day later both are.
    assert sectors.refresh_if_due(settings, engine, now=first + timedelta(days=1)).status == "refreshed"
    assert fake_coingecko.calls_to("categories") == 2 and fake_coingecko.calls_to("category") == len(
        settings.tracked_sectors
    )
    with engine.connect() as conn:
        assert conn.execute(select(func.count(func.distinct(staging_sector_snapshot.c.snapshot_at)))).scalar() == 3
        assert set(conn.execute(select(ref_sector_members.c.seen_at)).scalars()) == {first + timedelta(days=1)}
    # Off: no call.
    off = settings.with_overrides(sectors_every_minutes=0)
    assert sectors.refresh_if_due(off, engine, now=first + timedelta(days=9)).status == "skipped"
    assert fake_coingecko.calls_to("categories") == 2


T0 = datetime(2026, 3, 10, 12, 0)


def sector_calls(fake) -> tuple[int, int, int]:
    """(/coins/categories, /coins/categories/list, /coins/markets?category=) requests the fake saw."""
    return fake.calls_to("categories"), fake.calls_to("categories_list"), fake.calls_to("category")


def test_runs_every_15_minutes_make_exactly_the_budgeted_sector_calls(settings, fake_coingecko):
    """The default cadences at the default interval: the sector step of runs at simulated times."""
    defaults = type(settings).from_env({})
    assert (
        (settings.interval_minutes, settings.sectors_every_minutes, settings.sector_members_every_minutes)
        == (
            defaults.interval_minutes,
            defaults.sectors_every_minutes,
            defaults.sector_members_every_minutes,
        )
        == (15, 60, 1440)
    )
    engine = prepare_database(settings)
    n = len(settings.tracked_sectors)

    def run_at(minutes: float) -> str:
        return sectors.refresh_if_due(settings, engine, now=T0 + timedelta(minutes=minutes)).status

    # Four runs 15 minutes apart: one categories fetch, one member fetch (the list and each sector).
    assert [run_at(m) for m in (0, 15, 30, 45)] == ["refreshed", "skipped", "skipped", "skipped"]
    assert sector_calls(fake_coingecko) == (1, 1, n)
    # 61 minutes after the first: the snapshot again, the (daily) members not.
    assert run_at(61) == "refreshed"
    assert sector_calls(fake_coingecko) == (2, 1, n)
    # A whole day of 15-minute runs from a fresh ledger: the README's 24 + (1 + 5) calls, budget.plan's.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM api_fetches"))
    fake_coingecko.clear_requests()
    day = [run_at(24 * 60 + m) for m in range(0, 24 * 60, 15)]
    assert day.count("refreshed") == 24 and len(day) == 96
    assert sector_calls(fake_coingecko) == (24, 1, n)
    per_day = {g.group: g.per_day for g in budget.plan(settings).groups}
    assert sum(sector_calls(fake_coingecko)) == per_day[budget.CATEGORIES] + per_day[budget.CATEGORY_MEMBERS] == 30
    # The next day's first run fetches the members again, with the hour's snapshot.
    assert run_at(48 * 60) == "refreshed" and sector_calls(fake_coingecko) == (25, 2, 2 * n)


def test_a_failing_categories_call_is_tried_again_on_the_next_hour_not_on_every_run(settings, fake_coingecko):
    engine = prepare_database(settings)
    fake_coingecko.add_fault("500", endpoint="categories", times=50)
    assert sectors.refresh_if_due(settings, engine, now=T0).status == "failed"
    attempt = settings.max_retries + 1  # one attempt: the client's retries of the one call
    assert sector_calls(fake_coingecko) == (attempt, 0, 0)
    for minutes in (15, 30, 45):
        skipped = sectors.refresh_if_due(settings, engine, now=T0 + timedelta(minutes=minutes))
        assert skipped.status == "skipped" and skipped.reason.startswith("last attempt failed 2026-03-10 12:00 UTC")
    assert sector_calls(fake_coingecko) == (attempt, 0, 0)
    assert budget.last_fetch(engine, budget.CATEGORIES) is None
    # The next hour's run tries again (still failing: held back another hour), then succeeds.
    assert sectors.refresh_if_due(settings, engine, now=T0 + timedelta(minutes=60)).status == "failed"
    assert sectors.refresh_if_due(settings, engine, now=T0 + timedelta(minutes=75)).status == "skipped"
    assert sector_calls(fake_coingecko) == (2 * attempt, 0, 0)
    fake_coingecko.clear_faults()
    assert sectors.refresh_if_due(settings, engine, now=T0 + timedelta(minutes=120)).status == "refreshed"
    assert sector_calls(fake_coingecko) == (2 * attempt + 1, 1, len(settings.tracked_sectors))
    # A success after the failures: the normal cadence again.
    assert sectors.refresh_if_due(settings, engine, now=T0 + timedelta(minutes=135)).reason.startswith("fetched")


def test_failing_members_are_tried_again_within_the_hour_not_a_day_later(settings, fake_coingecko):
    engine = prepare_database(settings)
    n = len(settings.tracked_sectors)
    fake_coingecko.add_fault("500", endpoint="category", times=50)
    result = sectors.refresh_if_due(settings, engine, now=T0)
    assert result.status == "refreshed" and any("sector members not refreshed" in w for w in result.warnings)
    attempt = settings.max_retries + 1  # the first sector's call, retried; the others are not asked
    assert sector_calls(fake_coingecko) == (1, 1, attempt) and count(settings, ref_sector_members) == 0
    fake_coingecko.clear_faults()
    assert sectors.refresh_if_due(settings, engine, now=T0 + timedelta(minutes=15)).status == "skipped"
    assert sector_calls(fake_coingecko) == (1, 1, attempt)
    # The next snapshot (an hour on) brings the members with it, a day earlier than their cadence.
    assert sectors.refresh_if_due(settings, engine, now=T0 + timedelta(minutes=60)).members
    assert sector_calls(fake_coingecko) == (2, 2, attempt + n)
    assert {c for c, _ in rows(settings, ref_sector_members, "category_id", "coin_id")} == set(settings.tracked_sectors)
    # Then daily again.
    assert not sectors.refresh_if_due(settings, engine, now=T0 + timedelta(minutes=120)).members
    assert sector_calls(fake_coingecko) == (3, 2, attempt + n)


def test_the_refresh_button_skips_sectors(settings, fake_coingecko):
    run_pipeline(settings, source="api", trigger="button")
    assert fake_coingecko.calls_to("categories") == 0 and sector_runs(settings) == []


@pytest.mark.parametrize("fault", ["500", "wrong_type", "rename_fields"])
def test_a_failing_categories_call_never_fails_the_run_and_keeps_the_old_sectors(settings, fake_coingecko, fault):
    run_pipeline(settings, source="api")
    before = rows(settings, sector_ranking, "category_id", "market_cap", "snapshot_at")
    settings = settings.with_overrides(sectors_every_minutes=1e-9)  # due again at once
    fake_coingecko.add_fault(fault, endpoint="categories", times=50)
    result = run_pipeline(settings, source="api")
    assert result.status == "success"
    (note,) = [w for w in result.warnings if "sectors not refreshed" in w]
    assert "the previous sector data is kept" in note
    assert rows(settings, sector_ranking, "category_id", "market_cap", "snapshot_at") == before
    with make_engine(settings.database_url).connect() as conn:
        notes = conn.execute(text("SELECT notes FROM pipeline_runs WHERE run_id = :r"), {"r": result.run_id}).scalar()
    assert "sectors not refreshed" in notes
    failed = [r for r in sector_runs(settings, include_incomplete=True) if not r.manifest["complete"]]
    assert len(failed) == 1 and failed[0].manifest["error"]


def test_a_failing_member_call_keeps_the_snapshot_and_the_old_members(settings, fake_coingecko):
    run_pipeline(settings, source="api")
    members = rows(settings, ref_sector_members, "category_id", "coin_id", "seen_at")
    settings = settings.with_overrides(sectors_every_minutes=1e-9, sector_members_every_minutes=1e-9)
    fake_coingecko.add_fault("500", endpoint="category", times=50)
    result = run_pipeline(settings, source="api")
    assert result.status == "success"
    assert any("sector members not refreshed" in w for w in result.warnings)
    assert rows(settings, ref_sector_members, "category_id", "coin_id", "seen_at") == members
    with make_engine(settings.database_url).connect() as conn:
        assert conn.execute(select(func.count(func.distinct(staging_sector_snapshot.c.snapshot_at)))).scalar() == 2


def test_an_unknown_tracked_sector_is_not_asked_for(settings, fake_coingecko):
    settings = settings.with_overrides(tracked_sectors=("meme-token", "no-such-sector"))
    result = run_pipeline(settings, source="api")
    assert [r.query["category"] for r in fake_coingecko.requests_to("category")] == ["meme-token"]
    assert any("'no-such-sector' is not in CoinGecko's category list" in w for w in result.warnings)


def test_malformed_category_rows_are_quarantined_with_their_reason(settings, fake_coingecko):
    body = [
        {"id": "good", "name": "Good", "market_cap": 10.0, "market_cap_change_24h": -1.5, "volume_24h": 2},
        {"id": "no-cap", "name": "No cap", "market_cap": None, "market_cap_change_24h": None, "volume_24h": None},
        {"id": "text-cap", "name": "Text", "market_cap": "lots", "volume_24h": 1},
        {"id": "negative", "name": "Neg", "market_cap": -5, "volume_24h": 1},
        {"name": "no id", "market_cap": 1},
        "not an object",
        {"id": "good", "name": "Again", "market_cap": 11.0},
    ]
    fake_coingecko.set_categories_body(body)
    run_pipeline(settings, source="api")
    assert rows(settings, staging_sector_snapshot, "category_id", "market_cap", "volume_24h") == [
        ("good", 10.0, 2.0),
        ("no-cap", None, None),
    ]
    reasons = dict(rows(settings, quarantine_sector_snapshot, "record_index", "reason"))
    assert reasons[2].startswith("market_cap is not a finite number")
    assert reasons[3] == "market_cap is negative: -5"
    assert reasons[4] == "missing id" and reasons[5] == "record is not a JSON object"
    assert reasons[6].startswith("duplicate id")
    ranking = rows(settings, sector_ranking, "category_id", "sector_rank")
    assert ranking == [("good", 1), ("no-cap", None)]


def test_replay_rebuilds_the_sectors_from_bronze(settings, fake_coingecko):
    run_pipeline(settings, source="api")
    engine = prepare_database(settings)
    first = budget.last_fetch(engine, budget.CATEGORIES)
    sectors.refresh_if_due(settings, engine, now=first + timedelta(days=1))
    build_gold(engine)  # the second snapshot into gold, as the next run's publish would
    tables = (staging_sector_snapshot, ref_sector_members, sector_ranking, sector_history)
    before = {t.name: rows(settings, t, *t.columns.keys()) for t in tables}
    with engine.begin() as conn:
        for t in tables:
            conn.execute(t.delete())
    result = replay(settings)
    assert result.status == "success"
    assert {t.name: rows(settings, t, *t.columns.keys()) for t in tables} == before
    assert len(before["sector_history"]) > len(before["sector_ranking"]) // 100
