"""Retention (prune) on SQLite and PostgreSQL: old silver and bronze go, what gold shows stays."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from pipeline import bronze
from pipeline.backfill import run_backfill
from pipeline.cli import main
from pipeline.db import make_engine, utcnow
from pipeline.errors import ConfigError, RunLocked, SourceError
from pipeline.flow import prepare_database, run_pipeline
from pipeline.prune import prune
from pipeline.runs import RunLease, current_holder, new_run_id
from tests.fakes.coingecko import load_fixture

SILVER = [
    "staging_crypto_market",
    "staging_global_market",
    "quarantine_crypto_market",
    "staging_sparkline",
    "staging_coin_history",
]
GOLD = {
    "crypto_analytics_mart": "id",
    "market_segment_analysis": "market_cap_category",
    "market_history": "snapshot_at",
}
BTC_91 = load_fixture("market_chart/market_chart_bitcoin_usd_91d_2020-07-04_rudijs-coin-bot.json")


def read(settings, sql: str, **params) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def gold(settings) -> dict[str, pd.DataFrame]:
    return {table: read(settings, f"SELECT * FROM {table} ORDER BY {order}") for table, order in GOLD.items()}


def silver(settings) -> dict[str, pd.DataFrame]:
    orders = {
        "staging_coin_history": "id, ts",
        "quarantine_crypto_market": "run_id, record_index",
        "staging_global_market": "snapshot_at",
    }
    return {t: read(settings, f"SELECT * FROM {t} ORDER BY {orders.get(t, 'id, snapshot_at')}") for t in SILVER}


def count_older(settings, table: str, column: str, before: datetime) -> int:
    return int(read(settings, f"SELECT COUNT(*) AS n FROM {table} WHERE {column} < :t", t=before).n[0])


def run_folders(settings) -> set[Path]:
    return {p for p in settings.raw_dir.glob("*/*") if p.is_dir()}


def next_second() -> None:
    """Snapshots are stamped to the second: make the next run's snapshot a different one."""
    time.sleep(1.05 - time.time() % 1)


def build_history(settings, fake_coingecko) -> dict:
    """sample (2022) → api with a quarantined record → failed api run → api (the gold) → backfill (2020 points)
    → a folder left without a manifest by a killed run in 2020."""
    sample = run_pipeline(settings, source="sample")
    fake_coingecko.add_fault("missing_fields")
    older = run_pipeline(settings, source="api")
    fake_coingecko.add_fault("403")
    with pytest.raises(SourceError):
        run_pipeline(settings, source="api")
    next_second()
    newest = run_pipeline(settings, source="api")
    fake_coingecko.set_market_chart("bitcoin", BTC_91)
    backfill = run_backfill(settings, days=91, coin_ids=["bitcoin"], now=datetime(2020, 7, 4, 16))
    orphan = settings.raw_dir / "2020-01-01" / "20200101T000000Z-dead00"
    orphan.mkdir(parents=True)
    (orphan / "markets_p001.json").write_bytes(b"[]")
    assert older.snapshot_at < newest.snapshot_at
    return {"sample": sample, "older": older, "gold": newest, "backfill": backfill, "orphan": orphan}


