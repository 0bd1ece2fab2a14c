"""The whole market, piece by piece: the ``all`` setting, the page estimate, and the sweep's
paging against the fake CoinGecko over real HTTP (a short page ends it; a page that cannot be
had after the first ends it as a partial sweep instead of failing the fetch)."""

from __future__ import annotations

import argparse

import pytest

from pipeline import budget
from pipeline.cli import build_parser
from pipeline.config import ALL_COINS, DEFAULT_TOP_N, Settings, parse_top_n
from pipeline.errors import ConfigError, SchemaDrift, SourceError
from pipeline.providers.base import COINS, SnapshotRequest, Unavailable
from pipeline.providers.coingecko import CoinGeckoClient, client_from_settings, partial_sweep, sweep_markets
from pipeline.providers.coingecko.settings import MAX_PER_PAGE, WHOLE_MARKET_COINS_ESTIMATE, markets_pages
from tests.conftest import make_settings
from tests.fakes.coingecko import WHOLE_MARKET_DECAY, FakeCoinGecko, whole_market

# ---- the setting -----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["all", "ALL", " all "])
def test_all_means_the_whole_market(raw):
    assert parse_top_n(raw) is None
    assert Settings.from_env({"PIPELINE_TOP_N": raw}).top_n is None


def test_a_number_is_still_a_number_and_the_default_is_250():
    assert parse_top_n("100") == 100
    assert Settings.from_env({}).top_n == DEFAULT_TOP_N == 250


@pytest.mark.parametrize("raw", ["every", "0", "-3", "2.5", "al"])
def test_anything_else_names_the_setting_and_the_choices(raw):
    with pytest.raises(ConfigError, match=r"PIPELINE_TOP_N .*'all'"):
        Settings.from_env({"PIPELINE_TOP_N": raw})


def test_describe_says_all_and_the_button_never_sweeps():
    whole = Settings.from_env({"PIPELINE_TOP_N": "all"})
    assert whole.describe()["top_n"] == ALL_COINS
    assert whole.button_top_n == DEFAULT_TOP_N
    assert Settings.from_env({"PIPELINE_TOP_N": "40"}).button_top_n == 40


def test_the_sweep_has_its_own_deadline():
    assert Settings.from_env({}).sweep_deadline_seconds == 600.0
    assert Settings.from_env({"COINGECKO_SWEEP_DEADLINE_SECONDS": "900"}).sweep_deadline_seconds == 900.0
    with pytest.raises(ConfigError, match="COINGECKO_SWEEP_DEADLINE_SECONDS"):
        Settings.from_env({"COINGECKO_SWEEP_DEADLINE_SECONDS": "-1"})


def test_the_sweep_client_uses_the_sweep_deadline_but_the_button_keeps_its_own():
    s = Settings.from_env({"COINGECKO_SWEEP_DEADLINE_SECONDS": "900", "COINGECKO_DEADLINE_SECONDS": "60"})
    assert 890 < client_from_settings(s, sweep=True).remaining() <= 900
    assert 50 < client_from_settings(s).remaining() <= 60
    assert client_from_settings(s, sweep=True, interactive=True).remaining() <= s.interactive_deadline_seconds


@pytest.mark.parametrize("argv, top", [(["run", "--top", "all"], None), (["run", "--top", "30"], 30)])
def test_cli_top_takes_a_number_or_all(argv, top):
    assert build_parser().parse_args(argv).top == top


def test_cli_without_top_leaves_the_setting_alone():
    assert not hasattr(build_parser().parse_args(["run"]), "top")


