"""The Coins table's pure parts: search, sort, pages, display text, CSV, stars, and the watchlist chart."""

from __future__ import annotations

import json
import math
from datetime import datetime

import pandas as pd
import pytest

from dashboard import coins_table, watchlist_charts
from dashboard.ui import csv_bytes

SNAPSHOT = datetime(2022, 10, 16, 9, 28)


def coins(**overrides) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "id": ["bitcoin", "ethereum", "shiba-inu", "mystery"],
            "symbol": ["btc", "eth", "shib", None],
            "name": ["Bitcoin", "Ethereum", "Shiba Inu", "Mystery coin"],
            "image": ["https://x/btc.png", None, "https://x/shib.png", None],
            "market_cap_rank": [1.0, 2.0, 13.0, math.nan],
            "current_price": [19163.45, 1286.82, 5.33e-7, math.nan],
            "price_change_percentage_1h": [-0.09, 0.5, 0.0, math.nan],
            "price_change_percentage_24h": [0.37, -1.2, 3.5, math.nan],
            "price_change_percentage_7d": [-1.3, 2.2, -0.004, math.nan],
            "price_change_percentage_30d": [math.nan, 4.0, -10.0, math.nan],
            "total_volume": [12.5e9, 5.4e9, 1.2e8, math.nan],
            "market_cap": [367.6e9, 155.2e9, 6.1e9, math.nan],
            "fully_diluted_valuation": [402.5e9, math.nan, 6.1e9, math.nan],
            "circulating_supply": [19180675.0, 122e6, 549e12, math.nan],
            "total_supply": [21e6, 122e6, 589e12, math.nan],
            "max_supply": [21e6, math.nan, math.nan, math.nan],
            "distance_from_ath_pct": [-72.2, -73.9, -87.0, math.nan],
            "market_cap_category": ["large_cap", "large_cap", "mid_cap", "unknown"],
            "sparkline_7d": [json.dumps([float(i) for i in range(1, 169)]), json.dumps([2.0, 1.0]), None, "not json"],
            "snapshot_at": [SNAPSHOT] * 4,
        }
    )
    for column, values in overrides.items():
        frame[column] = values
    return frame


# -- search, sort, pages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("bit", ["bitcoin"]),
        ("ETH", ["ethereum"]),  # symbol, any case
        ("inu", ["shiba-inu"]),
        ("shiba-", ["shiba-inu"]),  # the id
        ("  ", ["bitcoin", "ethereum", "shiba-inu", "mystery"]),
        (None, ["bitcoin", "ethereum", "shiba-inu", "mystery"]),
        ("(", []),  # literal, not a regular expression
        ("zzz", []),
    ],
)
def test_search_matches_name_symbol_or_id(text, ids):
    assert list(coins_table.search(coins(), text)["id"]) == ids


def test_sort_puts_missing_values_last_both_ways():
    frame = coins()
    assert list(coins_table.sort_coins(frame, "market_cap_rank", False)["id"]) == [
        "bitcoin",
        "ethereum",
        "shiba-inu",
        "mystery",
    ]
    assert list(coins_table.sort_coins(frame, "price_change_percentage_24h", True)["id"]) == [
        "shiba-inu",
        "bitcoin",
        "ethereum",
        "mystery",
    ]
    assert list(coins_table.sort_coins(frame, "current_price", False)["id"])[-1] == "mystery"


def test_sort_by_name_ignores_case():
    frame = coins(name=["bitcoin", "Ethereum", "aave", "Zcash"])
    assert list(coins_table.sort_coins(frame, "name", False)["name"]) == ["aave", "bitcoin", "Ethereum", "Zcash"]
    assert list(coins_table.sort_coins(frame, "name", True)["name"]) == ["Zcash", "Ethereum", "bitcoin", "aave"]


def test_pages_reach_every_row():
    frame = pd.DataFrame({"id": [f"c{i}" for i in range(251)]})
    assert coins_table.page_count(251, 100) == 3
    assert coins_table.page_count(0, 100) == 1
    seen = [coin for page in (1, 2, 3) for coin in coins_table.page_slice(frame, page, 100)["id"]]
    assert seen == list(frame["id"])  # no coin unreachable, none twice
    assert list(coins_table.page_slice(frame, 99, 100)["id"]) == [f"c{i}" for i in range(200, 251)]  # last page
    assert list(coins_table.page_slice(frame, 0, 100)["id"])[:1] == ["c0"]


# -- what a person sees -----------------------------------------------------------------------


