"""`python -m pipeline import`: saved real CoinGecko bodies through bronze -> silver -> gold,
on SQLite and PostgreSQL; and the data time of a live run, with its fetch time beside it."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from pipeline import bronze
from pipeline.cli import main
from pipeline.db import make_engine, utcnow
from pipeline.errors import ConfigError, PipelineError
from pipeline.flow import replay, run_pipeline
from pipeline.importer import import_bodies, parse_at
from pipeline.silver.data_time import data_time, last_updated_values, parse_time
from pipeline.status import freshness
from tests.fakes.coingecko import load_fixture

REAL = Path("/work/shared/data/real")
MARKETS_2023 = REAL / "markets/markets_2023-01-08_JKorf-CoinGecko.Net.json"
GLOBAL_2023 = REAL / "global/global_2023-01-08_JKorf-CoinGecko.Net.json"
MARKETS_2022 = REAL / "markets/markets_100_sparkline_2022-11-27_mrmendoza-dev-cryptotracker.json"
GLOBAL_2022 = REAL / "global/global_2022-11-27_mrmendoza-dev-cryptotracker.json"
MARKETS_STALE = REAL / "markets/markets_2025-11-02_jruz-watchlists.json"
ERROR_403 = REAL / "errors/coins_markets_error403_2023-03-30_madjin-daily-crypto.json"
DAILY = REAL / "markets/madjin-daily-crypto"


def read(settings, sql: str, **params) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def body_time(path: Path) -> datetime:
    return data_time(last_updated_values(json.loads(path.read_bytes())), None, not_after=utcnow()).at


def times(frame: pd.DataFrame, column: str = "snapshot_at") -> list[datetime]:
    return [pd.Timestamp(v).to_pydatetime() for v in frame[column]]


def test_import_real_bodies_takes_the_time_from_the_bodies(settings):
    before = utcnow()
    result = import_bodies(settings, [MARKETS_2023, GLOBAL_2023, MARKETS_2022, GLOBAL_2022])

    assert result.run.status == "success" and not result.problems and not result.skipped
    assert [b.snapshot_at for b in result.imported] == [body_time(MARKETS_2022), body_time(MARKETS_2023)]
    assert result.span[1] < datetime(2023, 1, 9) < before  # the bodies' time, not the clock's
    ledger = read(settings, "SELECT * FROM snapshots ORDER BY snapshot_at")
    assert times(ledger) == [body_time(MARKETS_2022), body_time(MARKETS_2023)]
    assert set(ledger.source) == {"import"} and ledger.fetched_at.isna().all()  # no fetch time is known
    silver = read(
        settings,
        "SELECT snapshot_at, COUNT(*) AS n, COUNT(fetched_at) AS fetched "
        "FROM staging_crypto_market GROUP BY snapshot_at ORDER BY snapshot_at",
    )
    assert silver.n.tolist() == [100, 100] and silver.fetched.tolist() == [0, 0]
    history = read(settings, "SELECT * FROM market_history ORDER BY snapshot_at")
    assert times(history) == times(ledger) and set(history.source) == {"import"}
    mart = read(settings, "SELECT * FROM crypto_analytics_mart")
    assert len(mart) == 100 and set(times(mart)) == {body_time(MARKETS_2023)}
    runs = read(settings, "SELECT * FROM pipeline_runs")
    assert runs.source.tolist() == ["import"] and runs.status.tolist() == ["success"]
    assert runs.silver_rows[0] == 200
    manifests = [r.manifest for r in bronze.list_runs(settings.raw_dir)]
    assert {m["data_time_basis"] for m in manifests} == {"last_updated_median"}
    assert all(m["fetched_at"] is None and m["source"] == "import" for m in manifests)
    assert freshness(settings)["snapshot_at"] == body_time(MARKETS_2023)


def test_a_global_of_the_same_time_pairs_with_its_markets_body(settings):
    result = import_bodies(settings, [GLOBAL_2023, MARKETS_2023, MARKETS_STALE])
    paired = {b.path.name: b.partner.path.name if b.partner else None for b in result.imported}
    assert paired == {MARKETS_2023.name: GLOBAL_2023.name, MARKETS_STALE.name: None}
    globals_ = read(settings, "SELECT snapshot_at, source FROM staging_global_market")
    assert times(globals_) == [body_time(MARKETS_2023)] and globals_.source.tolist() == ["import"]
    history = read(settings, "SELECT snapshot_at, dominance_basis FROM market_history ORDER BY snapshot_at")
    basis = history.dominance_basis.tolist()
    assert basis[0] == "global" and basis[1] != "global"  # without /global: the tracked coins
    # a /global with no markets body near its time is reported, not imported alone
    lonely = import_bodies(settings, [REAL / "global/global_2025-04-07_JKorf-CoinGecko.Net.json"])
    assert len(lonely.skipped) == 1 and "no markets body" in lonely.skipped[0][1]


def test_the_same_body_twice_is_one_snapshot(settings, tmp_path):
    first = import_bodies(settings, [MARKETS_2023])
    copy = tmp_path / "copy" / "same_body_other_name.json"
    copy.parent.mkdir()
    shutil.copy(MARKETS_2023, copy)
    again = import_bodies(settings, [MARKETS_2023, copy])  # again, and a copy under another name
    assert not again.imported and len(again.skipped) == 2
    assert all("already imported" in why for _, why in again.skipped)
    ledger = read(settings, "SELECT snapshot_at FROM snapshots")
    assert times(ledger) == [first.imported[0].snapshot_at] == [body_time(MARKETS_2023)]  # never nudged
    assert read(settings, "SELECT COUNT(*) AS n FROM staging_crypto_market").n[0] == 100
    assert read(settings, "SELECT status FROM pipeline_runs").status.tolist() == ["success", "success"]
    # within one import, two copies of one body are one snapshot too
    fresh = import_bodies(settings, [MARKETS_2022, tmp_path / "copy", MARKETS_2022])
    assert len(fresh.imported) == 1 and fresh.imported[0].path == MARKETS_2022
    # a replay of bronze (imports included) gives the same snapshots
    replay(settings)
    assert len(read(settings, "SELECT snapshot_at FROM snapshots")) == 2
    assert read(settings, "SELECT COUNT(*) AS n FROM staging_crypto_market").n[0] == 200


def test_at_gives_the_time_of_one_body(settings):
    at = parse_at("2023-01-08T17:00:00+01:00")
    assert at == datetime(2023, 1, 8, 16, 0)
    result = import_bodies(settings, [MARKETS_2023, GLOBAL_2023], at=at)
    assert [b.snapshot_at for b in result.imported] == [at] and result.imported[0].partner is not None
    assert bronze.list_runs(settings.raw_dir)[0].manifest["data_time_basis"] == "given"
    assert times(read(settings, "SELECT snapshot_at FROM market_history")) == [at]
    with pytest.raises(ConfigError, match="--at"):
        import_bodies(settings, [MARKETS_2022, MARKETS_STALE], at=at)
    with pytest.raises(ConfigError):
        parse_at("yesterday")


def test_a_malformed_file_is_reported_and_the_others_imported(settings, tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    shutil.copy(MARKETS_2022, folder / "a_markets.json")
    (folder / "b_truncated.json").write_bytes(MARKETS_2023.read_bytes()[:5000])
    shutil.copy(ERROR_403, folder / "c_error.json")
    (folder / "d_empty.json").write_text("[]")
    (folder / "notes.txt").write_text("not walked: only *.json in folders")
    result = import_bodies(settings, [folder, tmp_path / "missing.json"])
    assert [b.path.name for b in result.imported] == ["a_markets.json"]
    problems = dict((Path(p).name, why) for p, why in result.problems)
    assert set(problems) == {"b_truncated.json", "c_error.json", "d_empty.json", "missing.json"}
    assert "not valid JSON" in problems["b_truncated.json"] and "neither" in problems["c_error.json"]
    notes = read(settings, "SELECT notes FROM pipeline_runs").notes[0]
    assert "b_truncated.json" in notes
    with pytest.raises(PipelineError, match="nothing to import"):
        import_bodies(settings, [folder / "c_error.json"])
    assert read(settings, "SELECT status FROM pipeline_runs ORDER BY started_at").status.tolist() == [
        "success",
        "failed",
    ]


def test_stale_records_reach_the_mart_flagged(settings):
    import_bodies(settings, [MARKETS_STALE])
    snapshot = body_time(MARKETS_STALE)
    records = json.loads(MARKETS_STALE.read_bytes())
    expected = {r["id"] for r in records if parse_time(r["last_updated"]) < snapshot - timedelta(hours=6)}
    mart = read(settings, "SELECT id, stale_record FROM crypto_analytics_mart")
    assert expected and set(mart.id[mart.stale_record.astype(bool)]) == expected
    assert len(mart) == len(records)


def test_a_folder_of_daily_bodies_is_loaded_in_batches(settings, tmp_path):
    folder = tmp_path / "daily"
    folder.mkdir()
    for path in sorted(DAILY.glob("*.json"))[:12]:
        shutil.copy(path, folder / path.name)
    result = import_bodies(settings, [folder], batch_records=300)  # several silver batches
    assert len(result.imported) == 12 and not result.problems
    history = read(settings, "SELECT snapshot_at, source FROM market_history ORDER BY snapshot_at")
    assert len(history) == 12 and times(history) == sorted(b.snapshot_at for b in result.imported)
    assert times(history)[0].date() == datetime(2023, 3, 20).date()
    assert read(settings, "SELECT COUNT(*) AS n FROM staging_crypto_market").n[0] == 1200


def test_the_command_line(settings, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    assert main(["import", str(MARKETS_2023), str(GLOBAL_2023), str(ERROR_403)]) == 0
    out = capsys.readouterr().out
    assert "1 snapshot(s) from 2023-01-08 16:49" in out and "problem:" in out and "1 with /global" in out
    assert main(["import", str(MARKETS_2023), "--at", "2023-01-08T16:00:00Z"]) == 0
    assert "already imported" in capsys.readouterr().out
    assert main(["import", str(ERROR_403)]) == 1
    assert main(["import", str(MARKETS_2023), str(MARKETS_2022), "--at", "2023-01-08T16:00:00Z"]) == 2


def test_a_live_run_keeps_the_fetch_time_beside_the_data_time(settings, fake_coingecko):
    """Records last updated a few minutes before the fetch: the snapshot is their median,
    the fetch time is kept in bronze, silver and the ledger."""
    records = load_fixture("markets/markets_250_sparkline_pct1h24h7d_2022-10-16_mrmendoza-dev-cryptotracker.json")
    now = utcnow()
    for number, record in enumerate(records):
        record["last_updated"] = (now - timedelta(seconds=30 + number)).isoformat(timespec="milliseconds") + "Z"
    records[5]["last_updated"] = (now - timedelta(days=2)).isoformat() + "Z"  # a stale record
    fake_coingecko.set_markets(records)
    result = run_pipeline(settings, source="api", top_n=250)
    manifest = bronze.find_run(settings.raw_dir, result.run_id).manifest
    fetched = datetime.fromisoformat(manifest["fetched_at"])
    assert manifest["data_time_basis"] == "last_updated_median"
    assert result.snapshot_at == datetime.fromisoformat(manifest["snapshot_at"]) < fetched
    assert fetched - result.snapshot_at < timedelta(minutes=5)
    ledger = read(settings, "SELECT * FROM snapshots")
    assert times(ledger, "fetched_at") == [fetched]
    silver = read(settings, "SELECT id, fetched_at, stale_record FROM staging_crypto_market")
    assert set(times(silver, "fetched_at")) == {fetched}
    assert silver.id[silver.stale_record.astype(bool)].tolist() == [records[5]["id"]]
    fresh = freshness(settings)
    assert fresh["snapshot_at"] == result.snapshot_at and fresh["fetched_at"] == fetched
    # the fake's recorded 2022 body, served as is: its last_updated values say nothing about now
    fake_coingecko.set_markets(
        load_fixture("markets/markets_250_sparkline_pct1h24h7d_2022-10-16_mrmendoza-dev-cryptotracker.json")
    )
    again = run_pipeline(settings, source="api", top_n=250)
    manifest = bronze.find_run(settings.raw_dir, again.run_id).manifest
    assert manifest["data_time_basis"] == "fetched_at"
    assert datetime.fromisoformat(manifest["snapshot_at"]) == datetime.fromisoformat(manifest["fetched_at"])