def test_cli_refuses_a_bad_top(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--top", "most"])
    assert "--top must be a whole number of coins or 'all'" in capsys.readouterr().err


# ---- the estimate: pages and the API budget --------------------------------------------------


def test_pages_per_snapshot():
    assert markets_pages(250) == 1 and markets_pages(251) == 2 and markets_pages(1) == 1
    assert markets_pages(None) == -(-WHOLE_MARKET_COINS_ESTIMATE // MAX_PER_PAGE) == 68


def test_the_budget_counts_a_sweep_as_its_pages():
    whole = Settings.from_env({"PIPELINE_TOP_N": "all"})
    assert budget.calls_per_fetch(budget.MARKETS, whole) == 68
    assert budget.calls_per_fetch(budget.MARKETS, Settings.from_env({})) == 1


def test_a_sweep_every_15_minutes_is_far_over_the_free_plan_and_every_6_hours_fits():
    """The README's arithmetic: 68 pages + /global a run, against the demo plan's 10,000 calls a month."""
    often = budget.plan(Settings.from_env({"PIPELINE_TOP_N": "all"}))
    calls = {g.group: g.per_month for g in often.groups}
    assert calls[budget.MARKETS] == pytest.approx(68 * 96 * 30)
    assert calls[budget.MARKETS] > 10_000
    six_hourly = budget.plan(
        Settings.from_env(
            {"PIPELINE_TOP_N": "all", "PIPELINE_INTERVAL_MINUTES": "360", "PIPELINE_SECTORS_EVERY_MINUTES": "360"}
        )
    )
    assert sum(g.per_month for g in six_hourly.groups) < 10_000


def test_the_partial_message_counts_pages_and_coins():
    assert partial_sweep(41, 10_250, "deadline") == "partial sweep: 41 of ~68 pages (10,250 coins); deadline"
    # more pages than the estimate: the estimate grows rather than say "80 of ~68"
    assert partial_sweep(80, 20_000, "x").startswith("partial sweep: 80 of ~81 pages")


# ---- the synthetic market the fake serves ----------------------------------------------------


def test_the_synthetic_market_keeps_the_real_records_first_and_continues_them():
    market = whole_market(1630)
    assert len(market) == 1630 and len({r["id"] for r in market}) == 1630
    assert market[0]["id"] == "bitcoin" and market[250]["id"] == "bitcoin-m1"
    caps = [r["market_cap"] for r in market]
    assert all(a >= b for a, b in zip(caps, caps[1:]))  # ranks follow market cap
    assert caps[251] == pytest.approx(caps[250] * WHOLE_MARKET_DECAY)
    copy, template = market[260], market[10]
    assert copy["market_cap_rank"] == 261
    ratio = copy["current_price"] / template["current_price"]
    assert copy["market_cap"] / template["market_cap"] == pytest.approx(ratio)
    assert copy["circulating_supply"] == template["circulating_supply"]
    assert copy["price_change_percentage_24h"] == template["price_change_percentage_24h"]
    assert copy["sparkline_in_7d"]["price"][0] == pytest.approx(template["sparkline_in_7d"]["price"][0] * ratio)
    assert whole_market(1630) == market  # deterministic
    assert whole_market(17_000)[-1]["market_cap"] < 100  # micro-caps at the tail, as in the real market


# ---- the sweep over HTTP -----------------------------------------------------------------------


def client(fake: FakeCoinGecko, **kwargs) -> CoinGeckoClient:
    options = {"calls_per_minute": 0, "backoff_base_seconds": 0.01, "max_retries": 1, "deadline_seconds": 30}
    return CoinGeckoClient(fake.base_url, **{**options, **kwargs})


def markets_pages_asked(fake: FakeCoinGecko) -> list[tuple[int, int]]:
    return [(int(r.query["page"]), int(r.query["per_page"])) for r in fake.requests if r.endpoint == "markets"]


def test_a_sweep_pages_until_a_short_page(fake_coingecko):
    fake_coingecko.set_markets(whole_market(1630))
    items = list(sweep_markets(client(fake_coingecko), vs_currency="usd"))
    assert [len(i.json()) for i in items] == [250] * 6 + [130]
    # the short page ends it, after one probe that the API lists nothing after coin 1,630
    assert markets_pages_asked(fake_coingecko) == [(p, 250) for p in range(1, 8)] + [(1631, 1)]


def test_a_sweep_of_an_exact_multiple_ends_at_the_empty_page(fake_coingecko):
    fake_coingecko.set_markets(whole_market(500))
    items = list(sweep_markets(client(fake_coingecko), vs_currency="usd"))
    assert [len(i.json()) for i in items] == [250, 250, 0]
    assert markets_pages_asked(fake_coingecko) == [(1, 250), (2, 250), (3, 250)]


def test_a_page_failing_after_its_retries_ends_the_sweep_as_partial(fake_coingecko):
    fake_coingecko.set_markets(whole_market(1630))
    fake_coingecko.add_fault("503", page=4, times=5)
    items = list(sweep_markets(client(fake_coingecko, max_retries=2), vs_currency="usd"))
    *pages, last = items
    assert [len(p.json()) for p in pages] == [250, 250, 250]
    assert isinstance(last, Unavailable) and last.role == COINS
    assert last.message.startswith("partial sweep: 3 of ~68 pages (750 coins); /coins/markets: failed after 3 attempts")


def test_a_429_asking_to_wait_past_the_deadline_ends_the_sweep_as_partial(fake_coingecko):
    fake_coingecko.set_markets(whole_market(1630))
    fake_coingecko.add_fault("429", page=3, retry_after=3600)
    *pages, last = sweep_markets(client(fake_coingecko), vs_currency="usd")
    assert len(pages) == 2 and isinstance(last, Unavailable)
    assert last.message.startswith("partial sweep: 2 of ~68 pages (500 coins); /coins/markets: rate limited")


def test_a_short_page_with_coins_after_it_is_a_partial_sweep(fake_coingecko):
    fake_coingecko.set_markets(whole_market(1630))
    fake_coingecko.add_fault("single_record", page=2)
    *pages, last = sweep_markets(client(fake_coingecko), vs_currency="usd")
    assert [len(p.json()) for p in pages] == [250, 1]
    assert isinstance(last, Unavailable)
    assert "page 2 held 1 coins, yet more are listed after it" in last.message


def test_a_first_page_that_cannot_be_had_fails_the_fetch(fake_coingecko):
    fake_coingecko.add_fault("503", page=1, times=5)
    with pytest.raises(SourceError, match="failed after 2 attempts"):
        list(sweep_markets(client(fake_coingecko), vs_currency="usd"))


def test_a_page_of_the_wrong_shape_is_drift_not_a_partial_sweep(fake_coingecko):
    fake_coingecko.set_markets(whole_market(1630))
    fake_coingecko.add_fault("rename_fields", page=3)
    with pytest.raises(SchemaDrift):
        list(sweep_markets(client(fake_coingecko), vs_currency="usd"))


def test_the_provider_sweeps_for_top_n_none(fake_coingecko, tmp_path):
    from pipeline.providers.coingecko import PROVIDER

    fake_coingecko.set_markets(whole_market(600))
    settings = make_settings(f"sqlite:///{tmp_path / 'w.db'}", tmp_path, fake_coingecko.base_url)
    kept = []
    items = list(PROVIDER.fetch_snapshot(settings, SnapshotRequest("usd", None), kept.append))
    assert [i.endpoint for i in items] == ["markets"] * 3 + ["global"]
    assert sum(len(i.json()) for i in items[:3]) == 600
    assert [k.endpoint for k in kept] == ["markets"] * 3 + ["markets_probe", "global"]


def test_cli_parser_type_error_is_an_argument_error():
    from pipeline.cli import _top_n

    with pytest.raises(argparse.ArgumentTypeError):
        _top_n("0")
