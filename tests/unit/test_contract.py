"""The response contract, as pure functions over parsed bodies (no HTTP)."""

from __future__ import annotations

import pytest

from pipeline.errors import SchemaDrift, SourceError
from pipeline.providers.coingecko.contract import (
    REQUIRED_MARKET_FIELDS,
    check_global,
    check_markets_page,
    check_markets_run,
    covers,
)
from tests.fakes.coingecko import DEFAULT_GLOBAL, DEFAULT_MARKETS, load_fixture

MARKETS_FIXTURES = [
    DEFAULT_MARKETS,
    "markets/markets_250_sparkline_pct1h-1y_2024-12-19_mrmendoza-dev-cryptotracker.json",
    "markets/markets_10_2020-07-04_rudijs-coin-bot.json",
    "markets/madjin-daily-crypto/prices_2026-04-30_022921Z_bf726667de.json",
]


@pytest.fixture(scope="module")
def records():
    return load_fixture(DEFAULT_MARKETS)


def drift(call, *args, **kwargs) -> str:
    with pytest.raises(SchemaDrift) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, SourceError) and info.value.exit_code == 3
    return message


# ---- one page --------------------------------------------------------------------------


@pytest.mark.parametrize("name", MARKETS_FIXTURES)
def test_every_recorded_page_meets_the_contract(name):
    body = load_fixture(name)
    assert check_markets_page(body, page=1) is body


@pytest.mark.parametrize(
    "body, words",
    [
        ({"coins": []}, ["array", "object"]),
        ({"status": {"error_code": 429}}, ["array", "object"]),
        ("bitcoin", ["array", "string"]),
        (None, ["array", "null"]),
        (42, ["array", "number"]),
    ],
)
def test_a_page_that_is_not_an_array_is_drift(body, words):
    message = drift(check_markets_page, body, page=1)
    assert "/coins/markets page 1" in message
    for word in words:
        assert word in message


def test_empty_first_page_is_drift_but_an_empty_later_page_ends_the_list():
    assert "empty" in drift(check_markets_page, [], page=1)
    assert check_markets_page([], page=3) == []


@pytest.mark.parametrize(
    "body, kind",
    [
        (["bitcoin", "ethereum", "tether"], "string"),
        ([[1, 2], [3, 4]], "array"),
        ([1, 2, None], "number"),
    ],
)
def test_an_array_of_non_objects_is_drift(body, kind):
    message = drift(check_markets_page, body, page=1)
    assert "objects" in message and kind in message


def test_a_few_non_objects_among_records_are_silver_s_to_quarantine(records):
    body = records[:10] + ["junk", None]
    assert check_markets_page(body, page=1) is body


@pytest.mark.parametrize("field", REQUIRED_MARKET_FIELDS)
def test_a_renamed_required_field_is_drift_naming_both_names(records, field):
    body = [{(f"{field}_v2" if k == field else k): v for k, v in r.items()} for r in records]
    message = drift(check_markets_page, body, page=2)
    assert f"required field(s) {field} missing" in message
    assert f"{field}_v2" in message and "renamed" in message and "page 2" in message


def test_several_missing_fields_are_all_named(records):
    body = [{k: v for k, v in r.items() if k not in ("current_price", "market_cap")} for r in records]
    message = drift(check_markets_page, body, page=1)
    assert "current_price, market_cap" in message and "no unknown field" in message


def test_a_dropped_field_without_a_replacement_is_drift(records):
    body = [{k: v for k, v in r.items() if k != "last_updated"} for r in records]
    assert "last_updated" in drift(check_markets_page, body, page=1)


def test_null_values_are_not_drift(records):
    body = [{**r, "current_price": None, "market_cap": None, "market_cap_rank": None} for r in records]
    assert check_markets_page(body, page=1) is body