def test_prune_keeps_the_gold_snapshot_and_removes_everything_older(settings, fake_coingecko):
    h = build_history(settings, fake_coingecko)
    gold_at = h["gold"].snapshot_at
    gold_before, silver_before = gold(settings), silver(settings)
    assert len(gold_before["market_history"]) == 3
    gold_folder = bronze.find_run(settings.raw_dir, h["gold"].run_id).folder
    now = gold_at + timedelta(days=400)  # the gold snapshot itself is a year older than the cutoff
    cutoff = now - timedelta(days=30)
    expected = {
        t: count_older(settings, t, "ts" if t == "staging_coin_history" else "snapshot_at", cutoff) for t in SILVER
    }
    at_gold = {
        t: int((pd.to_datetime(silver_before[t].snapshot_at) == pd.Timestamp(gold_at)).sum())
        for t in SILVER
        if t != "staging_coin_history"
    }
    expected = {t: n - at_gold.get(t, 0) for t, n in expected.items()}
    assert expected["staging_crypto_market"] == 250 + 249 and expected["staging_global_market"] == 2
    assert expected["quarantine_crypto_market"] == 1 and expected["staging_coin_history"] == 92

    report = prune(settings, keep_days=30, now=now)

    assert report.rows == expected
    assert report.gold_snapshot == gold_at and report.gold_runs == [h["gold"].run_id]
    after = silver(settings)
    for table in ("staging_crypto_market", "staging_global_market", "staging_sparkline"):
        assert set(pd.to_datetime(after[table].snapshot_at)) == {pd.Timestamp(gold_at)}, table
    assert after["staging_crypto_market"].run_id.unique().tolist() == [h["gold"].run_id]
    assert after["quarantine_crypto_market"].empty and after["staging_coin_history"].empty
    # Bronze: only the gold's run folder is left; the emptied 2020-01-01 date folder is gone.
    assert run_folders(settings) == {gold_folder}
    assert len(report.folders) == 5 and {f.age_basis for f in report.folders} == {"snapshot", "started", "folder"}
    assert not (settings.raw_dir / "2020-01-01").exists()
    assert report.date_folders == [settings.raw_dir / "2020-01-01"]
    # Gold: the same mart and segments; history lost exactly the pruned snapshots.
    gold_after = gold(settings)
    for table in ("crypto_analytics_mart", "market_segment_analysis"):
        pd.testing.assert_frame_equal(gold_after[table], gold_before[table])
    history_before = gold_before["market_history"]
    kept = history_before[pd.to_datetime(history_before.snapshot_at) == pd.Timestamp(gold_at)].reset_index(drop=True)
    pd.testing.assert_frame_equal(gold_after["market_history"], kept)
    sectors_off = {"sector_ranking": 0, "sector_history": 0}  # the tests' settings fetch no sectors
    assert report.gold_rows == {
        "crypto_analytics_mart": 250,
        "market_segment_analysis": 4,
        "market_history": 1,
        **sectors_off,
    }

    text_report = "\n".join(report.lines())
    assert f"silver rows removed: {sum(expected.values())}" in text_report
    assert "bronze folders removed: 5 (" in text_report and "empty date folders removed: 1" in text_report


def test_dry_run_reports_the_same_and_changes_nothing(settings, fake_coingecko):
    h = build_history(settings, fake_coingecko)
    now = h["gold"].snapshot_at + timedelta(days=400)
    silver_before, gold_before, folders_before = silver(settings), gold(settings), run_folders(settings)

    dry = prune(settings, keep_days=30, now=now, dry_run=True)

    for table, frame in silver(settings).items():
        pd.testing.assert_frame_equal(frame, silver_before[table])
    for table, frame in gold(settings).items():
        pd.testing.assert_frame_equal(frame, gold_before[table])
    assert run_folders(settings) == folders_before and (settings.raw_dir / "2020-01-01").exists()
    assert dry.gold_rows is None and dry.total_rows > 0 and len(dry.folders) == 5
    assert "(dry run, nothing changed)" in dry.lines()[0] and "would remove" in dry.lines()[1]

    done = prune(settings, keep_days=30, now=now)
    assert done.rows == dry.rows
    assert [f.folder for f in done.folders] == [f.folder for f in dry.folders]
    assert done.date_folders == dry.date_folders


def test_prune_by_the_real_clock_keeps_recent_runs_and_fresh_backfill_bronze(settings, fake_coingecko):
    """The sample is from 2022 and the backfilled points from 2020: they go; today's runs stay."""
    h = build_history(settings, fake_coingecko)
    backfill_folder = Path(h["backfill"].bronze_folder)
    sample_folder = bronze.find_run(settings.raw_dir, h["sample"].run_id).folder

    report = prune(settings, keep_days=30)

    assert report.rows["staging_crypto_market"] == 250  # the sample's snapshot only
    assert report.rows["staging_global_market"] == 1
    assert report.rows["staging_coin_history"] == 92  # 2020 points
    assert report.rows["quarantine_crypto_market"] == 0  # today's
    assert [f.folder for f in report.folders] == [
        settings.raw_dir / "2020-01-01" / "20200101T000000Z-dead00",
        sample_folder,
    ]
    assert backfill_folder.exists()  # fetched today: aged by when it started, not by its 2020 points
    snapshots = read(settings, "SELECT DISTINCT snapshot_at FROM staging_crypto_market ORDER BY snapshot_at")
    assert [pd.Timestamp(t) for t in snapshots.snapshot_at] == [
        pd.Timestamp(h["older"].snapshot_at),
        pd.Timestamp(h["gold"].snapshot_at),
    ]
    assert len(read(settings, "SELECT * FROM market_history")) == 2


