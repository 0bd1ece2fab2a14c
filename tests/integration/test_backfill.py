"""Backfill over real HTTP (fake CoinGecko serving real recorded market_chart bodies), SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import text

from pipeline import backfill as backfill_module
from pipeline import bronze
from pipeline.backfill import (
    BackfillIncomplete,
    check_days,
    is_covered,
    parse_ids,
    run_backfill,
)
from pipeline.cli import main
from pipeline.db import make_engine, prepare_database
from pipeline.errors import ConfigError, PipelineError, RunLocked
from pipeline.flow import replay, run_pipeline
from pipeline.runs import RunLease, current_holder
from pipeline.silver.market_chart import market_chart_rows
from tests.fakes.coingecko import DAY_MS, FIXTURES_DIR, load_fixture

BTC_FILE = "market_chart/market_chart_bitcoin_usd_91d_2020-07-04_rudijs-coin-bot.json"
BNB_FILE = "market_chart/market_chart_binancecoin_usd_91d_2020-07-04_rudijs-coin-bot.json"
BTC_MAX_FILE = "market_chart/market_chart_bitcoin_usd_max_daily_2022-11-27_mrmendoza-dev-cryptotracker.json"
BODIES = {"bitcoin": load_fixture(BTC_FILE), "binancecoin": load_fixture(BNB_FILE)}
#: Just after the 91-day recordings' last point (2020-07-04 15:16 UTC).
NOW_2020 = datetime(2020, 7, 4, 16, 0)
COINS = ["bitcoin", "binancecoin"]


def ms_to_datetime(ms) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=ms)


def read(settings, sql: str, **params) -> pd.DataFrame:
    with make_engine(settings.database_url).connect() as conn:
        return pd.read_sql(text(sql), conn, params=params)


def history(settings, coin_id: str) -> pd.DataFrame:
    frame = read(settings, "SELECT * FROM staging_coin_history WHERE id = :c ORDER BY ts", c=coin_id)
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame


def run_row(settings, run_id: str) -> pd.Series:
    return read(settings, "SELECT * FROM pipeline_runs WHERE run_id = :r", r=run_id).iloc[0]


def chart_paths(fake) -> list[str]:
    return [r.path.split("/")[-2] for r in fake.requests_to("market_chart")]


def compact(body) -> bytes:
    """The bytes the fake (like the real API) sends: compact JSON."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@pytest.fixture
def charts(fake_coingecko):
    for coin_id, body in BODIES.items():
        fake_coingecko.set_market_chart(coin_id, body)
    return fake_coingecko


# -- the transform (pure) ------------------------------------------------------------


def test_market_chart_rows_align_series_and_keep_nulls():
    body = {
        "prices": [[1000, 1.5], [2000, 2.5], [3000, float("nan")], [4000, -1], "junk", [5000, "7"]],
        "market_caps": [[1000, 100], [3000, 300], [4000, None], [6000, float("inf")]],
        "total_volumes": [[2000, 20.0], [3000, True], [7000, 70.0]],
    }
    chart = market_chart_rows(body, coin_id="x", run_id="r")
    t = ms_to_datetime
    assert chart.rows == [
        ("x", t(1000), "r", 1.5, 100.0, None),
        ("x", t(2000), "r", 2.5, None, 20.0),
        ("x", t(3000), "r", None, 300.0, None),
        ("x", t(7000), "r", None, None, 70.0),
    ]
    # nan, -1, "junk", "7", inf, True; a null is just missing and not counted.
    assert chart.skipped_values == 6


def test_market_chart_rows_of_the_recorded_body_are_exact():
    body = load_fixture(BTC_MAX_FILE)
    chart = market_chart_rows(body, coin_id="bitcoin", run_id="r")
    assert len(chart.rows) == len(body["prices"]) == 3500
    assert chart.skipped_values == 0  # its one null market cap is NULL, not a bad value
    null_caps = [row for row in chart.rows if row[4] is None]
    assert [row[1] for row in null_caps] == [ms_to_datetime(1491091200000)]
    assert chart.rows[-1][1] == ms_to_datetime(body["prices"][-1][0])
    assert chart.rows[-1][1].strftime("%Y-%m-%d %H:%M:%S") == "2022-11-27 09:47:16"
    assert all(isinstance(row[3], float) for row in chart.rows)


