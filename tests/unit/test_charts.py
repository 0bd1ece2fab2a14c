"""Chart builders: small inline frames in, Plotly figures out (no Streamlit, no database)."""

from __future__ import annotations

import json
import math
from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard import charts
from dashboard.frames import category_counts
from pipeline.categories import LIQUIDITY_BANDS, LIQUIDITY_CATEGORIES, MARKET_CAP_CATEGORIES, PRICE_TREND_CATEGORIES

SNAPSHOT = datetime(2022, 10, 16, 9, 28, 53)
NASTY_NAME = "<b>Evil</b><a href='http://x'>"


def coin(
    coin_id,
    name,
    symbol,
    rank,
    cap,
    volume,
    change_24h,
    *,
    category="large_cap",
    liquidity="medium_liquidity",
    trend="neutral",
    dominance=None,
    change_1h=0.1,
    change_7d=1.0,
    sparkline=None,
    price=1.0,
):
    return {
        "id": coin_id,
        "name": name,
        "symbol": symbol,
        "market_cap_rank": rank,
        "market_cap": cap,
        "total_volume": volume,
        "price_change_percentage_24h": change_24h,
        "price_change_percentage_1h": change_1h,
        "price_change_percentage_7d": change_7d,
        "current_price": price,
        "market_cap_category": category,
        "liquidity_category": liquidity,
        "price_trend_category": trend,
        "market_dominance_pct": dominance if dominance is not None else cap / 1e10,
        "volume_to_mcap_ratio": volume / cap if cap else None,
        "sparkline_7d": sparkline,
        "last_updated": SNAPSHOT,
        "snapshot_at": SNAPSHOT,
        "dominance_basis": "global",
    }


@pytest.fixture
def mart() -> pd.DataFrame:
    spark = json.dumps([100 + i for i in range(168)])
    falling = json.dumps([200 - i * 0.5 for i in range(168)])
    return pd.DataFrame(
        [
            coin(
                "bitcoin",
                "Bitcoin",
                "btc",
                1,
                400e9,
                30e9,
                0.5,
                dominance=40.0,
                sparkline=spark,
                liquidity="high_liquidity",
                price=19163.45,
            ),
            coin(
                "ethereum",
                "Ethereum",
                "eth",
                2,
                150e9,
                10e9,
                -2.5,
                dominance=15.0,
                sparkline=falling,
                trend="moderate_loss",
            ),
            coin(
                "solana",
                "Solana",
                "sol",
                3,
                11e9,
                0.5e9,
                7.0,
                dominance=1.1,
                trend="strong_gain",
                liquidity="low_liquidity",
            ),
            coin(
                "dogecoin",
                "Dogecoin",
                "doge",
                4,
                8e9,
                0.4e9,
                -6.0,
                category="mid_cap",
                dominance=0.8,
                trend="strong_loss",
            ),
            coin(
                "evil",
                NASTY_NAME,
                "<i>x</i>",
                5,
                2e9,
                1e6,
                3.0,
                category="mid_cap",
                dominance=0.2,
                trend="moderate_gain",
            ),
            coin(
                "tiny",
                "Tiny",
                "tiny",
                6,
                5e6,
                10.0,
                40.0,
                category="micro_cap",
                dominance=0.0005,
                liquidity="low_liquidity",
                trend="strong_gain",
                change_1h=None,
            ),
        ]
    )


@pytest.fixture
def segments() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "market_cap_category": "micro_cap",
                "coin_count": 110,
                "total_market_cap": 17e9,
                "market_cap_share_pct": 1.8,
                "market_dominance_pct": 1.7,
                "total_volume": 2.2e9,
                "avg_price_change_24h": 2.2,
                "median_price_change_24h": 0.9,
                "avg_volatility_24h": 6.5,
                "avg_volume_to_mcap_ratio": 0.157,
                "gainers_count": 80,
                "losers_count": 29,
                "snapshot_at": SNAPSHOT,
            },
            {
                "market_cap_category": "large_cap",
                "coin_count": 9,
                "total_market_cap": 749e9,
                "market_cap_share_pct": 80.3,
                "market_dominance_pct": 78.3,
                "total_volume": 45e9,
                "avg_price_change_24h": 0.43,
                "median_price_change_24h": 0.43,
                "avg_volatility_24h": 1.1,
                "avg_volume_to_mcap_ratio": 0.08,
                "gainers_count": 8,
                "losers_count": 1,
                "snapshot_at": SNAPSHOT,
            },
        ]
    )


