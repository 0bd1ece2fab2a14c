"""The Compare page on real data: the bundled 2022-10-16 sample plus a year of daily history backfilled
over real HTTP from the fake CoinGecko serving the real recorded market_chart bodies of 2025-03-05
(/work/shared/data/real), on SQLite and PostgreSQL. Validation of ``?compare=`` on the sample alone."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from pipeline.backfill import run_backfill
from pipeline.flow import run_pipeline
from tests.dashboard.helpers import Warehouse, chart_specs, plain, plotly_values
from tests.dashboard.test_app_pages import assert_clean, page_text
from tests.fakes.coingecko import REPO_ROOT

REAL_CHARTS = REPO_ROOT.parent / "shared" / "data" / "real" / "market_chart"
CHART_FILE = "market_chart_{}_usd_365d_2025-03-05_jpwnoise-Cripto-Brain.json"
COINS = ("bitcoin", "ethereum", "tether", "ripple", "binancecoin")
NOW = datetime(2025, 3, 5, 16, 0)
#: binancecoin's recording is cut to start here, so the page has a late coin to name.
BNB_START = datetime(2025, 1, 20)

needs_recordings = pytest.mark.skipif(not REAL_CHARTS.is_dir(), reason="the shared real recordings are not here")


def chart_body(coin_id: str) -> dict:
    body = json.loads((REAL_CHARTS / CHART_FILE.format(coin_id)).read_text())
    if coin_id == "binancecoin":
        cutoff = (BNB_START - datetime(1970, 1, 1)).total_seconds() * 1000
        body = {key: [p for p in series if p[0] >= cutoff] for key, series in body.items()}
    return body


def daily_closes(body: dict, since: datetime) -> pd.Series:
    """The last recorded price of each UTC day from ``since`` on, worked out straight from the body."""
    closes: dict[str, float] = {}
    for ms, price in body["prices"]:
        at = datetime(1970, 1, 1) + pd.Timedelta(milliseconds=ms)
        if at >= since:
            closes[at.strftime("%Y-%m-%d")] = price  # later points of a day replace earlier ones
    return pd.Series(closes)


@pytest.fixture
def backfilled(settings, fake_coingecko, use_warehouse) -> Warehouse:
    """The sample's 250 coins as gold, then 365 days of daily history for five of them (real bodies)."""
    assert run_pipeline(settings, trigger="cli", source="sample").status == "success"
    for coin_id in COINS:
        fake_coingecko.set_market_chart(coin_id, chart_body(coin_id))
    result = run_backfill(settings, days=365, coin_ids=list(COINS), now=NOW)
    assert sorted(result.fetched) == sorted(COINS) and not result.failed
    return use_warehouse(Warehouse(settings.database_url, settings.data_dir))


@needs_recordings
def test_compare_draws_performance_correlation_volatility_and_beta(backfilled, open_app):
    at = open_app(page="compare", page_query={"compare": "bitcoin,ethereum,tether,binancecoin", "range": "90d"})
    assert_clean(at)
    assert at.multiselect(key="compare_coins").value == ["bitcoin", "ethereum", "tether", "binancecoin"]
    assert at.radio(key="compare_range").value == "90d"
    assert at.query_params["compare"] == "bitcoin,ethereum,tether,binancecoin"
    assert at.query_params["range"] == "90d"

    performance, heatmap, volatility = chart_specs(at)
    names = [trace["name"] for trace in performance["data"]]
    assert names == ["Bitcoin (BTC)", "Ethereum (ETH)", "Tether (USDT)", "BNB (BNB)"]
    # 90 days back from the newest point (2025-03-05 15:36) - but binancecoin starts 2025-01-20: the
    # common start, where every line is 100.
    first = {
        trace["name"]: next(v for v in plotly_values(trace["y"]) if not math.isnan(v)) for trace in performance["data"]
    }
    assert all(value == pytest.approx(100.0) for value in first.values())
    assert performance["data"][0]["x"][0].startswith("2025-01-20")
    # The last point: bitcoin's close of 2025-03-05 over its close of 2025-01-20, straight from the body.
    btc = daily_closes(chart_body("bitcoin"), datetime(2025, 1, 20))
    assert plotly_values(performance["data"][0]["y"])[-1] == pytest.approx(btc.iloc[-1] / btc.iloc[0] * 100)

    heat = heatmap["data"][0]
    assert (heat["zmin"], heat["zmax"]) == (-1, 1)
    text = [list(row) for row in heat["text"]]
    assert [text[i][i] for i in range(4)] == ["1.00"] * 4
    since = datetime(2025, 3, 5, 15, 36, 3) - pd.Timedelta(days=90)
    closes = {c: daily_closes(chart_body(c), since) for c in ("bitcoin", "ethereum")}
    frame = pd.DataFrame(closes).dropna()
    returns = np.log(frame / frame.shift(1)).dropna()
    expected_r = float(np.corrcoef(returns["bitcoin"], returns["ethereum"])[0, 1])
    assert text[0][1] == f"{expected_r:.2f}"
    expected_beta = float(np.cov(returns["ethereum"], returns["bitcoin"])[0, 1] / np.var(returns["bitcoin"], ddof=1))

    table = at.dataframe[0].value.set_index("coin")
    assert table.loc["Bitcoin (BTC)", "beta"] == 1.0
    assert table.loc["Ethereum (ETH)", "beta"] == pytest.approx(expected_beta)
    assert table.loc["Ethereum (ETH)", "common"] == len(returns)
    assert abs(table.loc["Tether (USDT)", "beta"]) < 0.05  # a stablecoin barely moves with bitcoin
    assert table.loc["BNB (BNB)", "common"] < len(returns)  # from 2025-01-20 only

    vol_names = [trace["name"] for trace in volatility["data"]]
    assert vol_names == names
    btc_vol = [v for v in plotly_values(volatility["data"][0]["y"]) if not math.isnan(v)]
    last30 = returns["bitcoin"].iloc[-30:]
    assert btc_vol[-1] == pytest.approx(float(last30.std(ddof=1)) * math.sqrt(365) * 100)

    text_shown = plain(page_text(at))
    assert "BNB (BNB): history from 2025-01-20" in text_shown
    hint = next(plain(i.value) for i in at.info if "pipeline backfill" in i.value)
    assert "python -m pipeline backfill --ids binancecoin --days 365" in hint