def test_table_frame_has_every_column_raw_numbers_and_stars():
    table = coins_table.table_frame(coins(), ["ethereum", "not-shown"])
    assert list(table.columns) == list(coins_table.TABLE_COLUMNS)
    assert list(table["watched"]) == [False, True, False, False]
    assert list(table["coin"]) == ["Bitcoin (BTC)", "Ethereum (ETH)", "Shiba Inu (SHIB)", "Mystery coin"]
    assert table["current_price"].iloc[2] == 5.33e-7  # the number stays a number: numeric sorting
    assert len(table["sparkline"].iloc[0]) == coins_table.SPARKLINE_POINTS
    assert table["sparkline"].iloc[0][-1] == 168.0  # the newest point is kept when thinning
    assert table["sparkline"].iloc[1] == [2.0, 1.0]
    assert table["sparkline"].iloc[2] == [] and table["sparkline"].iloc[3] == []


def test_display_text_is_like_a_finance_site_never_scientific():
    html = coins_table.styled(coins_table.table_frame(coins(), [])).to_html()
    for text in ("$19,163.45", "$1,286.82", "$0.000000533", "+0.37%", "-1.20%", "$367.60B", "$12.50B", "21.00M"):
        assert text in html, text
    assert "e-07" not in html and "5.33e" not in html and "19163.45" not in html
    assert ">1<" in html and "1.0" not in html.split("market_cap_rank")[0]  # ranks as integers


def test_changes_are_coloured_by_sign():
    assert coins_table.change_colour(0.37) == f"color: {coins_table.UP_COLOUR}"
    assert coins_table.change_colour(-1.2) == f"color: {coins_table.DOWN_COLOUR}"
    assert coins_table.change_colour(-0.004) == ""  # shows as +0.00%: no colour
    assert coins_table.change_colour(math.nan) == "" and coins_table.change_colour(None) == ""
    html = coins_table.styled(coins_table.table_frame(coins(), [])).to_html()
    assert coins_table.UP_COLOUR in html and coins_table.DOWN_COLOUR in html


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_has_the_snapshot_time_integer_ranks_and_raw_numbers():
    frame = coins_table.csv_frame(coins(), SNAPSHOT)
    assert list(frame.columns) == list(coins_table.CSV_COLUMNS)
    text = csv_bytes(frame).decode()
    header, first, *_rest, last = text.strip().splitlines()
    assert header.startswith("snapshot_at,market_cap_rank,id,symbol,name,current_price,")
    assert first.startswith("2022-10-16T09:28:00Z,1,bitcoin,btc,Bitcoin,19163.45,")
    assert ",5.33e-07," in text or ",5.33e-7," in text  # raw: the spreadsheet reads the number
    assert "$" not in text and "%" not in text
    assert last.startswith("2022-10-16T09:28:00Z,,mystery,")  # no rank: empty, never "nan"
    assert "1.0," not in first.split(",bitcoin")[0]


def test_csv_without_a_snapshot_column_takes_the_given_time():
    frame = coins_table.csv_frame(coins().drop(columns="snapshot_at"), SNAPSHOT)
    assert set(frame["snapshot_at"]) == {"2022-10-16T09:28:00Z"}


# -- stars ---------------------------------------------------------------------------------------


def test_ticks_in_the_table_add_and_remove_coins_keeping_order():
    shown = ["bitcoin", "ethereum", "tether"]
    before = ["solana", "ethereum"]
    edits = {2: {"watched": True}, "1": {"watched": False}, 0: {"watched": True}}
    assert coins_table.watched_after_edit(shown, before, edits) == ["solana", "bitcoin", "tether"]
    assert coins_table.watched_after_edit(shown, before, {7: {"watched": True}}) == before  # out of range
    assert coins_table.watched_after_edit(shown, before, {0: {"other": 1}}) == before


# -- the watchlist chart -------------------------------------------------------------------------


def test_watchlist_chart_draws_each_coin_from_its_first_point():
    figure = watchlist_charts.create_watchlist_performance_chart(coins())
    traces = figure.data
    assert [t.name for t in traces] == ["Bitcoin (BTC)", "Ethereum (ETH)"]  # no sparkline, no line
    assert traces[0].y[0] == 0.0 and traces[0].y[-1] == pytest.approx(16700.0)
    assert traces[1].y[-1] == pytest.approx(-50.0)
    assert traces[0].x[-1] == pd.Timestamp(SNAPSHOT)
    assert all(t.hovertemplate for t in traces)
    assert "$168.00" in traces[0].customdata[-1]
    assert figure.layout.title.text == watchlist_charts.TITLE


def test_watchlist_chart_escapes_names_and_says_when_nothing_to_draw():
    figure = watchlist_charts.create_watchlist_performance_chart(coins(name=["<b>x</b>"] * 4))
    assert figure.data[0].name.startswith("&lt;b&gt;x&lt;/b&gt;")
    empty = watchlist_charts.create_watchlist_performance_chart(coins(sparkline_7d=[None] * 4))
    assert not empty.data and "No 7-day sparkline" in empty.layout.annotations[0].text