def test_gold_older_than_the_cutoff_is_never_pruned(settings):
    run_pipeline(settings, source="sample")  # recorded 2022-10-16: years older than any cutoff
    silver_before, gold_before, folders_before = silver(settings), gold(settings), run_folders(settings)

    report = prune(settings, keep_days=1)

    assert report.total_rows == 0 and report.folders == [] and report.gold_rows is None
    for table, frame in silver(settings).items():
        pd.testing.assert_frame_equal(frame, silver_before[table])
    for table, frame in gold(settings).items():
        pd.testing.assert_frame_equal(frame, gold_before[table])
    assert run_folders(settings) == folders_before
    assert "gold unchanged" in report.lines()[-1]


def test_prune_without_gold_keeps_the_newest_silver_snapshot(settings, fake_coingecko):
    run_pipeline(settings, source="sample")
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM crypto_analytics_mart"))

    report = prune(settings, keep_days=1)

    assert report.total_rows == 0 and report.folders == []
    assert report.gold_snapshot is not None
    assert len(read(settings, "SELECT * FROM staging_crypto_market")) == 250


def test_prune_holds_the_lock_but_a_dry_run_does_not_need_it(settings):
    engine = prepare_database(settings)
    with RunLease(engine, "someone-else"):
        with pytest.raises(RunLocked, match="someone-else"):
            prune(settings, keep_days=30)
        assert prune(settings, keep_days=30, dry_run=True).total_rows == 0
    assert current_holder(engine) is None
    with pytest.raises(ConfigError):
        prune(settings, keep_days=0)


# -- the command line ---------------------------------------------------------------


def use_settings(monkeypatch, settings) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COINGECKO_BASE_URL", settings.coingecko_base_url)