def layout_text(fig: go.Figure) -> str:
    return json.dumps(fig.to_plotly_json()["layout"], default=str)


def title_of(fig: go.Figure) -> str:
    return fig.layout.title.text


def assert_readable(fig: go.Figure, *, axes: bool = True) -> None:
    """Every chart: a title, axis titles (when it has axes) and custom hover text on every trace."""
    assert isinstance(fig, go.Figure)
    assert title_of(fig)
    if axes:
        assert fig.layout.xaxis.title.text
        assert fig.layout.yaxis.title.text
    for trace in fig.data:
        if trace.hoverinfo == "skip":
            continue
        assert trace.hovertemplate, f"{trace.type} trace without hover text"


def all_strings(fig: go.Figure) -> str:
    return json.dumps(fig.to_plotly_json(), default=str)


# -- Overview -------------------------------------------------------------------------


def test_treemap_sizes_by_cap_and_colours_by_24h_change(mart):
    fig = charts.create_market_treemap(mart)
    assert_readable(fig, axes=False)
    trace = fig.data[0]
    assert trace.type == "treemap"
    ids = list(trace.ids)
    assert ids[0] == "root"
    assert {"large_cap", "mid_cap", "micro_cap"} <= set(ids)
    btc = ids.index("coin:bitcoin")
    assert trace.values[btc] == 400e9
    assert trace.marker.colors[btc] == 0.5
    assert trace.marker.cmid == 0
    # parents carry the sum of their children ("total" branch values)
    large = ids.index("large_cap")
    assert trace.values[large] == pytest.approx(400e9 + 150e9 + 11e9)
    assert "24h change" in trace.marker.colorbar.title.text


def test_treemap_of_nothing_is_an_empty_figure_not_an_error(mart):
    fig = charts.create_market_treemap(mart.iloc[0:0])
    assert title_of(fig)
    assert not fig.data


def test_movers_chart_puts_gainers_on_top_in_green_and_losers_in_red(mart):
    gainers = mart[mart["price_change_percentage_24h"] > 0].nlargest(2, "price_change_percentage_24h")
    losers = mart[mart["price_change_percentage_24h"] < 0].nsmallest(2, "price_change_percentage_24h")
    fig = charts.create_movers_chart(gainers, losers, "24h")
    assert_readable(fig)
    bar = fig.data[0]
    assert list(bar.y) == ["DOGE", "ETH", "SOL", "TINY"]  # bottom to top
    assert bar.marker.color[0] == charts.LOSS and bar.marker.color[-1] == charts.GAIN
    assert "24 hours" in fig.layout.xaxis.title.text and "%" in fig.layout.xaxis.title.text
    assert fig.layout.xaxis.range[1] > 40.0  # room for the printed value beside the biggest bar


@pytest.mark.parametrize("period, column", [("1h", "price_change_percentage_1h"), ("7d", "price_change_percentage_7d")])
def test_movers_chart_uses_the_period_column(mart, period, column):
    fig = charts.create_movers_chart(mart.nlargest(2, column), mart.iloc[0:0], period)
    assert list(fig.data[0].x) == sorted(mart.nlargest(2, column)[column])
    assert charts.PERIOD_LABELS[period] in title_of(fig)


def test_movers_chart_without_movers_says_so(mart):
    fig = charts.create_movers_chart(mart.iloc[0:0], mart.iloc[0:0], "24h")
    assert not fig.data
    assert "No coin moved" in fig.layout.annotations[0].text


# -- Dominance ------------------------------------------------------------------------