@needs_recordings
def test_compare_range_switch_and_a_coin_without_history(backfilled, open_app):
    # solana is in the sample (one snapshot in 2022) but has no backfill: no price in the last 7 days.
    at = open_app(page="compare", page_query={"compare": "bitcoin,ethereum,solana", "range": "7d"})
    assert_clean(at)
    performance, heatmap, volatility = chart_specs(at)
    assert [t["name"] for t in performance["data"]] == ["Bitcoin (BTC)", "Ethereum (ETH)"]
    text_shown = plain(page_text(at))
    assert "Solana (SOL): no prices in this range" in text_shown
    assert "Choose 30d or longer" in text_shown
    # Hourly grid over daily points: too few common returns in 7 days -> "—" with the reason.
    assert {cell for row in heatmap["data"][0]["text"] for cell in row} == {"—"}
    assert "fewer than 10" in text_shown
    assert not volatility["data"]

    at.radio(key="compare_range").set_value("1y").run()
    assert_clean(at)
    assert at.query_params["range"] == "1y"
    heat = chart_specs(at)[1]["data"][0]
    assert heat["text"][0][1] != "—"


def test_unknown_ids_are_dropped_with_a_note_and_one_coin_is_not_enough(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page="compare", page_query={"compare": "bitcoin,no-such-coin,bitcoin"})
    assert_clean(at)
    assert at.multiselect(key="compare_coins").value == ["bitcoin"]
    assert any("no-such-coin" in plain(i.value) and "left out" in i.value for i in at.info)
    assert any("Pick at least 2 coins" in i.value for i in at.info)
    assert not chart_specs(at)
    assert at.query_params["compare"] == "bitcoin"

    at.multiselect(key="compare_coins").select("ethereum").run()
    assert_clean(at)
    assert len(chart_specs(at)) == 3
    assert at.query_params["compare"] == "bitcoin,ethereum"


def test_more_than_ten_coins_in_the_link(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    many = "bitcoin,ethereum,tether,binancecoin,usd-coin,ripple,binance-usd,cardano,solana,dogecoin,polkadot,tron"
    at = open_app(page="compare", page_query={"compare": many})
    assert_clean(at)
    assert len(at.multiselect(key="compare_coins").value) == 10
    assert any("At most 10 coins" in w.value and "named 12" in w.value for w in at.warning)
    assert at.query_params["compare"] == ",".join(many.split(",")[:10])


def test_no_link_shows_the_three_largest_and_the_sample_says_history_is_short(
    sample_warehouse, use_warehouse, open_app
):
    use_warehouse(sample_warehouse)
    at = open_app(page="compare")
    assert_clean(at)
    assert at.multiselect(key="compare_coins").value == ["bitcoin", "ethereum", "tether"]
    assert at.query_params["range"] == "90d"
    text_shown = plain(page_text(at))
    assert "only 1 price point(s)" in text_shown
    assert any("pipeline backfill --ids bitcoin,ethereum,tether" in i.value for i in at.info)


def test_the_sidebar_filter_narrows_the_picker(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    # dogecoin was a mid cap on 2022-10-16 ($7.9B): not offered under "Large cap", and said so.
    at = open_app({"category": "large_cap"}, page="compare", page_query={"compare": "bitcoin,ethereum,dogecoin"})
    assert_clean(at)
    assert at.multiselect(key="compare_coins").value == ["bitcoin", "ethereum"]
    assert "dogecoin" not in at.multiselect(key="compare_coins").options
    assert any("Left out by the sidebar's filter" in i.value and "Dogecoin" in i.value for i in at.info), [
        i.value for i in at.info
    ]
    assert len(chart_specs(at)) == 3