def test_cli_prune_reports_what_it_removed(settings, monkeypatch, capsys):
    use_settings(monkeypatch, settings)
    run_pipeline(settings, source="sample")
    next_second()
    run_pipeline(settings, source="api")

    assert main(["prune", "--keep-days", "30", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(dry run, nothing changed)" in out and "would remove" in out and "staging_crypto_market" in out
    assert len(read(settings, "SELECT * FROM market_history")) == 2

    assert main(["prune", "--keep-days", "30"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "silver rows removed: 251"  # the sample's 250 coins and its /global row
    assert any(line.split() == ["staging_crypto_market", "250"] for line in out)
    assert any(line.startswith("bronze folders removed: 1 (") for line in out)
    assert out[-1].startswith("gold rebuilt: crypto_analytics_mart 250, market_segment_analysis 4, market_history 1")

    assert main(["prune", "--keep-days", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --keep-days must be between 1 and 36500, got 0"


def test_prune_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        main(["prune", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "Example: python -m pipeline prune --keep-days 90 --dry-run" in out
    assert "--keep-days N" in out and "--dry-run" in out
    with pytest.raises(SystemExit) as missing:
        main(["prune"])
    assert missing.value.code == 2


# -- damaged bronze runs never block a prune --------------------------------------------


def damaged_folder(settings, name: str, day: str) -> Path:
    """A run folder as a full disk left it before writes were atomic: a truncated body, a 0-byte manifest."""
    folder = settings.raw_dir / day / name
    folder.mkdir(parents=True)
    (folder / "markets_p001.json").write_bytes(b'[{"id": "bitcoin", "current_pr')
    (folder / bronze.MANIFEST).write_bytes(b"")
    return folder


def test_prune_removes_old_damaged_runs_and_keeps_and_lists_recent_ones(settings, monkeypatch, capsys):
    run_pipeline(settings, source="sample")  # the gold, recorded in 2022: always kept
    old = damaged_folder(settings, "20200102T000000Z-bad001", "2020-01-02")
    now = utcnow()
    recent_id = new_run_id(now)
    recent = damaged_folder(settings, recent_id, f"{now:%Y-%m-%d}")
    wrong_shape = settings.raw_dir / "2020-01-03" / "20200103T000000Z-bad002"
    wrong_shape.mkdir(parents=True)
    (wrong_shape / bronze.MANIFEST).write_text('["not", "a", "manifest"]')

    dry = prune(settings, keep_days=30, dry_run=True)
    assert [(f.folder, f.age_basis) for f in dry.folders] == [(old, "damaged"), (wrong_shape, "damaged")]
    assert sorted(d.folder for d in dry.damaged) == sorted([old, recent, wrong_shape])
    lines = dry.lines()
    assert "damaged bronze runs: 3 (2 would be removed: older than the cutoff; 1 kept;" in "\n".join(lines)
    assert any(
        line.startswith(f"  kept damaged bronze run {recent_id} (") and "is empty (0 bytes)" in line for line in lines
    )
    assert old.exists() and wrong_shape.exists()

    use_settings(monkeypatch, settings)
    assert main(["prune", "--keep-days", "30"]) == 0
    out = capsys.readouterr().out
    assert "damaged bronze runs: 3 (2 removed: older than the cutoff; 1 kept;" in out
    assert not old.exists() and not wrong_shape.exists() and recent.exists()
    assert not (settings.raw_dir / "2020-01-02").exists() and not (settings.raw_dir / "2020-01-03").exists()
    assert len(read(settings, "SELECT * FROM crypto_analytics_mart")) == 250


def test_prune_keeps_the_rollups_and_the_coin_chart_still_reaches_back(settings, fake_coingecko):
    """Raw snapshots older than the cutoff go; the hourly and daily rollups and coins_seen stay as they
    were, so the Coin page's "max" still shows 2020's backfilled days and 2022's snapshot, and the
    market's "all" still starts at the 2022 sample (from the daily rollup)."""
    from dashboard import data

    h = build_history(settings, fake_coingecko)
    rollup_tables = {
        "coin_history_hourly": "id, bucket",
        "coin_history_daily": "id, bucket",
        "market_history_hourly": "bucket",
        "market_history_daily": "bucket",
        "coins_seen": "id",
    }
    before = {t: read(settings, f"SELECT * FROM {t} ORDER BY {o}") for t, o in rollup_tables.items()}
    daily = before["coin_history_daily"].query("id == 'bitcoin'")
    assert (daily.origin == "backfill").sum() >= 90 and (daily.origin == "snapshot").sum() >= 2

    report = prune(settings, keep_days=30, now=h["gold"].snapshot_at + timedelta(days=400))

    assert report.rows["staging_crypto_market"] > 0 and report.rows["staging_coin_history"] == 92
    assert "rollups kept: hourly and daily history and the coins seen are never pruned" in report.lines()
    for table, order in rollup_tables.items():
        pd.testing.assert_frame_equal(read(settings, f"SELECT * FROM {table} ORDER BY {order}"), before[table])
    url = settings.database_url
    coin = data.load_coin_history_range.__wrapped__(url, "after-prune", "bitcoin", "all").frame
    years = set(pd.to_datetime(coin["ts"]).dt.year)
    assert {2020, 2022, h["gold"].snapshot_at.year} <= years
    assert pd.Timestamp(h["sample"].snapshot_at) in set(pd.to_datetime(coin["ts"]))
    market = data.load_market_history_range.__wrapped__(url, "after-prune", "all")
    assert market.first == h["sample"].snapshot_at and market.last == h["gold"].snapshot_at
    assert pd.Timestamp(h["sample"].snapshot_at) in set(market.frame["snapshot_at"])
    seen = data.load_coin_directory.__wrapped__(url, "after-prune")
    assert len(seen) == len(before["coins_seen"]) and "bitcoin" in set(seen["id"])