def test_dominance_donut_shows_top_coins_others_and_the_rest(mart):
    fig = charts.create_dominance_donut(mart, top_n=2)
    assert_readable(fig, axes=False)
    pie = fig.data[0]
    assert pie.type == "pie" and pie.hole == 0.5
    assert list(pie.labels[:2]) == ["Bitcoin (BTC)", "Ethereum (ETH)"]
    assert pie.labels[2] == "Other 4 coins"
    assert pie.labels[3] == "Rest of the market"
    assert sum(pie.values) == pytest.approx(100.0)


def test_category_dominance_chart_orders_categories_large_to_micro(segments):
    fig = charts.create_category_dominance_chart(segments)
    assert_readable(fig)
    assert list(fig.data[0].x) == ["Large cap", "Micro cap"]
    assert list(fig.data[0].y) == [78.3, 1.7]
    assert fig.layout.yaxis.ticksuffix == "%"


def test_dominance_history_has_one_line_per_group_and_a_sane_axis_for_one_snapshot():
    history = pd.DataFrame(
        [
            {
                "snapshot_at": SNAPSHOT,
                "btc_dominance_pct": 38.4,
                "eth_dominance_pct": 16.2,
                "stablecoin_dominance_pct": 15.3,
                "others_dominance_pct": 30.0,
            }
        ]
    )
    fig = charts.create_dominance_history_chart(history)
    assert_readable(fig)
    assert [t.name for t in fig.data] == ["Bitcoin", "Ethereum", "Stablecoins", "All other coins"]
    assert fig.layout.xaxis.range is not None  # a day around the single point, not microseconds
    assert "UTC" in fig.layout.xaxis.title.text


# -- Liquidity --------------------------------------------------------------------------


def test_liquidity_scatter_is_log_log_coloured_by_category_with_band_lines(mart):
    fig = charts.create_liquidity_scatter(mart)
    assert_readable(fig)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert "USD" in fig.layout.xaxis.title.text and "USD" in fig.layout.yaxis.title.text
    names = [t.name for t in fig.data if t.mode == "markers"]
    assert names == ["High (≥ 10% of cap traded)", "Medium (3–10%)", "Low (< 3%)"]
    assert sum(len(t.x) for t in fig.data if t.mode == "markers") == len(mart)
    band_lines = [t for t in fig.data if t.mode == "lines"]
    assert len(band_lines) == 2
    assert all(text.startswith("$") for text in fig.layout.xaxis.ticktext)


@pytest.mark.parametrize(
    "colors, categories",
    [
        (charts.MARKET_CAP_COLORS, MARKET_CAP_CATEGORIES),
        (charts.LIQUIDITY_COLORS, LIQUIDITY_CATEGORIES),
        (charts.TREND_COLORS, PRICE_TREND_CATEGORIES),
    ],
)
def test_every_category_has_its_colour(colors, categories):
    assert list(colors) == categories


def test_liquidity_band_lines_follow_the_bands(mart):
    fig = charts.create_liquidity_scatter(mart)
    lines = [t for t in fig.data if t.mode == "lines"]
    ratios = sorted(b.lower for b in LIQUIDITY_BANDS if b.lower is not None)
    assert sorted(round(t.y[0] / t.x[0], 12) for t in lines) == ratios
    notes = {a.text: a.yanchor for a in fig.layout.annotations if a.text.startswith("volume =")}
    assert notes == {"volume = 10% of cap": "bottom", "volume = 3% of cap": "top"}  # the top line labelled above


def test_category_count_charts(mart):
    counts = category_counts(mart, "liquidity_category", LIQUIDITY_CATEGORIES)
    fig = charts.create_liquidity_distribution_chart(counts)
    assert_readable(fig)
    assert list(fig.data[0].x) == ["High", "Medium", "Low", "Unknown"]
    assert list(fig.data[0].y) == [1, 3, 2, 0]
    trend = charts.create_trend_distribution_chart(
        category_counts(mart, "price_trend_category", PRICE_TREND_CATEGORIES)
    )
    assert_readable(trend)
    assert trend.data[0].marker.color[0] == charts.TREND_COLORS["strong_gain"]


