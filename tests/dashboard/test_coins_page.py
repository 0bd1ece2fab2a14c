"""The Coins page (the landing page) through AppTest on the real pipeline's sample warehouse."""

from __future__ import annotations

import pytest

from tests.dashboard.helpers import PAGES

SAMPLE_COINS = 250


def table(at):
    """The Coins grid's data (a data_editor shows as a dataframe element)."""
    return at.dataframe[0].value


def caption_text(at) -> str:
    return "\n".join(c.value for c in at.caption)


@pytest.fixture
def coins_page(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)

    def open_(query=None):
        at = open_app(query, page=None)
        assert not at.exception and not at.error, [e.value for e in at.exception]
        return at

    return open_


def test_the_landing_page_is_the_coins_table_with_every_column(coins_page):
    at = coins_page()
    assert at.title[0].value == "📋 Coins"
    frame = table(at)
    assert len(frame) == 100 and "Coins 1–100 of 250" in caption_text(at)
    assert list(frame.columns[:4]) == ["watched", "market_cap_rank", "image", "coin"]
    btc = frame.iloc[0]
    assert btc["coin"] == "Bitcoin (BTC)" and btc["market_cap_rank"] == 1
    assert btc["current_price"] == 19163.45  # a number: sorting is numeric; the Styler shows $19,163.45
    assert btc["fully_diluted_valuation"] > btc["market_cap"]  # FDV and supply come from silver
    assert btc["max_supply"] == 21_000_000 and btc["circulating_supply"] > 19e6
    assert btc["distance_from_ath_pct"] < 0
    assert len(btc["sparkline"]) == 42 and all(p > 10_000 for p in btc["sparkline"])
    assert btc["image"].startswith("https://")
    assert not frame["watched"].any()
    assert at.get("download_button")[0].proto.label == f"Download CSV ({SAMPLE_COINS} coins)"


def test_search_sort_and_pages_reach_every_coin(coins_page):
    at = coins_page()
    at.text_input(key="coins_search").input("eth").run()
    found = table(at)
    assert found["coin"].iloc[0] == "Ethereum (ETH)"
    assert all("eth" in f"{label} {coin_id}".lower() for label, coin_id in zip(found["coin"], found["id"]))
    assert "matching the search (of 250)" in caption_text(at)
    at.text_input(key="coins_search").input("no such coin!").run()
    assert not at.dataframe and any("No coin's name" in i.value for i in at.info)
    at.text_input(key="coins_search").input("").run()

    at.selectbox(key="coins_sort").set_value("24h change").run()
    changes = table(at)["price_change_percentage_24h"].dropna()
    assert list(changes) == sorted(changes, reverse=True)

    at.selectbox(key="coins_sort").set_value("Rank").run()
    seen = []
    for page in (1, 2, 3):
        at.number_input(key="coins_page").set_value(page).run()
        seen += list(table(at)["market_cap_rank"])
    assert len(seen) == SAMPLE_COINS and len(set(seen)) == SAMPLE_COINS  # every coin once, none unreachable

    at.selectbox(key="coins_page_size").set_value(250).run()
    assert len(table(at)) == SAMPLE_COINS and not at.number_input


def test_the_link_stars_coins_and_the_category_filter_applies(coins_page):
    at = coins_page({"watch": "ethereum,bitcoin", "category": "large_cap"})
    frame = table(at)
    assert len(frame) == 9
    assert set(frame.loc[frame["watched"], "id"]) == {"bitcoin", "ethereum"}
    assert at.query_params["watch"] == "ethereum,bitcoin"  # the starring order is kept
    assert "2 starred" in caption_text(at)


def test_only_my_watchlist_narrows_the_table(coins_page):
    at = coins_page({"watch": "bitcoin,tether", "watch_only": "1"})
    assert at.sidebar.toggle(key="filter_watch_only").value is True
    assert list(table(at)["id"]) == ["bitcoin", "tether"]
    at.sidebar.toggle(key="filter_watch_only").set_value(False).run()
    assert len(table(at)) == 100 and "watch_only" not in at.query_params


def test_only_my_watchlist_with_nothing_starred_says_so(coins_page):
    at = coins_page({"watch_only": "1"})
    assert not at.dataframe
    assert any("on your watchlist" in i.value for i in at.info)


def test_the_overview_keeps_its_table_and_follows_the_watchlist_filter(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app({"watch": "bitcoin,ethereum", "watch_only": "1"})
    assert not at.exception and at.title[0].value == "📊 Market overview"
    assert next(m for m in at.metric if m.label == "Coins").value == "2"
    assert any(m.label.startswith("Market cap (selection)") for m in at.metric)  # not the whole market's
    at.switch_page(PAGES["coins"]).run()
    assert len(table(at)) == 2
