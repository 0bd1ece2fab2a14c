"""The whole market (PIPELINE_TOP_N=all, --top all) in whole runs, on SQLite and PostgreSQL, over real
HTTP to the fake CoinGecko serving a synthetic market longer than one page (``whole_market``: the
real 250 records, then deterministic variations of them; see the fixtures' PROVENANCE.md).

A sweep pages until a short page and publishes every coin; a sweep cut short (here by its deadline)
keeps its pages in bronze and silver, is held with "partial sweep: N of ~68 pages" and never reaches
gold, not even through a replay into an empty database; ``publish --force`` can still publish it.
The refresh button never sweeps; pages are paced.
"""

from __future__ import annotations

import json
import re

import pytest

from pipeline import bronze
from pipeline.cli import main
from pipeline.errors import SnapshotHeld
from pipeline.flow import PARTIAL_SWEEP, replay, run_pipeline
from pipeline.publish import publish_held
from tests.conftest import make_settings
from tests.fakes.coingecko import whole_market
from tests.integration.test_gate import ledger, mart_snapshot, read

#: 6 full pages of 250 and a short seventh.
COINS = 1630


def markets_asked(fake) -> list[tuple[int, int]]:
    return [(int(r.query["page"]), int(r.query["per_page"])) for r in fake.requests if r.endpoint == "markets"]


def count(settings, table: str) -> int:
    return int(read(settings, f"SELECT COUNT(*) AS n FROM {table}").n[0])


def test_a_sweep_fetches_every_page_and_publishes_the_whole_market(settings, fake_coingecko):
    fake_coingecko.set_markets(whole_market(COINS))
    lines: list[str] = []
    result = run_pipeline(
        settings.with_overrides(top_n=None), trigger="schedule", progress=lambda stage, msg: lines.append(msg)
    )

    assert result.status == "success" and result.silver_rows == COINS
    assert markets_asked(fake_coingecko) == [(p, 250) for p in range(1, 8)] + [(COINS + 1, 1)]
    assert "markets page 1: 250 coins (250 so far)" in lines
    assert "markets page 7: 130 coins (1,630 so far)" in lines
    rows = ledger(settings)
    assert rows.status.tolist() == ["published"] and int(rows.coin_count[0]) == COINS
    assert rows.requested_coins.isna().all()  # the whole market: no number was asked for
    assert count(settings, "crypto_analytics_mart") == COINS
    # segments now describe the micro-cap tail too, not ranks 140-250 of a top-250 list
    segments = read(settings, "SELECT market_cap_category, coin_count FROM market_segment_analysis")
    assert int(segments.coin_count.sum()) == COINS
    smallest = read(settings, "SELECT MIN(market_cap) AS m FROM crypto_analytics_mart").m[0]
    assert smallest < 1e8 * 0.999**1000  # the synthetic tail reached gold