def test_category_count_chart_of_nothing_is_empty():
    counts = category_counts(pd.DataFrame({"liquidity_category": []}), "liquidity_category", LIQUIDITY_CATEGORIES)
    assert not charts.create_liquidity_distribution_chart(counts).data


# -- Trends ------------------------------------------------------------------------------


def test_sparkline_grid_draws_one_line_per_coin_with_a_sparkline(mart):
    fig = charts.create_sparkline_grid(mart, columns=2)
    assert title_of(fig)
    assert len(fig.data) == 2  # only bitcoin and ethereum have sparklines
    # Coloured by the 7d change in each title (the API's, +1.0 % for both), not by the line's own move
    # (ETH's line falls): a red line titled "+1.0%" contradicted itself.
    assert fig.data[0].line.color == charts.GAIN and fig.data[1].line.color == charts.GAIN
    assert charts.create_sparkline_grid(mart.assign(price_change_percentage_7d=-2.0)).data[0].line.color == charts.LOSS
    assert charts.create_sparkline_grid(mart.assign(price_change_percentage_7d=None)).data[0].line.color == charts.FLAT
    assert len(fig.data[0].x) == 168
    texts = [a.text for a in fig.layout.annotations]
    assert "BTC  +1.0%" in texts
    assert "Price (USD)" in texts and any("7 days" in t for t in texts)  # shared axis labels


def test_sparkline_grid_without_sparklines_says_so(mart):
    fig = charts.create_sparkline_grid(mart[mart["sparkline_7d"].isna()])
    assert not fig.data
    assert "sparklines" in fig.layout.annotations[0].text


# -- Segments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "builder",
    [
        charts.create_segment_share_chart,
        charts.create_segment_change_chart,
        charts.create_segment_breadth_chart,
        charts.create_segment_risk_chart,
    ],
)
def test_segment_charts_compare_categories_in_order(segments, builder):
    fig = builder(segments)
    assert_readable(fig)
    for trace in fig.data:
        assert list(trace.x) == ["Large cap", "Micro cap"]
    assert not builder(segments.iloc[0:0]).data


def test_segment_share_chart_turns_volume_and_counts_into_shares(segments):
    fig = charts.create_segment_share_chart(segments)
    by_name = {t.name: list(t.y) for t in fig.data}
    assert by_name["Market cap"] == [80.3, 1.8]
    assert sum(by_name["24h volume"]) == pytest.approx(100.0)
    assert sum(by_name["Coins"]) == pytest.approx(100.0)


def test_segment_breadth_chart_stacks_gainers_losers_and_the_rest(segments):
    fig = charts.create_segment_breadth_chart(segments)
    assert fig.layout.barmode == "stack"
    by_name = {t.name: list(t.y) for t in fig.data}
    assert by_name["Gainers"] == [8, 80] and by_name["Losers"] == [1, 29]
    assert by_name["Unchanged or unknown"] == [0, 1]


# -- Coin --------------------------------------------------------------------------------------


