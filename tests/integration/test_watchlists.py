"""Named watchlists on SQLite and PostgreSQL: save, replace, load, list, delete; names and ids are user text."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from pipeline import api
from pipeline.db import ensure_schema, make_engine
from pipeline.schema import watchlists
from pipeline.watchlists import ID_LIMIT, MAX_COINS, NAME_LIMIT, clean_ids, clean_name, parse_ids


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    ensure_schema(engine)
    return engine


def test_save_load_list_replace_and_delete(engine):
    saved = api.save_watchlist(engine, "  My   L1s ", ["bitcoin", "ethereum", "bitcoin", " solana "])
    assert saved.name == "My L1s" and saved.coin_ids == ("bitcoin", "ethereum", "solana")
    loaded = api.load_watchlist(engine, "My L1s")
    assert loaded is not None and loaded.coin_ids == ("bitcoin", "ethereum", "solana")
    assert api.load_watchlist(engine, "my l1s") is None  # names are exact (case kept)

    api.save_watchlist(engine, "Alpha", ["tether"])
    again = api.save_watchlist(engine, "My L1s", ["cardano"])  # same name: the list is replaced whole
    assert again.updated_at >= saved.updated_at
    assert [(w.name, w.coin_ids) for w in api.list_watchlists(engine)] == [
        ("Alpha", ("tether",)),
        ("My L1s", ("cardano",)),
    ]
    with engine.connect() as conn:
        rows = conn.execute(select(watchlists.c.name, watchlists.c.coin_ids)).all()
    assert sorted((name, json.loads(ids)) for name, ids in rows) == [("Alpha", ["tether"]), ("My L1s", ["cardano"])]

    assert api.delete_watchlist(engine, "My L1s") is True
    assert api.delete_watchlist(engine, "My L1s") is False
    assert api.load_watchlist(engine, "My L1s") is None
    assert [w.name for w in api.list_watchlists(engine)] == ["Alpha"]


@pytest.mark.parametrize(
    "name",
    [
        "x'); DROP TABLE watchlists; --",
        "Robert\x00'); --",
        '"quoted" \\ back\\slash %s %(name)s ?',
        "名前 🚀 émoji",
    ],
)
def test_names_are_stored_literally_never_as_sql(engine, name):
    saved = api.save_watchlist(engine, name, ["bitcoin"])
    assert "\x00" not in saved.name
    assert api.load_watchlist(engine, name).coin_ids == ("bitcoin",)  # the same text finds it again
    assert [w.name for w in api.list_watchlists(engine)] == [saved.name]
    assert api.delete_watchlist(engine, name) is True
    assert api.list_watchlists(engine) == []  # the table is still there, empty


def test_long_names_are_cut_and_empty_names_refused(engine):
    saved = api.save_watchlist(engine, "n" * 10_000, ["bitcoin"])
    assert saved.name == "n" * NAME_LIMIT
    assert api.load_watchlist(engine, "n" * 10_000) is not None  # cut the same way on the way in
    for blank in ("", "   ", "\x00\x00", "\n\t"):
        with pytest.raises(api.WatchlistError):
            api.save_watchlist(engine, blank, ["bitcoin"])
        assert api.load_watchlist(engine, blank) is None
        assert api.delete_watchlist(engine, blank) is False


def test_ids_are_cleaned_and_bounded(engine):
    ids = ["bit\x00coin", "", "  ", "x" * (ID_LIMIT + 1), "ethereum", *[f"coin-{i}" for i in range(MAX_COINS + 5)]]
    saved = api.save_watchlist(engine, "big", ids)
    assert saved.coin_ids[:2] == ("bitcoin", "ethereum")
    assert len(saved.coin_ids) == MAX_COINS
    assert api.load_watchlist(engine, "big").coin_ids == saved.coin_ids
    empty = api.save_watchlist(engine, "empty", [])
    assert api.load_watchlist(engine, "empty").coin_ids == () == empty.coin_ids


def test_a_database_without_the_table_reads_empty_and_saving_creates_it(database_url):
    engine = make_engine(database_url)  # no ensure_schema: a database from before watchlists existed
    assert api.list_watchlists(engine) == []
    assert api.load_watchlist(engine, "any") is None
    assert api.delete_watchlist(engine, "any") is False
    api.save_watchlist(engine, "first", ["bitcoin"])
    assert api.load_watchlist(engine, "first").coin_ids == ("bitcoin",)


def test_a_damaged_stored_list_reads_as_empty(engine):
    with engine.begin() as conn:
        conn.execute(
            watchlists.insert(),
            [
                {"name": "broken", "coin_ids": "not json", "updated_at": api.utcnow()},
                {"name": "object", "coin_ids": '{"a": 1}', "updated_at": api.utcnow()},
                {"name": "mixed", "coin_ids": '["bitcoin", 3, null, "ethereum"]', "updated_at": api.utcnow()},
            ],
        )
    assert api.load_watchlist(engine, "broken").coin_ids == ()
    assert api.load_watchlist(engine, "object").coin_ids == ()
    assert api.load_watchlist(engine, "mixed").coin_ids == ("bitcoin", "ethereum")


def test_cleaning_rules_pure():
    assert clean_name(" a\tb\nc ") == "a b c"
    assert parse_ids("bitcoin,,ethereum, bitcoin ,") == ("bitcoin", "ethereum")
    assert parse_ids(None) == () and parse_ids("") == ()
    assert clean_ids(["a\x00b", "a\x7fb"]) == ("ab",)