def test_a_sweep_cut_by_its_deadline_is_held_as_partial_and_never_published(settings, fake_coingecko, tmp_path):
    good = run_pipeline(settings, trigger="schedule")  # the top 250, published
    fake_coingecko.set_markets(whole_market(COINS))
    fake_coingecko.requests.clear()
    # 2 calls a second and a 2-second deadline: at most four of the seven pages
    sweep = settings.with_overrides(top_n=None, calls_per_minute=120.0, sweep_deadline_seconds=2.0)
    with pytest.raises(SnapshotHeld) as caught:
        run_pipeline(sweep, trigger="schedule")
    held = caught.value

    match = re.match(r"partial sweep: (\d) of ~68 pages \(([\d,]+) coins\); ", held.reasons[0])
    assert match, held.reasons
    pages, coins = int(match.group(1)), int(match.group(2).replace(",", ""))
    assert 1 <= pages <= 4 and coins == 250 * pages
    assert "deadline" in held.reasons[0]
    assert len(markets_asked(fake_coingecko)) >= pages

    # bronze keeps every page, complete but marked partial; silver holds them for diagnosis
    run = bronze.find_run(settings.raw_dir, held.run_id)
    assert run.manifest["complete"] is True and run.manifest[PARTIAL_SWEEP] == held.reasons[0]
    assert run.markets_record_count == coins
    assert count(settings, "staging_crypto_market") == 250 + coins
    # the ledger and the run log say why; gold still shows the top 250 of the good run
    rows = ledger(settings)
    assert rows.status.tolist() == ["published", "held"]
    assert rows.reasons.iloc[1].startswith(held.reasons[0])
    runs = read(settings, "SELECT status, notes FROM pipeline_runs WHERE run_id = :r", r=held.run_id).iloc[0]
    assert runs.status == "held" and held.reasons[0] in runs.notes
    assert mart_snapshot(settings) == [good.snapshot_at] and count(settings, "crypto_analytics_mart") == 250

    # a replay keeps it held ...
    replay(settings)
    assert ledger(settings).status.tolist() == ["published", "held"]
    assert mart_snapshot(settings) == [good.snapshot_at]
    # ... and so does a replay into an empty database, where no ledger remembers it
    fresh = settings.with_overrides(database_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    replay(fresh)
    assert ledger(fresh).status.tolist() == ["published", "held"]
    assert ledger(fresh).reasons.iloc[1] == held.reasons[0]
    assert mart_snapshot(fresh) == [good.snapshot_at]

    # the operator can still publish it, knowingly
    publish_held(settings, held.run_id, force=True, progress=lambda *_: None)
    assert ledger(settings).status.tolist() == ["published", "published"]
    assert mart_snapshot(settings) == [held.snapshot_at]
    assert count(settings, "crypto_analytics_mart") == coins


def test_the_refresh_button_never_sweeps_the_whole_market(settings, fake_coingecko):
    fake_coingecko.set_markets(whole_market(COINS))
    lines: list[str] = []
    result = run_pipeline(
        settings.with_overrides(top_n=None), trigger="button", progress=lambda stage, msg: lines.append(msg)
    )
    assert result.status == "success" and result.silver_rows == 250
    assert markets_asked(fake_coingecko) == [(1, 250)]
    assert any("the refresh button fetches the top 250" in line for line in lines)
    assert ledger(settings).requested_coins.tolist() == [250]


@pytest.fixture
def cli_env(monkeypatch, tmp_path, fake_coingecko):
    """The environment of a command-line run against the fake, on SQLite."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "DATA_DIR": str(tmp_path / "data"),
        "COINGECKO_BASE_URL": fake_coingecko.base_url,
        "COINGECKO_CALLS_PER_MINUTE": "0",
        "COINGECKO_BACKOFF_SECONDS": "0.01",
        "PIPELINE_CLASSES_REFRESH_HOURS": "0",
        "PIPELINE_SECTORS_EVERY_MINUTES": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fake_coingecko.set_markets(whole_market(600))
    return make_settings(env["DATABASE_URL"], tmp_path / "data", fake_coingecko.base_url)


def test_cli_top_all_sweeps_the_whole_market(cli_env, fake_coingecko, capsys):
    assert main(["run", "--top", "all"]) == 0
    assert markets_asked(fake_coingecko) == [(1, 250), (2, 250), (3, 250), (601, 1)]
    assert count(cli_env, "crypto_analytics_mart") == 600
    assert "[ fetch] markets page 3: 100 coins (600 so far)" in capsys.readouterr().out


def test_cli_top_overrides_pipeline_top_n_all(cli_env, fake_coingecko, monkeypatch):
    monkeypatch.setenv("PIPELINE_TOP_N", "all")
    assert main(["run", "--top", "100"]) == 0
    assert markets_asked(fake_coingecko) == [(1, 100)]
    assert count(cli_env, "crypto_analytics_mart") == 100


def test_cli_pipeline_top_n_all_sweeps(cli_env, fake_coingecko, monkeypatch):
    monkeypatch.setenv("PIPELINE_TOP_N", "all")
    assert main(["run"]) == 0
    assert len(markets_asked(fake_coingecko)) == 4 and count(cli_env, "crypto_analytics_mart") == 600


def test_the_sweep_is_paced(cli_env, fake_coingecko):
    """Five calls a second: the fake sees the pages at least 0.2 s apart (it records when each arrived)."""
    settings = cli_env.with_overrides(top_n=None, calls_per_minute=300.0)
    run_pipeline(settings, trigger="schedule")
    arrived = [r.at for r in fake_coingecko.requests if r.endpoint in ("markets", "global")]
    assert len(arrived) == 5  # three pages, the probe after the short one, /global
    gaps = [b - a for a, b in zip(arrived, arrived[1:])]
    assert min(gaps) >= 0.19, gaps


def test_a_partial_sweep_is_recorded_in_the_bronze_manifest_as_text(settings, fake_coingecko):
    """What replay and operators read: one line, the same as the held reason."""
    fake_coingecko.set_markets(whole_market(COINS))
    fake_coingecko.add_fault("503", page=3, times=10)
    with pytest.raises(SnapshotHeld) as caught:
        run_pipeline(settings.with_overrides(top_n=None), trigger="schedule")
    manifest = json.loads((bronze.find_run(settings.raw_dir, caught.value.run_id).folder / "manifest.json").read_text())
    assert manifest[PARTIAL_SWEEP].startswith("partial sweep: 2 of ~68 pages (500 coins); /coins/markets: failed after")
    assert "\n" not in manifest[PARTIAL_SWEEP]