def test_coin_history_chart_has_price_volume_market_cap_and_rank_panels():
    history = pd.DataFrame(
        {
            "ts": pd.to_datetime(["2022-10-15", "2022-10-16"]),
            "price": [19000.0, 19163.45],
            "market_cap": [360e9, 367.6e9],
            "total_volume": [1e9, 2e9],
            "market_cap_rank": [float("nan"), 1.0],
            "origin": ["backfill", "snapshot"],
        }
    )
    fig = charts.create_coin_history_chart(history, "Bitcoin", "btc")
    assert title_of(fig).startswith("Bitcoin (BTC)")
    assert [t.name for t in fig.data] == ["Price", "24h volume", "Market cap", "Rank"]
    assert [t.type for t in fig.data] == ["scatter", "bar", "scatter", "scatter"]  # volume as bars below the price
    assert fig.layout.yaxis.title.text == "Price (USD)"
    assert fig.layout.yaxis2.title.text == "Volume"
    assert fig.layout.yaxis3.title.text == "Market cap (USD)"
    assert fig.layout.yaxis3.exponentformat == "B"  # $360B, not $360G
    low, high = fig.layout.yaxis4.range
    assert fig.layout.yaxis4.title.text == "Rank" and low > high  # reversed: #1 on top
    assert high == 0.5 and fig.layout.yaxis4.dtick == 1  # never #0 nor #1.5
    assert fig.layout.xaxis4.title.text == "Time (UTC)"
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3", "x4"}
    assert fig.layout.xaxis.matches == fig.layout.xaxis2.matches == "x4"  # one shared time axis
    assert all(t.hovertemplate for t in fig.data)
    assert list(fig.data[3].customdata) == ["—", "#1"]
    for axis in (fig.layout.yaxis, fig.layout.yaxis2, fig.layout.yaxis3):
        assert axis.type == "linear"


def test_coin_history_chart_on_a_log_scale():
    history = pd.DataFrame(
        {
            "ts": pd.date_range("2022-01-01", periods=5, freq="1D"),
            "price": [0.000000533, 0.0000006, 0.000001, 0.0000008, 0.0000007],
            "market_cap": [1e6, 2e6, 3e6, 2e6, 1e6],
            "total_volume": [1e4, 2e4, 3e4, 2e4, 1e4],
            "market_cap_rank": [240.0, 238.0, 236.0, 239.0, 245.0],
        }
    )
    fig = charts.create_coin_history_chart(history, "Tiny", "tny", log=True, range_label="7d")
    assert fig.layout.yaxis.type == fig.layout.yaxis2.type == fig.layout.yaxis3.type == "log"
    assert fig.layout.yaxis4.type != "log"
    assert tuple(fig.layout.yaxis4.range) == pytest.approx((245.0 + 1.0, 236.0 - 1.0))  # reversed, padded
    assert fig.layout.yaxis.tickformat == ",.9~f"  # $0.000000533, never 5.33e-7
    assert "$0.000000533" in fig.data[0].customdata[0]
    assert title_of(fig).endswith("(7d)")


def test_coin_history_with_one_point_on_a_log_scale_gets_a_range_in_powers_of_ten():
    one = pd.DataFrame({"ts": [pd.Timestamp(SNAPSHOT)], "price": [100.0], "market_cap": [1e9], "total_volume": [1e6]})
    fig = charts.create_coin_history_chart(one, "Bitcoin", "btc", log=True)
    low, high = fig.layout.yaxis.range
    assert low == pytest.approx(math.log10(95.0)) and high == pytest.approx(math.log10(105.0))


def test_coin_history_with_one_point_gets_readable_ranges():
    history = pd.DataFrame(
        {
            "ts": [pd.Timestamp(SNAPSHOT)],
            "price": [19163.45],
            "market_cap": [367.6e9],
            "total_volume": [1e9],
            "origin": ["snapshot"],
        }
    )
    fig = charts.create_coin_history_chart(history, "Bitcoin", "btc")
    low, high = fig.layout.yaxis.range
    assert low == pytest.approx(19163.45 * 0.95) and high == pytest.approx(19163.45 * 1.05)
    assert fig.layout.xaxis.range is not None


def test_coin_history_without_rows_says_so():
    empty = pd.DataFrame({"ts": [], "price": [], "market_cap": [], "total_volume": [], "origin": []})
    fig = charts.create_coin_history_chart(empty, "Bitcoin", "btc")
    assert "No history" in fig.layout.annotations[0].text


def test_coin_sparkline_chart(mart):
    fig = charts.create_coin_sparkline_chart(mart.loc[0, "sparkline_7d"], SNAPSHOT, "Bitcoin", "btc")
    assert_readable(fig)
    assert len(fig.data[0].x) == 168
    assert pd.Timestamp(fig.data[0].x[-1]) == pd.Timestamp(SNAPSHOT)
    missing = charts.create_coin_sparkline_chart(None, SNAPSHOT, "Bitcoin", "btc")
    assert not missing.data


