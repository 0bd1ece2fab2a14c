"""Coin classes from CoinGecko's categories: the pure parts (no network, no database)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from pipeline import classes
from pipeline.providers.coingecko import CoinGeckoClient, fetch_category_markets
from tests.fakes.coingecko import DEFAULT_MARKETS, FakeCoinGecko, load_fixture

REAL_CATEGORIES_LIST = "/work/shared/data/real/categories/categories_list_2023-01-08_JKorf-CoinGecko.Net.json"
REAL_CATEGORIES_2025 = "/work/shared/data/real/categories/categories_2025-03-04_RozanovIgor-monkey.json"
NOW = datetime(2026, 11, 30, 9, 0)


def records(*ids):
    return [{"id": i, "symbol": i[:3], "name": i} for i in ids]


def test_each_category_gives_its_class_and_a_coin_may_have_several():
    pairs = classes.classes_from_bodies(
        {
            "stablecoins": records("tether", "usd-coin"),
            "wrapped-tokens": records("wrapped-bitcoin", "wrapped-steth"),
            "liquid-staking-tokens": records("staked-ether", "wrapped-steth"),
            "bridged-tokens": [],
        }
    )
    assert pairs == [
        ("staked-ether", "liquid_staking"),
        ("tether", "stablecoin"),
        ("usd-coin", "stablecoin"),
        ("wrapped-bitcoin", "wrapped"),
        ("wrapped-steth", "liquid_staking"),
        ("wrapped-steth", "wrapped"),
    ]


def test_records_without_a_usable_id_are_skipped():
    body = [
        {"id": None},
        {"id": ""},
        {"id": "x" * 201},
        {"id": "a\0b"},
        {"id": 5},
        "tether",
        {"symbol": "usdt"},
        {"id": " padded"},
        {"id": "dai"},
    ]
    assert classes.classes_from_bodies({"stablecoins": body}) == [("dai", "stablecoin")]
    assert classes.classes_from_bodies({"stablecoins": {"not": "a list"}}) == []


def test_the_category_ids_are_coingeckos_own():
    """The ids asked for exist in CoinGecko's real /coins/categories answers (recorded)."""
    try:
        listed = {r["category_id"] for r in json.load(open(REAL_CATEGORIES_LIST))}
        listed |= {r["id"] for r in json.load(open(REAL_CATEGORIES_2025))}
    except OSError:
        pytest.skip("the shared real data folder is not here")
    assert set(classes.CATEGORY_CLASSES) <= listed
    assert set(classes.COIN_CLASSES) == {"stablecoin", "wrapped", "liquid_staking", "bridged"}


def test_due_at_most_once_per_refresh_period():
    assert classes.is_due(None, NOW, 24)
    assert not classes.is_due(NOW - timedelta(hours=23, minutes=59), NOW, 24)
    assert classes.is_due(NOW - timedelta(hours=24), NOW, 24)
    assert classes.is_due(NOW, NOW, 0)


def test_last_attempt_reads_todays_and_yesterdays_classes_runs(tmp_path):
    assert classes.last_attempt(tmp_path, NOW) is None
    today, yesterday = tmp_path / "2026-11-30", tmp_path / "2026-11-29"
    (yesterday / "20261129T230000Z-aaaaaa-classes").mkdir(parents=True)  # killed: no manifest
    assert classes.last_attempt(tmp_path, NOW) == datetime(2026, 11, 29, 23, 0)
    run = today / "20261130T080000Z-bbbbbb-classes"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"started_at": "2026-11-30T08:00:05.000000"}))
    (today / "20261130T085000Z-cccccc").mkdir()  # a markets run: not counted
    assert classes.last_attempt(tmp_path, NOW) == datetime(2026, 11, 30, 8, 0, 5)
    (tmp_path / "2026-11-27" / "20261127T080000Z-dddddd-classes").mkdir(parents=True)  # too old to look at
    assert classes.last_attempt(tmp_path, NOW) == datetime(2026, 11, 30, 8, 0, 5)


def test_a_failure_warns_and_a_skip_does_not():
    assert classes.ClassesResult("skipped").warnings == []
    assert classes.ClassesResult("refreshed").warnings == []
    (warning,) = classes.ClassesResult("failed", reason="HTTP 500").warnings
    assert "HTTP 500" in warning and "previous classes are kept" in warning


def test_fetcher_asks_for_one_category_and_returns_its_coins():
    with FakeCoinGecko() as fake:
        client = CoinGeckoClient(fake.base_url, calls_per_minute=0, max_retries=0)
        response = fetch_category_markets(client, "stablecoins")
        (request,) = fake.requests_to("category")
        empty = fetch_category_markets(client, "bridged-tokens")
    assert request.path == "/api/v3/coins/markets"
    assert request.query["category"] == "stablecoins" and request.query["per_page"] == "250"
    assert request.query["vs_currency"] == "usd"
    assert response.endpoint == "category_stablecoins"
    members = set(load_fixture("categories/category_members_2022-10-16.json")["stablecoins"])
    real = {r["id"]: r for r in load_fixture(DEFAULT_MARKETS)}
    body = response.json()
    assert {r["id"] for r in body} == members
    assert all(r["current_price"] == real[r["id"]]["current_price"] for r in body)  # the recorded records
    assert empty.json() == []