def test_a_key_missing_from_up_to_half_the_records_is_not_drift(records):
    body = [dict(r) for r in records[:10]]
    for record in body[:5]:
        del record["id"]
    assert check_markets_page(body, page=1) is body  # 5 of 10: individual bad records
    del body[5]["id"]
    assert "id" in drift(check_markets_page, body, page=1)  # 6 of 10: the shape changed


def test_one_malformed_record_is_not_drift(records):
    body = [dict(r) for r in records]
    del body[0]["id"]
    body[1]["current_price"] = -1
    body[2]["total_volume"] = "n/a"
    assert check_markets_page(body, page=1) is body


def test_new_documented_or_unknown_extra_fields_are_fine(records):
    body = [{**r, "price_change_percentage_14d_in_currency": 1.0, "brand_new_field": 1} for r in records]
    assert check_markets_page(body, page=1) is body


# ---- the whole run ---------------------------------------------------------------------------


def test_a_full_run_passes(records):
    assert check_markets_run([records], top_n=250, listable=None) == 250
    assert check_markets_run([records[:100], records[100:200], records[200:]], top_n=250, listable=None) == 250


@pytest.mark.parametrize(
    "got, top_n, listable, ok",
    [
        (1, 250, None, False),
        (224, 250, None, False),
        (225, 250, None, True),  # 90 % of 250
        (150, 250, 150, True),  # the API lists only 150
        (3, 250, 3, True),
        (100, 250, 150, False),  # listed 150, got 100
        (200, 1000, None, False),
    ],
)
def test_coverage_of_min_top_n_and_what_the_api_lists(records, got, top_n, listable, ok):
    pages = [records[:got]]
    if ok:
        assert check_markets_run(pages, top_n=top_n, listable=listable) == got
    else:
        expected = top_n if listable is None else min(top_n, listable)
        assert f"partial response: got {got} of {expected} coins" in drift(
            check_markets_run, pages, top_n=top_n, listable=listable
        )


def test_duplicates_and_id_less_records_do_not_count_as_coins(records):
    pages = [[records[0]] * 250]
    assert "got 1 of 250 coins (250 records, 1 distinct usable ids" in drift(
        check_markets_run, pages, top_n=250, listable=None
    )
    no_ids = [{**r, "id": None} for r in records]
    assert "got 0 of 250" in drift(check_markets_run, [no_ids], top_n=250, listable=None)


def test_duplicates_across_pages_are_fine_when_the_coins_are_all_there(records):
    pages = [records[:100], records[98:200], records[198:]]
    assert check_markets_run(pages, top_n=250, listable=None) == 250


def test_the_threshold_is_a_parameter(records):
    assert check_markets_run([records[:125]], top_n=250, listable=None, min_coverage=0.5) == 125
    assert "got 124 of 250" in drift(check_markets_run, [records[:124]], top_n=250, listable=None, min_coverage=0.5)
    assert check_markets_run([records[:250]], top_n=250, listable=None, min_coverage=1.0) == 250
    assert covers([records[:1]], 250, 0.0)


# ---- /global -----------------------------------------------------------------------------------


def test_the_recorded_global_meets_the_contract():
    body = load_fixture(DEFAULT_GLOBAL)
    assert check_global(body) is body["data"]


@pytest.mark.parametrize(
    "body, words",
    [
        ([{"data": {}}], ["object", "array"]),
        ({"no": "data"}, ["'data'", "no"]),
        ({"data": "soon"}, ["'data'"]),
        ({"data": {"active_cryptocurrencies": 1}}, ["total_market_cap", "market_cap_percentage"]),
    ],
)
def test_a_global_of_the_wrong_shape_is_drift(body, words):
    message = drift(check_global, body)
    assert message.startswith("/global")
    for word in words:
        assert word in message


def test_a_renamed_global_object_is_named():
    body = load_fixture(DEFAULT_GLOBAL)
    data = body["data"]
    data["total_mcap"] = data.pop("total_market_cap")
    message = drift(check_global, body)
    assert "total_market_cap" in message and "total_mcap" in message and "market_cap_percentage" not in message