# -- Pipeline ------------------------------------------------------------------------------------


def test_runs_chart_colours_by_status():
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "trigger": ["schedule", "button", "cli"],
            "source": ["api", "api", "sample"],
            "status": ["success", "failed", "success"],
            "duration_s": [3.2, 0.4, 1.0],
            "silver_rows": [250, None, 250],
            "started_at": pd.to_datetime(["2026-11-27 08:00", "2026-11-27 08:15", "2026-11-27 08:30"]),
        }
    )
    fig = charts.create_runs_chart(runs)
    assert_readable(fig)
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"success", "failed"}
    assert by_name["failed"].marker.color == charts.LOSS
    assert list(by_name["success"].y) == [3.2, 1.0]
    assert "seconds" in fig.layout.yaxis.title.text


def test_quarantine_chart():
    reasons = pd.DataFrame({"reason": ["negative market_cap", "missing id"], "records": [3, 1]})
    fig = charts.create_quarantine_chart(reasons)
    assert_readable(fig)
    assert list(fig.data[0].y) == ["missing id", "negative market_cap"]
    assert not charts.create_quarantine_chart(reasons.iloc[0:0]).data


# -- safety ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda m: charts.create_market_treemap(m),
        lambda m: charts.create_movers_chart(m.nlargest(5, "price_change_percentage_24h"), m.iloc[0:0], "24h"),
        lambda m: charts.create_dominance_donut(m, 10),
        lambda m: charts.create_liquidity_scatter(m),
        lambda m: charts.create_coin_history_chart(
            pd.DataFrame(
                {"ts": [SNAPSHOT], "price": [1.0], "market_cap": [1.0], "total_volume": [1.0], "origin": ["snapshot"]}
            ),
            NASTY_NAME,
            "<i>x</i>",
        ),
    ],
)
def test_coin_names_never_reach_plotly_as_html(mart, build):
    text = all_strings(build(mart))
    assert "<b>Evil" not in text and "<a href" not in text and "<i>x" not in text.lower()
    assert "&lt;b&gt;Evil" in text or "&lt;I&gt;X" in text or "&lt;i&gt;x" in text


def test_money_axes_use_billions_not_giga():
    axis = charts._money_axis()
    assert axis["exponentformat"] == "B" and axis["tickprefix"] == "$"
    ticks = charts._log_money_ticks(5e6, 4e11)
    assert ticks["ticktext"][0] == "$1M" and ticks["ticktext"][-1] == "$1T"
    assert charts._log_money_ticks(math.nan, 1) == {}


def test_coin_axis_labels_disambiguate_shared_symbols():
    frame = pd.DataFrame({"symbol": ["usdt", "usdt", "btc"], "market_cap_rank": [3, 90, 1]})
    assert charts.coin_axis_labels(frame) == ["USDT #3", "USDT #90", "BTC"]


def test_long_coin_names_are_shortened_in_chart_titles():
    history = pd.DataFrame(
        {
            "ts": [pd.Timestamp(SNAPSHOT)],
            "price": [1.0],
            "market_cap": [1.0],
            "total_volume": [1.0],
            "origin": ["snapshot"],
        }
    )
    fig = charts.create_coin_history_chart(history, "A" * 80, "aaa")
    assert title_of(fig) == "A" * 39 + "…: price, volume, market cap and rank"


@pytest.mark.parametrize(
    "prices, expected",
    [
        ([0.000011, 0.000012], {"tickprefix": "$", "tickformat": ",.7~f"}),  # $0.000011, not "$11µ"
        ([0.000000533, 0.0000006], {"tickprefix": "$", "tickformat": ",.9~f"}),  # not "5.33e-7"
        ([0.5, 0.9], {"tickprefix": "$", "tickformat": ",.3~f"}),
        ([19000.0, 19500.0], {"tickprefix": "$", "exponentformat": "B"}),
    ],
)
def test_price_axes_read_as_dollars(prices, expected):
    assert charts._price_axis(prices) == expected