def test_covered_rule():
    now = datetime(2020, 7, 4, 16, 0)
    assert is_covered((datetime(2020, 4, 5), datetime(2020, 7, 4, 15)), now=now, days=91)
    assert not is_covered((datetime(2020, 4, 5), datetime(2020, 7, 4, 15)), now=now, days=365)  # starts too late
    assert not is_covered((datetime(2020, 4, 5), datetime(2020, 7, 1)), now=now, days=91)  # not recent
    assert not is_covered(None, now=now, days=91)


def test_days_limit_and_coin_ids(settings):
    check_days(settings, 365)
    with pytest.raises(ConfigError, match="at most 365"):
        check_days(settings, 366)
    check_days(settings.with_overrides(api_plan="pro", api_key="CG-test"), 1000)
    with pytest.raises(ConfigError):
        check_days(settings, 0)
    assert parse_ids(" bitcoin, usd-coin,,bitcoin ") == ["bitcoin", "usd-coin"]
    for bad in ("../global", "bit coin", ","):
        with pytest.raises(ConfigError):
            parse_ids(bad)


# -- whole backfills over HTTP -----------------------------------------------------


def test_backfill_loads_recorded_history_and_keeps_every_body(settings, charts):
    result = run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020)

    assert result.status == "success" and result.fetched == COINS and result.points == 184
    for coin_id, body in BODIES.items():
        rows = history(settings, coin_id)
        assert len(rows) == len(body["prices"]) == 92
        assert list(rows.ts) == [ms_to_datetime(p[0]) for p in body["prices"]]
        assert list(rows.price) == [p[1] for p in body["prices"]]
        assert list(rows.market_cap) == [p[1] for p in body["market_caps"]]
        assert list(rows.total_volume) == [p[1] for p in body["total_volumes"]]
        assert set(rows.run_id) == {result.run_id}
    requests = charts.requests_to("market_chart")
    assert chart_paths(charts) == COINS
    assert all(r.query["days"] == "91" and r.query["vs_currency"] == "usd" for r in requests)

    run = run_row(settings, result.run_id)
    assert (run.status, run.trigger, run.source) == ("success", "cli", "backfill")
    assert run.silver_rows == 184 and run.bronze_records == 2

    kept = bronze.find_run(settings.raw_dir, result.run_id)
    assert kept.manifest["source"] == "backfill" and kept.manifest["complete"] is True
    assert kept.snapshot_at == ms_to_datetime(BODIES["bitcoin"]["prices"][0][0])  # the oldest point
    for coin_id, fixture in ((c, FIXTURES_DIR / f) for c, f in (("bitcoin", BTC_FILE), ("binancecoin", BNB_FILE))):
        raw = (kept.folder / f"market_chart_{coin_id}.json").read_bytes()
        assert raw == compact(json.loads(fixture.read_bytes()))  # as the server sent it, byte for byte
        assert json.loads(raw) == json.loads(fixture.read_bytes())
        entry = next(e for e in kept.manifest["entries"] if e["file"] == f"market_chart_{coin_id}.json")
        assert entry["sha256"] == hashlib.sha256(raw).hexdigest() and entry["status"] == 200
    assert dict(kept.market_charts()) == BODIES


def test_second_backfill_skips_covered_coins(settings, charts):
    run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020)
    charts.clear_requests()

    again = run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020)

    assert charts.calls_to("market_chart") == 0
    assert again.skipped == COINS and again.fetched == [] and again.bronze_folder is None
    assert run_row(settings, again.run_id).status == "success"
    assert bronze.list_runs(settings.raw_dir) and len(bronze.list_runs(settings.raw_dir)) == 1
    # A longer window is not covered by 91 days of history: fetched again, rows stay unique.
    longer = run_backfill(settings, days=365, coin_ids=COINS, now=NOW_2020)
    assert longer.fetched == COINS and charts.calls_to("market_chart") == 2
    assert len(history(settings, "bitcoin")) == 92


