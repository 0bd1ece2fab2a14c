"""The watchlist through AppTest: kept in the link, starred on the Coin page, shown on its page, saved, loaded
and deleted by name in the database (real SQLite warehouse seeded by the pipeline)."""

from __future__ import annotations

from pipeline import api
from pipeline.db import make_engine
from tests.dashboard.helpers import PAGES, chart_specs, metric, plain


def clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_the_watchlist_page_shows_the_starred_coins_figures(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app({"watch": "ethereum,bitcoin,not-a-coin"}, page="watchlist")
    clean(at)
    assert at.title[0].value == "⭐ Watchlist"
    assert metric(at, "Coins").value == "2"
    assert metric(at, "Combined market cap").value == "$522.88B"
    assert list(at.dataframe[0].value["coin"]) == ["Ethereum (ETH)", "Bitcoin (BTC)"]  # starring order
    specs = chart_specs(at)
    assert len(specs) == 1 and [t["name"] for t in specs[0]["data"] if t.get("name")] == [
        "Ethereum (ETH)",
        "Bitcoin (BTC)",
    ]
    assert any("not-a-coin" in plain(c.value) and "Not in the newest snapshot" in c.value for c in at.caption)
    assert at.multiselect(key="watchlist_coins").value == ["ethereum", "bitcoin", "not-a-coin"]
    assert at.query_params["watch"] == "ethereum,bitcoin,not-a-coin"  # kept on every page


def test_an_empty_watchlist_says_how_to_fill_it(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page="watchlist")
    clean(at)
    assert not chart_specs(at) and not at.metric
    assert any("Your watchlist is empty" in i.value for i in at.info)
    assert at.button(key="watchlist_save").disabled


def test_picking_coins_on_the_page_changes_the_list_and_the_link(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app({"watch": "bitcoin"}, page="watchlist")
    at.multiselect(key="watchlist_coins").select("tether").run()
    clean(at)
    assert at.query_params["watch"] == "bitcoin,tether"
    assert metric(at, "Coins").value == "2"


def test_the_coin_page_star_adds_and_removes_the_coin(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app(page="coin", page_query={"coin": "ethereum"})
    clean(at)
    assert at.button(key="coin_watch_toggle").label == "☆ Add to watchlist"
    at.button(key="coin_watch_toggle").click().run()
    clean(at)
    assert at.query_params["watch"] == "ethereum" and at.query_params["coin"] == "ethereum"
    assert at.button(key="coin_watch_toggle").label.startswith("★ On your watchlist")
    assert at.sidebar.toggle(key="filter_watch_only").label == "Only my watchlist (1 coin)"
    at.button(key="coin_watch_toggle").click().run()
    assert "watch" not in at.query_params


def test_save_load_and_delete_by_name(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    engine = make_engine(fresh_warehouse.database_url)
    at = open_app({"watch": "bitcoin,solana"}, page="watchlist")
    at.text_input(key="watchlist_name").input("  Robert'); DROP TABLE watchlists;--  ").run()
    at.button(key="watchlist_save").click().run()
    clean(at)
    name = "Robert'); DROP TABLE watchlists;--"
    saved = api.load_watchlist(engine, name)
    assert saved is not None and saved.coin_ids == ("bitcoin", "solana")
    assert at.query_params["watchlist"] == name
    assert any("Saved 2 coins" in s.value for s in at.sidebar.success)
    assert at.selectbox(key="watchlist_saved").value == name

    # a new session with only the name in the link gets the list from the database
    other = open_app({"watchlist": name}, page="watchlist")
    clean(other)
    assert other.query_params["watch"] == "bitcoin,solana"
    assert metric(other, "Coins").value == "2"

    other.multiselect(key="watchlist_coins").unselect("solana").run()
    other.button(key="watchlist_save").click().run()  # the same name: replaced
    assert api.load_watchlist(engine, name).coin_ids == ("bitcoin",)

    other.button(key="watchlist_delete").click().run()
    clean(other)
    assert api.load_watchlist(engine, name) is None
    assert "watchlist" not in other.query_params
    assert other.query_params["watch"] == "bitcoin"  # the list itself stays in the link


def test_a_blank_name_is_refused_and_an_unknown_name_in_the_link_is_reported(fresh_warehouse, use_warehouse, open_app):
    use_warehouse(fresh_warehouse)
    at = open_app({"watch": "bitcoin"}, page="watchlist")
    at.text_input(key="watchlist_name").input(" \t ").run()
    at.button(key="watchlist_save").click().run()
    assert any("needs a name" in e.value for e in at.error)
    assert api.list_watchlists(make_engine(fresh_warehouse.database_url)) == []

    unknown = open_app({"watchlist": "nobody saved this"}, page=None)  # said once, on the first page shown
    assert not unknown.exception
    assert any("No watchlist is saved under the name in the link" in w.value for w in unknown.sidebar.warning)
    assert "watchlist" not in unknown.query_params and "watch" not in unknown.query_params


def test_hostile_ids_in_the_link_are_cleaned(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app({"watch": "bitcoin,," + "x" * 5000 + ",bit\x00coin,ethereum"}, page="watchlist")
    clean(at)
    assert at.query_params["watch"] == "bitcoin,ethereum"


def test_only_my_watchlist_applies_on_every_coin_page(sample_warehouse, use_warehouse, open_app):
    use_warehouse(sample_warehouse)
    at = open_app({"watch": "bitcoin,ethereum", "watch_only": "1"}, page="liquidity")
    clean(at)
    for page in ("dominance", "trends", "coin", "overview", "coins"):
        at.switch_page(PAGES[page]).run()
        clean(at)
        assert at.query_params["watch_only"] == "1", page
    assert len(at.dataframe[0].value) == 2
    at.switch_page(PAGES["coin"]).run()
    assert at.selectbox(key="coin_id").options[:2] == ["#1 Bitcoin (BTC)", "#2 Ethereum (ETH)"]