# -- unbounded external text and empty buckets ------------------------------------------------------


LONG = 100_000


@pytest.mark.parametrize(
    "build",
    [
        lambda m: charts.create_market_treemap(m),
        lambda m: charts.create_movers_chart(
            m.nlargest(5, "price_change_percentage_24h"), m.nsmallest(3, "price_change_percentage_24h"), "24h"
        ),
        lambda m: charts.create_dominance_donut(m, 10),
        lambda m: charts.create_liquidity_scatter(m),
        lambda m: charts.create_sparkline_grid(m),
        lambda m: charts.create_coin_sparkline_chart(
            m.iloc[0]["sparkline_7d"], SNAPSHOT, m.iloc[0]["name"], m.iloc[1]["symbol"]
        ),
        lambda m: charts.create_coin_history_chart(
            pd.DataFrame(
                {"ts": [SNAPSHOT], "price": [1.0], "market_cap": [1.0], "total_volume": [1.0], "origin": ["snapshot"]}
            ),
            m.iloc[0]["name"],
            m.iloc[1]["symbol"],
        ),
    ],
)
def test_a_huge_name_or_symbol_is_cut_in_every_chart(mart, build):
    import re

    mart = mart.copy()
    mart.loc[0, "name"] = "Q" * LONG  # bitcoin
    mart.loc[1, "symbol"] = "q" * LONG  # ethereum
    text = json.dumps(build(mart).to_plotly_json(), default=str, ensure_ascii=False)
    runs = [len(run) for run in re.findall(r"[qQ]+", text)]
    assert runs and max(runs) <= 60, max(runs)  # shown, but cut
    assert "…" in text


def test_category_charts_show_an_empty_category_as_zero(segments):
    from dashboard.frames import complete_segments

    full = complete_segments(segments)
    fig = charts.create_category_dominance_chart(full)
    assert list(fig.data[0].x) == ["Large cap", "Mid cap", "Small cap", "Micro cap", "Unknown"]
    assert list(fig.data[0].y) == [78.3, 0.0, 0.0, 1.7, 0.0]
    for builder in (
        charts.create_segment_share_chart,
        charts.create_segment_breadth_chart,
        charts.create_segment_change_chart,
        charts.create_segment_risk_chart,
    ):
        fig = builder(full)
        assert_readable(fig)
        for trace in fig.data:
            assert list(trace.x) == ["Large cap", "Mid cap", "Small cap", "Micro cap", "Unknown"]
        assert "Infinity" not in all_strings(fig) and "NaN%" not in all_strings(fig)


def _history(times, bases, count=100):
    return pd.DataFrame(
        [
            {
                "snapshot_at": pd.Timestamp(t),
                "coin_count": count,
                "btc_dominance_pct": 38.0 + i * 0.1,
                "eth_dominance_pct": 16.0,
                "stablecoin_dominance_pct": 15.0,
                "others_dominance_pct": 31.0,
                "dominance_basis": b,
            }
            for i, (t, b) in enumerate(zip(times, bases))
        ]
    )


def test_dominance_history_draws_each_basis_as_its_own_style():
    times = pd.date_range("2022-11-27 00:00", periods=6, freq="15min")
    history = _history(times, ["global"] * 3 + ["top_n"] * 2 + ["tracked_universe"])  # the old name reads as top_n
    fig = charts.create_dominance_history_chart(history)
    btc = [t for t in fig.data if t.legendgroup == "Bitcoin"]
    assert len(btc) == 2
    solid, dotted = btc
    assert (solid.line.dash, dotted.line.dash) == ("solid", "dot")
    assert solid.name == "Bitcoin" and dotted.name == "Bitcoin (top 100 coins)"
    # Each trace holds only its own basis' points: the two are never joined into one line.
    assert [v is not None for v in solid.y] == [True] * 3 + [False] * 3
    assert [v is not None for v in dotted.y] == [False] * 3 + [True] * 3
    assert "solid = whole market" in fig.layout.yaxis.title.text and "top 100 coins" in fig.layout.yaxis.title.text