def test_failed_coin_is_reported_and_the_next_run_fetches_only_it(settings, charts):
    charts.set_market_chart("binancecoin", None)  # the server answers 404 for it

    with pytest.raises(BackfillIncomplete, match=r"1 of 2 coin\(s\) failed: binancecoin \(.*404") as failure:
        run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020)

    result = failure.value.result
    assert result.fetched == ["bitcoin"] and list(result.failed) == ["binancecoin"]
    assert len(history(settings, "bitcoin")) == 92 and history(settings, "binancecoin").empty
    run = run_row(settings, result.run_id)
    assert run.status == "failed" and "binancecoin" in run.error_message and run.silver_rows == 92
    assert current_holder(make_engine(settings.database_url)) is None

    charts.set_market_chart("binancecoin", BODIES["binancecoin"])
    charts.clear_requests()
    resumed = run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020)
    assert chart_paths(charts) == ["binancecoin"]
    assert resumed.skipped == ["bitcoin"] and resumed.fetched == ["binancecoin"]
    assert len(history(settings, "binancecoin")) == 92


def test_server_errors_on_one_coin_do_not_stop_the_others(settings, charts):
    charts.add_fault("500", endpoint="market_chart", times=4)  # 1 try + 3 retries, all for bitcoin

    with pytest.raises(BackfillIncomplete, match="bitcoin") as failure:
        run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020)

    assert failure.value.result.fetched == ["binancecoin"]
    assert chart_paths(charts) == ["bitcoin"] * 4 + ["binancecoin"]
    kept = bronze.find_run(settings.raw_dir, failure.value.result.run_id)
    assert sorted(e["status"] for e in kept.manifest["entries"]) == [200, 500, 500, 500, 500]
    assert kept.manifest["complete"] is True and "bitcoin" in kept.manifest["error"]


def test_interrupted_backfill_keeps_finished_coins_and_resumes(settings, charts):
    def interrupt_after_first_coin(done, total, coin_id, message):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020, progress=interrupt_after_first_coin)

    engine = make_engine(settings.database_url)
    assert current_holder(engine) is None
    runs = read(settings, "SELECT * FROM pipeline_runs")
    assert list(runs.status) == ["failed"] and runs.error_message[0] == "KeyboardInterrupt"
    assert len(history(settings, "bitcoin")) == 92 and history(settings, "binancecoin").empty
    interrupted = bronze.list_runs(settings.raw_dir, include_incomplete=True)
    assert len(interrupted) == 1 and interrupted[0].manifest["complete"] is False

    charts.clear_requests()
    resumed = run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020)
    assert chart_paths(charts) == ["binancecoin"] and resumed.status == "success"


def test_rate_limit_retry_after_is_honoured(settings, charts):
    charts.add_fault("429", endpoint="market_chart", retry_after=1)

    result = run_backfill(settings, days=91, coin_ids=["bitcoin"], now=NOW_2020)

    first, second = charts.requests_to("market_chart")
    assert second.at - first.at >= 0.95
    assert result.status == "success" and len(history(settings, "bitcoin")) == 92
    kept = bronze.find_run(settings.raw_dir, result.run_id)
    assert [(e["status"], e["used"]) for e in kept.manifest["entries"]] == [(429, False), (200, True)]


def test_calls_are_paced_between_coins(settings, charts):
    paced = settings.with_overrides(calls_per_minute=240.0)  # one call every 0.25 s

    run_backfill(paced, days=91, coin_ids=COINS, now=NOW_2020)

    first, second = charts.requests_to("market_chart")
    assert second.at - first.at >= 0.24


def test_default_coins_are_the_tracked_top_and_gold_is_untouched(settings, fake_coingecko):
    run_pipeline(settings, source="api")  # the 2022-10-16 top 250; the fake serves bitcoin's max chart
    mart_before = read(settings, "SELECT * FROM crypto_analytics_mart ORDER BY id")
    now = datetime(2022, 11, 27, 10, 0)

    result = run_backfill(settings, days=365, top=1, now=now)

    assert result.coins == ["bitcoin"] and result.fetched == ["bitcoin"]
    body = load_fixture(BTC_MAX_FILE)
    cutoff = body["prices"][-1][0] - 365 * DAY_MS  # the fake trims like the API: 365 days back
    expected = [p for p in body["prices"] if p[0] >= cutoff]
    rows = history(settings, "bitcoin")
    assert len(rows) == len(expected) == 366
    assert list(rows.price) == [float(p[1]) for p in expected]
    assert fake_coingecko.requests_to("market_chart")[0].query["interval"] == "daily"
    pd.testing.assert_frame_equal(read(settings, "SELECT * FROM crypto_analytics_mart ORDER BY id"), mart_before)

    fake_coingecko.clear_requests()
    assert run_backfill(settings, days=365, top=1, now=now).skipped == ["bitcoin"]
    assert fake_coingecko.calls_to("market_chart") == 0


def test_replay_after_a_backfill_rebuilds_the_same_gold(settings, charts):
    run_pipeline(settings, source="api")
    mart_before = read(settings, "SELECT * FROM crypto_analytics_mart ORDER BY id")
    run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020)

    replay(settings)

    pd.testing.assert_frame_equal(read(settings, "SELECT * FROM crypto_analytics_mart ORDER BY id"), mart_before)
    assert len(history(settings, "bitcoin")) == 92


def test_no_tracked_coins_says_so(settings, fake_coingecko):
    with pytest.raises(PipelineError, match="no tracked coins yet"):
        run_backfill(settings, days=30)
    assert read(settings, "SELECT status FROM pipeline_runs").status.tolist() == ["failed"]
    assert fake_coingecko.calls_to("market_chart") == 0


def test_backfill_waits_for_no_one_when_the_lock_is_held(settings, charts):
    engine = prepare_database(settings)
    with RunLease(engine, "someone-else"), pytest.raises(RunLocked, match="someone-else"):
        run_backfill(settings, days=91, coin_ids=COINS, now=NOW_2020)
    assert charts.calls_to("market_chart") == 0
    assert history(settings, "bitcoin").empty


# -- the command line ---------------------------------------------------------------


def use_settings(monkeypatch, settings) -> None:
    env = {
        "DATABASE_URL": settings.database_url,
        "DATA_DIR": str(settings.data_dir),
        "COINGECKO_BASE_URL": settings.coingecko_base_url,
        "COINGECKO_CALLS_PER_MINUTE": "0",
        "COINGECKO_BACKOFF_SECONDS": "0.01",
        "COINGECKO_TIMEOUT_SECONDS": "2",
        "COINGECKO_MAX_RETRIES": "3",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_cli_backfill_prints_progress_and_a_summary(settings, charts, monkeypatch, capsys):
    use_settings(monkeypatch, settings)
    monkeypatch.setattr(backfill_module, "utcnow", lambda: NOW_2020)

    assert main(["backfill", "--ids", "bitcoin,binancecoin", "--days", "91"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[1/2] bitcoin: 92 points (") and out[1].startswith("[2/2] binancecoin: 92 points (")
    assert out[2].startswith("backfill ") and "succeeded: 2 coin(s) fetched (184 points), 0 already covered" in out[2]

    assert main(["backfill", "--ids", "bitcoin,binancecoin", "--days", "91"]) == 0
    assert "[1/2] bitcoin: already covered, skipped" in capsys.readouterr().out

    charts.set_market_chart("ethereum", None)
    assert main(["backfill", "--ids", "ethereum", "--days", "91"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: backfill incomplete: 1 of 1 coin(s) failed: ethereum")


def test_cli_backfill_refuses_bad_arguments_in_one_line(settings, monkeypatch, capsys):
    use_settings(monkeypatch, settings)
    assert main(["backfill", "--days", "400"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --days 400: CoinGecko's free plan serves at most 365 days of history "
        "(COINGECKO_API_PLAN=pro with a pro key lifts this)"
    )
    assert main(["backfill", "--ids", "../global"]) == 2
    assert "is not a CoinGecko coin id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["backfill", "--ids", "bitcoin", "--coins", "3"])  # one or the other


def test_backfill_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        main(["backfill", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "Example: python -m pipeline backfill --days 365" in out
    assert "--days N" in out and "--coins N" in out and "--ids" in out