def test_dominance_history_breaks_lines_across_long_gaps():
    times = list(pd.date_range("2022-11-27", periods=4, freq="15min")) + list(
        pd.date_range("2023-01-08", periods=3, freq="15min")
    )
    fig = charts.create_dominance_history_chart(_history(times, ["global"] * 7))
    btc = next(t for t in fig.data if t.name == "Bitcoin")
    assert len(btc.y) == 8 and btc.y[4] is None and btc.connectgaps is False
    assert all(v is not None for i, v in enumerate(btc.y) if i != 4)


def test_dominance_history_only_top_n_says_so_on_the_axis():
    fig = charts.create_dominance_history_chart(
        _history(pd.date_range("2022-10-16", periods=2, freq="h"), ["top_n", "top_n"], 250)
    )
    assert {t.name for t in fig.data} == {
        "Bitcoin (top 250 coins)",
        "Ethereum (top 250 coins)",
        "Stablecoins (top 250 coins)",
        "All other coins (top 250 coins)",
    }
    assert fig.layout.yaxis.title.text == "Share of the top 250 coins' market cap (%)"


# -- Market over time -------------------------------------------------------------------------


def market_history_frame(times, basis="global", coin_count=250) -> pd.DataFrame:
    times = pd.to_datetime(list(times))
    n = len(times)
    return pd.DataFrame(
        {
            "snapshot_at": times,
            "total_market_cap": [1e12 + i * 1e10 for i in range(n)],
            "total_volume": [5e10 + i * 1e9 for i in range(n)],
            "dominance_basis": [basis] * n if isinstance(basis, str) else basis,
            "coin_count": [coin_count] * n,
        }
    )


def test_market_over_time_has_market_cap_above_volume_on_one_time_axis():
    fig = charts.create_market_over_time_chart(market_history_frame(pd.date_range("2024-01-01", periods=5, freq="1D")))
    assert [t.name for t in fig.data] == ["Market cap", "24h volume"]
    assert [t.yaxis for t in fig.data] == ["y", "y2"]
    assert fig.layout.xaxis.matches == "x2"
    assert fig.layout.yaxis.type == fig.layout.yaxis2.type == "linear"
    assert fig.layout.yaxis.exponentformat == "B"
    assert fig.layout.yaxis.title.text == "Market cap (USD)"
    assert fig.data[0].customdata[0] == "$1.00T (whole market)"


def test_market_over_time_on_a_log_scale_labels_ticks_in_dollars():
    fig = charts.create_market_over_time_chart(
        market_history_frame(pd.date_range("2024-01-01", periods=5, freq="1D")), log=True
    )
    assert fig.layout.yaxis.type == fig.layout.yaxis2.type == "log"
    assert "log" in fig.layout.yaxis.title.text
    assert list(fig.layout.yaxis.ticktext) == ["$1T", "$10T"]


def test_market_over_time_draws_each_basis_as_its_own_style_and_breaks_gaps():
    times = list(pd.date_range("2024-01-01", periods=6, freq="1h")) + [pd.Timestamp("2024-02-01")]
    frame = market_history_frame(times, basis=["global"] * 3 + ["top_n"] * 4, coin_count=100)
    fig = charts.create_market_over_time_chart(frame)
    assert [t.name for t in fig.data] == [
        "Market cap",
        "Market cap (top 100 coins)",
        "24h volume",
        "24h volume (top 100 coins)",
    ]
    assert [t.line.dash for t in fig.data] == ["solid", "dot", "solid", "dot"]
    assert "solid: whole market" in title_of(fig)
    assert None in list(fig.data[1].y)  # the month without data is a break, not a straight line


def test_market_over_time_with_one_point_and_with_none():
    one = charts.create_market_over_time_chart(market_history_frame([SNAPSHOT]))
    assert one.layout.xaxis.range is not None
    empty = charts.create_market_over_time_chart(market_history_frame([]))
    assert "No market history" in empty.layout.annotations[0].text
