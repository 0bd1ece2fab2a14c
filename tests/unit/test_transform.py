"""Silver transform: raw /coins/markets records in, typed rows and quarantined records out."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pipeline.categories import UNKNOWN
from pipeline.errors import SchemaDrift
from pipeline.schema import DERIVED_COLUMNS, MARKET_NUMERIC_COLUMNS
from pipeline.silver.transform import (
    ID_MAX_LENGTH,
    NUMERIC_LIMITS,
    REQUIRED_NUMERIC,
    SILVER_COLUMNS,
    Snapshot,
    frame_to_tuples,
    global_dominance_rows,
    global_usability,
    limit_records,
    transform_global,
    transform_markets,
    transform_snapshots,
)
from tests.fakes.coingecko import DEFAULT_GLOBAL, DEFAULT_MARKETS, load_fixture

SNAP = datetime(2024, 1, 2, 3, 4, 5)
SNAP2 = datetime(2024, 1, 2, 3, 19, 5)
RUN = "run-0001"


def coin(coin_id="bitcoin", **fields):
    """A small but complete record, shaped like the API's."""
    rec = {
        "id": coin_id,
        "symbol": str(coin_id)[:3],
        "name": str(coin_id).title(),
        "image": f"https://img/{coin_id}.png",
        "current_price": 100.0,
        "market_cap": 20e9,
        "market_cap_rank": 1,
        "fully_diluted_valuation": 21e9,
        "total_volume": 3e9,
        "high_24h": 110.0,
        "low_24h": 90.0,
        "price_change_24h": 2.0,
        "price_change_percentage_24h": 2.0,
        "market_cap_change_24h": 1e8,
        "market_cap_change_percentage_24h": 0.5,
        "circulating_supply": 2e8,
        "total_supply": 2.1e8,
        "max_supply": None,
        "ath": 200.0,
        "ath_change_percentage": -50.0,
        "ath_date": "2021-11-10T14:24:11.849Z",
        "atl": 1.0,
        "atl_change_percentage": 9900.0,
        "atl_date": "2013-07-06T00:00:00.000Z",
        "last_updated": "2024-01-02T03:00:00.000Z",
        "sparkline_in_7d": {"price": [99.0, 100.5, 101.0]},
    }
    rec.update(fields)
    return rec


def run(records, **kw):
    return transform_markets(records, run_id=RUN, snapshot_at=SNAP, source="api", **kw)


def row(batch, coin_id):
    rows = batch.rows[batch.rows["id"] == coin_id]
    assert len(rows) == 1, f"{coin_id}: {len(rows)} rows"
    return rows.iloc[0]


def quarantined(batch, coin_id=None, index=None):
    found = [
        q
        for q in batch.quarantined
        if (coin_id is None or q.record_id == coin_id) and (index is None or q.record_index == index)
    ]
    assert len(found) == 1, [vars(q) for q in batch.quarantined]
    return found[0]


# ---- shape -----------------------------------------------------------------------


def test_columns_and_types_on_a_clean_record():
    batch = run([coin()])
    assert list(batch.rows.columns) == SILVER_COLUMNS
    r = row(batch, "bitcoin")
    assert r["run_id"] == RUN and r["source"] == "api"
    assert r["snapshot_at"] == pd.Timestamp(SNAP)
    assert r["last_updated"] == pd.Timestamp("2024-01-02 03:00:00")  # UTC, tz-naive
    assert r["ath_date"] == pd.Timestamp("2021-11-10 14:24:11.849")
    assert r["market_cap_rank"] == 1
    assert r["market_cap_category"] == "large_cap"
    assert r["liquidity_category"] == "high_liquidity"  # 3e9 / 20e9 = 0.15
    assert r["price_trend_category"] == "moderate_gain"  # +2 %
    assert batch.quarantined == [] and batch.duplicates_dropped == 0


def test_empty_input_gives_empty_frame_with_all_columns():
    batch = run([])
    assert list(batch.rows.columns) == SILVER_COLUMNS
    assert len(batch.rows) == 0 and batch.quarantined == [] and batch.sparklines == []


# ---- NULL stays NULL -------------------------------------------------------------


def test_null_market_cap_stays_null_everywhere():
    batch = run([coin("a", market_cap=None), coin("b")])
    r = row(batch, "a")
    assert pd.isna(r["market_cap"])
    assert pd.isna(r["volume_to_mcap_ratio"])
    assert r["market_cap_category"] == UNKNOWN
    assert r["liquidity_category"] == UNKNOWN
    assert r["current_price"] == 100.0  # the rest of the record is kept
    assert batch.quarantined == []  # NULL is not a reason to quarantine
    tuples = frame_to_tuples(batch.rows, ["id", "market_cap", "volume_to_mcap_ratio"])
    assert ("a", None, None) in tuples  # never 0
    assert row(batch, "b")["market_cap"] == 20e9


def test_missing_keys_are_null_not_zero():
    batch = run([{"id": "bare"}])
    r = row(batch, "bare")
    for name in (
        "current_price",
        "market_cap",
        "total_volume",
        "high_24h",
        "low_24h",
        "ath",
        *DERIVED_COLUMNS,  # every derived column, a new one too
    ):
        assert pd.isna(r[name]), name
    assert {"price_volatility_24h", "volume_to_mcap_ratio", "distance_from_ath_pct"} <= set(DERIVED_COLUMNS)
    assert pd.isna(r["market_cap_rank"]) and pd.isna(r["last_updated"])
    assert (r["market_cap_category"], r["liquidity_category"], r["price_trend_category"]) == (UNKNOWN,) * 3


def test_null_24h_change_falls_back_to_in_currency_key():
    batch = run(
        [
            coin("a", price_change_percentage_24h=None, price_change_percentage_24h_in_currency=-7.0),
            coin("b", price_change_percentage_24h=None),
        ]
    )
    assert row(batch, "a")["price_change_percentage_24h"] == -7.0
    assert row(batch, "a")["price_trend_category"] == "strong_loss"
    assert pd.isna(row(batch, "b")["price_change_percentage_24h"])
    assert row(batch, "b")["price_trend_category"] == UNKNOWN


def test_period_keys_are_renamed():
    batch = run(
        [
            coin(
                price_change_percentage_1h_in_currency=0.1,
                price_change_percentage_7d_in_currency=-3.5,
                price_change_percentage_30d_in_currency=12.0,
            )
        ]
    )
    r = row(batch, "bitcoin")
    assert (r["price_change_percentage_1h"], r["price_change_percentage_7d"], r["price_change_percentage_30d"]) == (
        0.1,
        -3.5,
        12.0,
    )


# ---- numbers sent as strings -------------------------------------------------------


def test_numbers_as_strings_are_floats():
    batch = run(
        [coin(current_price="19163.45", market_cap="367648505760", total_volume="1.2521020239e10", market_cap_rank="1")]
    )
    r = row(batch, "bitcoin")
    assert r["current_price"] == pytest.approx(19163.45)
    assert r["market_cap"] == 367648505760.0
    assert r["total_volume"] == 12521020239.0
    assert batch.rows["current_price"].dtype == np.float64
    assert r["volume_to_mcap_ratio"] == pytest.approx(12521020239 / 367648505760)
    assert batch.quarantined == []


# ---- quarantine --------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("current_price", "n/a", ["non-numeric", "current_price", "n/a"]),
        ("market_cap", True, ["non-numeric", "market_cap", "True"]),
        ("total_volume", False, ["non-numeric", "total_volume"]),
        ("high_24h", [1, 2], ["non-numeric", "high_24h"]),
        ("ath", {"usd": 1}, ["non-numeric", "ath"]),
        ("market_cap_rank", "first", ["market_cap_rank", "first"]),
        ("current_price", -1.0, ["negative", "current_price"]),
        ("total_volume", -5, ["negative", "total_volume"]),
        ("market_cap", -0.5, ["negative", "market_cap"]),
        ("market_cap", 1e20, ["absurd", "market_cap"]),
        ("current_price", 5e9, ["absurd", "current_price"]),
        ("total_volume", 1e15, ["absurd", "total_volume"]),
        ("current_price", 1e308, ["absurd", "current_price"]),
        ("market_cap", "1e400", ["absurd", "market_cap"]),  # text beyond float range is absurd, not inf
        ("total_volume", 10**400, ["absurd", "total_volume"]),  # a JSON integer too big for a float
        ("price_change_percentage_1h_in_currency", "n/a", ["non-numeric", "price_change_percentage_1h"]),
    ],
)
def test_bad_value_is_quarantined_naming_the_field(field, value, words):
    bad = coin("bad", **{field: value})
    batch = run([coin("good1"), bad, coin("good2")])
    q = quarantined(batch, "bad")
    for word in words:
        assert word in q.reason, (word, q.reason)
    assert q.record_index == 1
    assert q.run_id == RUN and q.snapshot_at == SNAP
    assert json.loads(q.raw_record) == bad
    assert sorted(batch.rows["id"]) == ["good1", "good2"]


@pytest.mark.parametrize("record", [{"name": "no id"}, coin(""), coin("   "), coin(None), {"id": 42}])
def test_missing_or_empty_id_is_quarantined(record):
    batch = run([coin("good"), record])
    q = quarantined(batch, index=1)
    assert "id" in q.reason and "missing" in q.reason
    assert json.loads(q.raw_record) == record
    assert batch.rows["id"].tolist() == ["good"]


@pytest.mark.parametrize("record", [5, "bitcoin", None, ["bitcoin"]])
def test_non_object_record_is_quarantined(record):
    batch = run([coin("a"), record, coin("b")])
    q = quarantined(batch, index=1)
    assert q.record_id is None
    assert "not a JSON object" in q.reason
    assert json.loads(q.raw_record) == record
    assert (q.run_id, q.snapshot_at) == (RUN, SNAP)
    assert batch.rows["id"].tolist() == ["a", "b"]


def test_several_reasons_are_joined():
    batch = run([coin("x", current_price=-1.0, total_volume="n/a", market_cap=1e20)])
    q = quarantined(batch, "x")
    parts = q.reason.split("; ")
    assert len(parts) == 3
    assert any("negative current_price" in p for p in parts)
    assert any("non-numeric total_volume" in p for p in parts)
    assert any("absurd market_cap" in p for p in parts)
    assert batch.rows.empty


def test_infinite_and_nan_values_are_null_not_quarantined():
    batch = run([coin("inf", current_price=float("inf")), coin("nan", current_price=float("nan"))])
    assert batch.quarantined == []
    assert pd.isna(row(batch, "inf")["current_price"]) and pd.isna(row(batch, "nan")["current_price"])
    assert {(n.record_id, n.field) for n in batch.nulled} == {("inf", "current_price"), ("nan", "current_price")}


def test_limits_are_inclusive_of_real_values():
    """Just under each absurd limit is still a real row (largest real caps are ~1e12)."""
    batch = run([coin("big", market_cap=1e14, current_price=1e9, total_volume=1e14, price_change_percentage_24h=1e6)])
    assert batch.quarantined == []
    assert row(batch, "big")["market_cap"] == 1e14


def test_quarantine_sorted_by_position_and_records_index_within_snapshot():
    batch = run(["x", coin("a"), coin("b", current_price="n/a"), coin("", market_cap=1)])
    assert [q.record_index for q in batch.quarantined] == [0, 2, 3]


# ---- non-finite numbers: one rule for every numeric field ------------------------

#: silver column -> the API key a test writes to.
API_KEY = {
    "price_change_percentage_1h": "price_change_percentage_1h_in_currency",
    "price_change_percentage_7d": "price_change_percentage_7d_in_currency",
    "price_change_percentage_30d": "price_change_percentage_30d_in_currency",
}
NUMERIC_FIELDS = ["market_cap_rank", *MARKET_NUMERIC_COLUMNS]
OPTIONAL_FIELDS = [f for f in NUMERIC_FIELDS if f not in REQUIRED_NUMERIC]
NON_FINITE = [
    float("nan"),
    float("inf"),
    float("-inf"),
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "-Infinity",
    "+Infinity",
    " NaN ",
    "INF",
    "-infinity",
]


def numeric_frame_is_finite_or_null(frame: pd.DataFrame) -> bool:
    numbers = frame.select_dtypes("number").to_numpy(dtype="float64", na_value=np.nan)
    return not np.isinf(numbers).any()


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_every_spelling_of_a_non_finite_number_becomes_null_and_the_record_is_kept(value):
    batch = run([coin("a", high_24h=value), coin("b")])
    assert batch.quarantined == []
    assert pd.isna(row(batch, "a")["high_24h"]) and pd.isna(row(batch, "a")["price_volatility_24h"])
    assert [(n.record_id, n.field, n.record_index) for n in batch.nulled] == [("a", "high_24h", 0)]
    assert "non-finite" in batch.nulled[0].reason
    assert batch.nulled_values == 1
    assert numeric_frame_is_finite_or_null(batch.rows)


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
@pytest.mark.parametrize("value", [float("inf"), "-Infinity", float("nan")], ids=repr)
def test_a_non_finite_number_becomes_null_in_any_field(field, value):
    batch = run([coin("a", **{API_KEY.get(field, field): value}), coin("b")])
    assert batch.quarantined == []
    assert pd.isna(row(batch, "a")[field])
    assert [(n.record_id, n.field) for n in batch.nulled] == [("a", field)]
    assert ("a", None) in frame_to_tuples(batch.rows, ["id", field])
    assert numeric_frame_is_finite_or_null(batch.rows)


def test_nan_and_infinity_tokens_in_json_text_are_null():
    records = json.loads(
        '[{"id": "x", "current_price": NaN, "high_24h": Infinity, "low_24h": -Infinity, '
        '"market_cap": 5e9, "ath_change_percentage": "-Infinity", "market_cap_rank": NaN}]'
    )
    batch = run(records)
    r = row(batch, "x")
    for name in (
        "current_price",
        "high_24h",
        "low_24h",
        "ath_change_percentage",
        "market_cap_rank",
        "price_volatility_24h",
        "distance_from_ath_pct",
    ):
        assert pd.isna(r[name]), name
    assert r["market_cap"] == 5e9
    assert batch.nulled_values == 5 and batch.quarantined == []


def test_plain_nulls_are_not_counted_as_nulled():
    batch = run([coin("a", max_supply=None, high_24h=None), {"id": "bare"}])
    assert batch.nulled == [] and batch.nulled_values == 0


# ---- plausibility bounds ----------------------------------------------------------


def test_every_numeric_field_has_one_bound_in_the_limits_table():
    assert set(NUMERIC_LIMITS) == set(NUMERIC_FIELDS)
    for field, (low, high) in NUMERIC_LIMITS.items():
        assert low < high and math.isfinite(low) and math.isfinite(high), field
    prices = ["current_price", "high_24h", "low_24h", "ath", "atl"]
    assert len({NUMERIC_LIMITS[f][1] for f in prices}) == 1  # prices share one limit
    assert NUMERIC_LIMITS["circulating_supply"][1] == NUMERIC_LIMITS["max_supply"][1] >= 1e18
    assert set(REQUIRED_NUMERIC) == {"current_price", "market_cap", "total_volume"}


@pytest.mark.parametrize("field", REQUIRED_NUMERIC)
@pytest.mark.parametrize("value", [1e308, "1e400", 10**400, "1e300"], ids=repr)
def test_an_out_of_range_required_field_quarantines_the_record(field, value):
    batch = run([coin("good"), coin("bad", **{field: value})])
    q = quarantined(batch, "bad")
    assert f"absurd {field}" in q.reason
    assert len(q.reason) < 300
    assert batch.rows["id"].tolist() == ["good"]


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("magnitude", [1e308, "1e400", 10**400], ids=repr)
def test_an_out_of_range_optional_field_is_nulled_with_a_note(sign, magnitude):
    value = sign * magnitude if not isinstance(magnitude, str) else ("-" if sign < 0 else "") + magnitude
    batch = run([coin("a", **{API_KEY.get(f, f): value for f in OPTIONAL_FIELDS}), coin("b")])
    assert batch.quarantined == []
    r = row(batch, "a")
    for field in OPTIONAL_FIELDS:
        assert pd.isna(r[field]), field
    assert r["current_price"] == 100.0  # the rest of the record is kept
    assert sorted(n.field for n in batch.nulled) == sorted(OPTIONAL_FIELDS)
    assert all(n.record_id == "a" and "out of range" in n.reason and len(n.reason) < 300 for n in batch.nulled)
    assert numeric_frame_is_finite_or_null(batch.rows)


@pytest.mark.parametrize(
    "field, value",
    [
        ("high_24h", -5.0),
        ("low_24h", -0.01),
        ("ath", -1.0),
        ("atl", -1e-9),
        ("circulating_supply", -1.0),
        ("total_supply", -3),
        ("max_supply", -1),
        ("fully_diluted_valuation", -1e9),
        ("market_cap_rank", 0),
        ("market_cap_rank", -4),
        ("ath_change_percentage", -1e7),
        ("price_change_percentage_24h", 1e9),
        ("price_change_percentage_24h", -1e9),
        ("price_change_percentage_7d", 2e6),
        ("market_cap_change_percentage_24h", 1e7),
        ("price_change_24h", -2e9),
        ("market_cap_change_24h", 1e15),
    ],
)
def test_implausible_optional_values_are_nulled(field, value):
    batch = run([coin("a", **{API_KEY.get(field, field): value})])
    assert batch.quarantined == []
    assert pd.isna(row(batch, "a")[field])
    assert [n.field for n in batch.nulled] == [field]


def test_real_extremes_stay_within_the_bounds():
    batch = run(
        [
            coin(
                "a",
                current_price=7.8666533e-10,
                high_24h=1e9,
                low_24h=0.0,
                ath=1e9,
                atl=0.0,
                atl_change_percentage=4.468755445181525e38 / 1e27,
                circulating_supply=4.2e17,
                total_supply=1e18,
                max_supply=1e18,
                ath_change_percentage=-100.0,
                market_cap=1e14,
                total_volume=1e14,
                fully_diluted_valuation=1e15,
                market_cap_rank=20000,
                price_change_24h=-1e9,
                market_cap_change_24h=-1e14,
            )
        ]
    )
    assert batch.quarantined == [] and batch.nulled == []


def test_a_zero_atl_makes_its_change_percentage_unmeasurable():
    """CoinGecko sends ~1e38 % for a coin whose all-time low is 0: a division by zero, not a measurement."""
    batch = run([coin("a", atl=0, atl_change_percentage=4.468755445181525e38)])
    assert pd.isna(row(batch, "a")["atl_change_percentage"]) and batch.quarantined == []


@pytest.mark.parametrize(
    "fields, column",
    [
        ({"current_price": 5e-324, "high_24h": 1e9, "low_24h": 0.0}, "price_volatility_24h"),
        ({"current_price": 1e-300, "high_24h": 1e9, "low_24h": 1.0}, "price_volatility_24h"),
        ({"market_cap": 5e-324, "total_volume": 1e14}, "volume_to_mcap_ratio"),
        ({"ath": 5e-324, "current_price": 1e9, "ath_change_percentage": None}, "distance_from_ath_pct"),
        ({"ath": 1e-310, "current_price": 1e9, "ath_change_percentage": None}, "distance_from_ath_pct"),
    ],
)
def test_derived_columns_are_finite_or_null(fields, column):
    batch = run([coin("a", **fields)])
    assert pd.isna(row(batch, "a")[column])
    assert numeric_frame_is_finite_or_null(batch.rows)
    assert ("a", None) in frame_to_tuples(batch.rows, ["id", column])


def test_random_extremes_never_store_infinity_or_crash():
    rng = np.random.default_rng(12)
    pool = [
        0,
        -0.0,
        5e-324,
        1e-300,
        1e-9,
        1.0,
        1e9,
        1e14,
        1e18,
        1e300,
        -1e300,
        1.7976931348623157e308,
        float("inf"),
        float("nan"),
        "inf",
        "-Infinity",
        "1e400",
        10**400,
        None,
        -1.0,
    ]
    records = []
    for i in range(300):
        fields = {API_KEY.get(f, f): pool[rng.integers(len(pool))] for f in NUMERIC_FIELDS}
        records.append(coin(f"c{i}", **fields))
    batch = run(records)
    assert len(batch.rows) + len(batch.quarantined) == 300
    assert numeric_frame_is_finite_or_null(batch.rows)
    for t in frame_to_tuples(batch.rows, SILVER_COLUMNS):
        assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in t)
    for q in batch.quarantined:
        assert "absurd" in q.reason or "negative" in q.reason


# ---- text from the API ------------------------------------------------------------


@pytest.mark.parametrize(
    "coin_id, words",
    [
        ("bit\x00coin", ["NUL", "id"]),
        ("\x00", ["NUL", "id"]),
        ("x" * (ID_MAX_LENGTH + 1), ["id", "longer than"]),
        ("y" * 100_000, ["id", "longer than"]),
        ("\t \n", ["missing id"]),
        ("a\ud800b", ["id", "surrogate"]),
    ],
)
def test_an_unusable_id_quarantines_the_record(coin_id, words):
    bad = coin(coin_id)
    batch = run([coin("good"), bad])
    q = quarantined(batch, index=1)
    for word in words:
        assert word in q.reason, (word, q.reason)
    assert len(q.reason) < 300
    assert q.record_id is None or (len(q.record_id) <= ID_MAX_LENGTH and "\x00" not in q.record_id)
    assert "\x00" not in q.raw_record
    q.raw_record.encode("utf-8")  # storable as UTF-8 text
    assert json.loads(q.raw_record)["id"] == coin_id  # and the exact value is recoverable
    assert batch.rows["id"].tolist() == ["good"]


def test_an_id_of_the_maximum_length_is_kept():
    batch = run([coin("z" * ID_MAX_LENGTH)])
    assert batch.quarantined == [] and len(batch.rows) == 1


def test_long_record_id_is_cut_in_quarantine():
    batch = run([coin("q" * 5000, current_price=-1.0)])
    q = quarantined(batch, index=0)
    assert q.record_id is not None and len(q.record_id) <= ID_MAX_LENGTH and q.record_id.startswith("qqq")


@pytest.mark.parametrize("field", ["symbol", "name", "image"])
def test_nul_bytes_are_stripped_from_text_fields_and_the_record_kept(field):
    batch = run([coin("a", **{field: "Bit\x00co\x00in"})])
    assert batch.quarantined == []
    assert row(batch, "a")[field] == "Bitcoin"
    tuples = frame_to_tuples(batch.rows, ["symbol", "name", "image"])
    assert all("\x00" not in v for v in tuples[0])


@pytest.mark.parametrize("field", ["symbol", "name", "image"])
@pytest.mark.parametrize("value", [None, float("nan")], ids=repr)
def test_a_null_text_field_stays_null_never_the_text_none(field, value):
    batch = run([coin("a", **{field: value}), {"id": "bare"}])
    assert row(batch, "a")[field] is None and row(batch, "bare")[field] is None
    assert frame_to_tuples(batch.rows, [field]) == [(None,), (None,)]


def test_lone_surrogates_in_text_fields_become_replacement_characters():
    batch = run([coin("a", name="Bad \ud800 name", symbol="\udfff")])
    r = row(batch, "a")
    assert r["name"] == "Bad \ufffd name" and r["symbol"] == "\ufffd"
    r["name"].encode("utf-8")


def test_quarantined_record_with_nul_bytes_is_stored_as_json_text():
    bad = coin("bad", name="evil\x00name", current_price=-1.0)
    batch = run([bad])
    q = quarantined(batch, "bad")
    assert "\x00" not in q.raw_record and "\\u0000" in q.raw_record
    assert json.loads(q.raw_record) == bad


class Unserialisable:
    def __repr__(self):
        return "<Unserialisable \x00 thing>"

    def __str__(self):
        raise TypeError("no text for this one")


@pytest.mark.parametrize(
    "record",
    [
        {"id": "odd", ("tuple", "key"): 1, "current_price": -1.0},  # a key json cannot write
        {"id": "odd", "current_price": -1.0, "payload": Unserialisable()},
    ],
)
def test_a_record_json_cannot_write_is_quarantined_with_a_repr(record):
    batch = run([record, coin("good")])
    q = quarantined(batch, index=0)
    assert isinstance(q.raw_record, str) and q.raw_record
    assert "\x00" not in q.raw_record
    q.raw_record.encode("utf-8")
    assert "odd" in q.raw_record
    assert batch.rows["id"].tolist() == ["good"]


def test_a_self_referencing_non_object_record_is_still_quarantined():
    loop: list = []
    loop.append(loop)
    batch = run([loop, coin("good")])
    q = quarantined(batch, index=0)
    assert "not a JSON object" in q.reason and isinstance(q.raw_record, str) and q.raw_record


# ---- duplicates ----------------------------------------------------------------


def test_duplicates_keep_freshest_then_first_position():
    records = [
        coin("a", current_price=1.0, last_updated="2024-01-02T03:00:00.000Z"),
        coin("b", current_price=10.0, last_updated=None),
        coin("a", current_price=2.0, last_updated="2024-01-02T03:05:00.000Z"),  # freshest a
        coin("a", current_price=3.0, last_updated="2024-01-02T03:05:00.000Z"),  # same time, later position
        coin("b", current_price=11.0, last_updated="2024-01-02T03:01:00.000Z"),  # a date beats NULL
        coin("c", current_price=20.0, last_updated=None),
        coin("c", current_price=21.0, last_updated=None),  # both NULL: first wins
    ]
    batch = run(records)
    assert batch.duplicates_dropped == 4
    assert batch.rows["id"].tolist() == ["a", "b", "c"]  # unique
    assert row(batch, "a")["current_price"] == 2.0
    assert row(batch, "b")["current_price"] == 11.0
    assert row(batch, "c")["current_price"] == 20.0
    again = run(records)
    pd.testing.assert_frame_equal(batch.rows, again.rows)
    assert again.duplicates_dropped == 4
    reversed_batch = run(list(reversed(records)))
    assert row(reversed_batch, "a")["current_price"] == 3.0  # now first in position among the freshest
    assert row(reversed_batch, "c")["current_price"] == 21.0


def test_quarantined_duplicate_does_not_shadow_a_good_one():
    batch = run([coin("a", current_price="n/a", last_updated="2024-01-02T03:59:00.000Z"), coin("a", current_price=5.0)])
    assert row(batch, "a")["current_price"] == 5.0
    assert len(batch.quarantined) == 1 and batch.duplicates_dropped == 0


def test_dedupe_is_per_snapshot():
    snaps = [
        Snapshot("r1", SNAP, "api", [coin("a", current_price=1.0), coin("a", current_price=1.5)]),
        Snapshot("r2", SNAP2, "api", [coin("a", current_price=2.0), coin("b")]),
    ]
    batch = transform_snapshots(snaps)
    assert batch.duplicates_dropped == 1
    assert len(batch.rows) == 3
    a = batch.rows[batch.rows["id"] == "a"].sort_values("snapshot_at")
    assert a["current_price"].tolist() == [1.0, 2.0]
    assert a["run_id"].tolist() == ["r1", "r2"]
    assert a["snapshot_at"].tolist() == [pd.Timestamp(SNAP), pd.Timestamp(SNAP2)]


def test_quarantine_keeps_each_snapshots_identity():
    snaps = [
        Snapshot("r1", SNAP, "api", [coin("a"), coin("bad1", current_price=-1)]),
        Snapshot("r2", SNAP2, "sample", [7, coin("a")]),
    ]
    batch = transform_snapshots(snaps)
    got = [(q.run_id, q.snapshot_at, q.record_index) for q in batch.quarantined]
    assert got == [("r1", SNAP, 1), ("r2", SNAP2, 0)]
    assert batch.rows.groupby("run_id")["source"].first().to_dict() == {"r1": "api", "r2": "sample"}


# ---- derived columns -----------------------------------------------------------


def test_derived_columns():
    batch = run(
        [
            coin(
                current_price=50.0,
                high_24h=60.0,
                low_24h=45.0,
                total_volume=2e9,
                market_cap=8e9,
                ath=200.0,
                ath_change_percentage=None,
            )
        ]
    )  # the API's own figure absent: recomputed
    r = row(batch, "bitcoin")
    assert r["price_volatility_24h"] == pytest.approx((60 - 45) / 50 * 100)
    assert r["volume_to_mcap_ratio"] == pytest.approx(0.25)
    assert r["distance_from_ath_pct"] == pytest.approx((50 - 200) / 200 * 100)
    at_ath = row(run([coin(current_price=200.0, ath=200.0, ath_change_percentage=None)]), "bitcoin")
    assert at_ath["distance_from_ath_pct"] == 0.0


@pytest.mark.parametrize(
    "fields, column",
    [
        ({"current_price": 0.0}, "price_volatility_24h"),
        ({"market_cap": 0}, "volume_to_mcap_ratio"),
        ({"ath": 0, "ath_change_percentage": None}, "distance_from_ath_pct"),
        ({"high_24h": None}, "price_volatility_24h"),
        ({"low_24h": None}, "price_volatility_24h"),
        ({"total_volume": None}, "volume_to_mcap_ratio"),
        ({"ath": None, "ath_change_percentage": None}, "distance_from_ath_pct"),
    ],
)
def test_zero_or_null_denominator_gives_null_not_inf(fields, column):
    batch = run([coin(**fields)])
    value = row(batch, "bitcoin")[column]
    assert pd.isna(value)
    assert frame_to_tuples(batch.rows, [column]) == [(None,)]
    assert not np.isinf(batch.rows.select_dtypes("number").to_numpy(dtype="float64", na_value=np.nan)).any()


def test_zero_market_cap_is_a_real_value():
    r = row(run([coin(market_cap=0, total_volume=0)]), "bitcoin")
    assert r["market_cap"] == 0.0
    assert r["market_cap_category"] == "micro_cap"
    assert r["liquidity_category"] == UNKNOWN  # 0 / 0 is undefined


# ---- sparklines ------------------------------------------------------------------


def test_sparklines_only_when_asked():
    records = [
        coin("a"),
        coin("b", sparkline_in_7d=None),
        coin("c", sparkline_in_7d={"price": []}),
        coin("d", sparkline_in_7d={"price": [1, None, True, float("inf"), 2.5]}),
    ]
    with_spark = run(records)
    assert [s[0] for s in with_spark.sparklines] == ["a", "d"]
    a = with_spark.sparklines[0]
    assert a[1] == SNAP and a[2] == RUN and json.loads(a[3]) == [99.0, 100.5, 101.0]
    assert json.loads(with_spark.sparklines[1][3]) == [1, None, None, None, 2.5]
    assert run(records, with_sparklines=False).sparklines == []
    snap = Snapshot(RUN, SNAP, "api", records)
    assert transform_snapshots([snap]).sparklines == []  # off by default for the bulk path
    assert len(transform_snapshots([snap], with_sparklines=True).sparklines) == 2


def test_sparkline_follows_the_kept_duplicate():
    batch = run(
        [
            coin("a", last_updated="2024-01-02T03:00:00.000Z", sparkline_in_7d={"price": [1.0]}),
            coin("a", last_updated="2024-01-02T03:10:00.000Z", sparkline_in_7d={"price": [2.0]}),
        ]
    )
    assert [json.loads(s[3]) for s in batch.sparklines] == [[2.0]]


# ---- limit_records ---------------------------------------------------------------


def test_limit_records_top_n_distinct_ids():
    records = [coin("a"), coin("b"), {"name": "no id"}, coin("a"), coin("c"), coin("b"), 9, coin("d")]
    kept = limit_records(records, 2)
    ids = [r.get("id") if isinstance(r, dict) else r for r in kept]
    assert ids == ["a", "b", None, "a", "b", 9]  # c and d are beyond the top 2
    assert limit_records(records, None) is records
    assert [r["id"] for r in limit_records([coin("a"), coin("b")], 5)] == ["a", "b"]
    assert [r["id"] for r in limit_records([coin("a"), coin("b"), coin("c")], 1)] == ["a"]
    # id-less records and duplicates do not use up the top N
    kept = limit_records([{"name": "x"}, coin(""), coin("a"), coin("a"), coin("b"), coin("c")], 2)
    assert [r.get("id") for r in kept] == [None, "", "a", "a", "b"]


def test_limit_records_then_transform_on_real_fixture():
    records = load_fixture(DEFAULT_MARKETS)
    kept = limit_records(records, 100)
    assert len(kept) == 100 and [r["id"] for r in kept] == [r["id"] for r in records[:100]]


# ---- real fixture ------------------------------------------------------------------


def test_real_fixture_transforms_cleanly():
    records = load_fixture(DEFAULT_MARKETS)
    batch = run(records)
    assert len(batch.rows) == 250 and batch.quarantined == [] and batch.duplicates_dropped == 0
    assert batch.rows["id"].tolist() == [r["id"] for r in records]
    btc = row(batch, "bitcoin")
    assert btc["current_price"] == 19163.45
    assert btc["market_cap"] == 367648505760.0
    assert btc["market_cap_rank"] == 1
    assert btc["price_volatility_24h"] == pytest.approx((19194.78 - 19030.3) / 19163.45 * 100)
    assert btc["distance_from_ath_pct"] == next(r["ath_change_percentage"] for r in records if r["id"] == "bitcoin")
    assert btc["volume_to_mcap_ratio"] == pytest.approx(12521020239 / 367648505760)
    assert len(batch.sparklines) == 250
    # NULLs in the source stay NULL: max_supply is null for ~100 coins
    null_max = sum(1 for r in records if r["max_supply"] is None)
    assert null_max > 0 and batch.rows["max_supply"].isna().sum() == null_max


def test_real_fixture_with_injected_faults():
    records = load_fixture(DEFAULT_MARKETS)[:20]
    records[0]["current_price"] = -1.0
    records[1]["total_volume"] = "n/a"
    records[2]["market_cap"] = None
    records[3] = "garbage"
    records[4]["current_price"] = str(records[4]["current_price"])
    records.append(dict(records[5]))  # duplicate
    batch = run(records)
    assert [q.record_index for q in batch.quarantined] == [0, 1, 3]
    assert len(batch.rows) == 20 - 3 and batch.duplicates_dropped == 1
    assert row(batch, records[2]["id"])["market_cap_category"] == UNKNOWN
    assert isinstance(row(batch, records[4]["id"])["current_price"], float)


# ---- /global -----------------------------------------------------------------


def test_transform_global_on_real_fixture():
    body = load_fixture(DEFAULT_GLOBAL)
    out = transform_global(body, run_id=RUN, snapshot_at=SNAP, source="api", vs_currency="usd")
    assert out["total_market_cap"] == pytest.approx(956634610015.7574)
    assert out["total_volume"] == pytest.approx(35522912620.81553)
    assert out["btc_dominance_pct"] == pytest.approx(38.34194165669382)
    assert out["eth_dominance_pct"] == pytest.approx(16.221651460680793)
    assert out["market_cap_change_percentage_24h"] == pytest.approx(-0.29308620941148245)
    assert out["active_cryptocurrencies"] == 13204 and out["markets"] == 595
    assert out["updated_at"] == datetime(2022, 10, 16, 3, 59, 38)
    assert json.loads(out["market_cap_percentage"])["btc"] == pytest.approx(38.34194165669382)
    assert (out["run_id"], out["snapshot_at"], out["source"], out["vs_currency"]) == (RUN, SNAP, "api", "usd")
    eur = transform_global(body, run_id=RUN, snapshot_at=SNAP, source="api", vs_currency="eur")
    assert eur["total_market_cap"] == pytest.approx(body["data"]["total_market_cap"]["eur"])


@pytest.mark.parametrize(
    "body",
    [{}, {"data": {}}, {"data": {"total_market_cap": None}}, {"data": []}, [], None, {"status": {"error_code": 429}}],
)
def test_transform_global_schema_drift(body):
    with pytest.raises(SchemaDrift, match="total_market_cap"):
        transform_global(body, run_id=RUN, snapshot_at=SNAP, source="api", vs_currency="usd")


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 1e308, -1e308, "Infinity", 10**400])
def test_transform_global_keeps_every_number_finite_and_plausible(bad):
    body = {
        "data": {
            "total_market_cap": {"usd": bad},
            "total_volume": {"usd": bad},
            "market_cap_change_percentage_24h_usd": bad,
            "active_cryptocurrencies": bad,
            "markets": bad,
            "market_cap_percentage": {"btc": bad, "eth": 16.2},
            "updated_at": bad,
        }
    }
    out = transform_global(body, run_id=RUN, snapshot_at=SNAP, source="api", vs_currency="usd")
    for key in (
        "total_market_cap",
        "total_volume",
        "market_cap_change_percentage_24h",
        "active_cryptocurrencies",
        "markets",
        "btc_dominance_pct",
        "updated_at",
    ):
        assert out[key] is None, key
    assert out["eth_dominance_pct"] == 16.2
    assert "Infinity" not in out["market_cap_percentage"] and "NaN" not in out["market_cap_percentage"]


def test_transform_global_nulls_stay_null():
    body = {"data": {"total_market_cap": {"usd": None}, "market_cap_percentage": {"btc": "x"}}}
    out = transform_global(body, run_id=RUN, snapshot_at=SNAP, source="api", vs_currency="usd")
    assert out["total_market_cap"] is None and out["btc_dominance_pct"] is None
    assert out["eth_dominance_pct"] is None and out["total_volume"] is None and out["updated_at"] is None


def test_transform_global_is_usable_only_near_the_coins_time():
    body = load_fixture("global/global_2022-10-16_mrmendoza-dev-cryptotracker.json")  # updated 03:59:38
    coins_at = datetime(2022, 10, 16, 9, 28, 53)  # the sample's newest last_updated
    out = transform_global(
        body,
        run_id=RUN,
        snapshot_at=coins_at,
        source="sample",
        vs_currency="usd",
        coins_at=coins_at,
        fetched_at=coins_at,
    )
    assert (out["usable"], out["unusable_reason"]) == (False, "/global is 5.5 h older than the coins")
    assert out["fetched_at"] == coins_at and out["total_market_cap"] == pytest.approx(956634610015.7574)
    near = transform_global(
        body,
        run_id=RUN,
        snapshot_at=coins_at,
        source="api",
        vs_currency="usd",
        coins_at=datetime(2022, 10, 16, 4, 20),
        max_age_minutes=30,
    )
    assert (near["usable"], near["unusable_reason"]) == (True, None)
    allowed = transform_global(
        body, run_id=RUN, snapshot_at=coins_at, source="api", vs_currency="usd", coins_at=coins_at, max_age_minutes=360
    )
    assert allowed["usable"] is True
    newer = transform_global(
        body, run_id=RUN, snapshot_at=coins_at, source="api", vs_currency="usd", coins_at=datetime(2022, 10, 16, 3, 15)
    )
    assert newer["unusable_reason"] == "/global is 45 min newer than the coins"


def test_global_usability_reasons():
    now = datetime(2023, 1, 8, 16, 50)
    assert global_usability(now, now, 30) == (True, None)
    assert global_usability(None, now, 30) == (False, "/global has no update time, so its age is unknown")
    assert global_usability(now, now, 30, total_market_cap=None) == (False, "/global has no plausible total market cap")
    assert global_usability(now - timedelta(days=80), now, 30) == (False, "/global is 80 days older than the coins")


def test_global_dominance_rows_one_per_symbol():
    body = {
        "data": {
            "total_market_cap": {"usd": 8.8e11},
            "updated_at": 1669583597,
            "market_cap_percentage": {"btc": 36.19, "ETH": 16.64, "usdt": None, "bad": float("inf"), "eth": 1.0},
        }
    }
    row = transform_global(body, run_id=RUN, snapshot_at=SNAP, source="api", vs_currency="usd")
    assert sorted(global_dominance_rows(row)) == [(SNAP, "btc", 36.19), (SNAP, "eth", 16.64)]  # first "eth" key kept
    assert global_dominance_rows({"snapshot_at": SNAP, "market_cap_percentage": "not json"}) == []


# ---- frame_to_tuples -----------------------------------------------------------


def test_frame_to_tuples_none_for_nan_nat_and_int_ranks():
    batch = run(
        [
            coin("a", market_cap_rank=1, market_cap=None, last_updated=None),
            coin("b", market_cap_rank=None),
            coin("c", market_cap_rank=3.0),
        ]
    )
    cols = ["id", "market_cap_rank", "market_cap", "last_updated", "snapshot_at", "market_cap_category"]
    tuples = frame_to_tuples(batch.rows, cols)
    assert tuples[0][:4] == ("a", 1, None, None)
    assert type(tuples[0][1]) is int
    assert tuples[1][1] is None
    assert tuples[2][1] == 3 and type(tuples[2][1]) is int
    assert type(tuples[1][2]) is float
    assert type(tuples[1][3]) is datetime and tuples[1][4] == SNAP and type(tuples[1][4]) is datetime
    assert tuples[0][5] == UNKNOWN
    for t in tuples:
        for v in t:
            assert not (isinstance(v, float) and math.isnan(v))
            assert v is not pd.NA and v is not pd.NaT


def test_frame_to_tuples_all_silver_columns_on_real_data():
    batch = run(load_fixture(DEFAULT_MARKETS))
    tuples = frame_to_tuples(batch.rows, SILVER_COLUMNS)
    assert len(tuples) == 250 and all(len(t) == len(SILVER_COLUMNS) for t in tuples)
    rank = SILVER_COLUMNS.index("market_cap_rank")
    assert [t[rank] for t in tuples[:3]] == [1, 2, 3] and all(type(t[rank]) in (int, type(None)) for t in tuples)
    allowed = (str, int, float, bool, datetime, type(None))  # bool: stale_record
    assert all(type(v) in allowed for t in tuples for v in t)


def test_frame_to_tuples_object_column_with_na():
    frame = pd.DataFrame(
        {"x": pd.Series(["a", None, np.nan, pd.NA], dtype=object), "n": pd.Series([1, None, 2, None], dtype="Int64")}
    )
    assert frame_to_tuples(frame, ["x", "n"]) == [("a", 1), (None, None), (None, 2), (None, None)]
    assert frame_to_tuples(frame, []) == []


# ---- data time: stale records and timestamps from the future (real bodies) -----------

REAL_MARKETS = "/work/shared/data/real/markets"


def _real(name):
    with open(f"{REAL_MARKETS}/{name}", "rb") as handle:
        return json.loads(handle.read())


def test_stale_records_are_flagged_on_a_real_body():
    from datetime import timedelta

    from pipeline.silver.data_time import data_time, last_updated_values, parse_time

    records = _real("markets_2025-11-02_jruz-watchlists.json")
    fetched = max(parse_time(r["last_updated"]) for r in records) + timedelta(seconds=20)
    snapshot = data_time(last_updated_values(records), fetched).at
    batch = transform_snapshots([Snapshot(RUN, snapshot, "api", records, fetched)], stale_after=timedelta(hours=6))
    rows = batch.rows.set_index("id")
    expected = {r["id"] for r in records if parse_time(r["last_updated"]) < snapshot - timedelta(hours=6)}
    assert expected, "the body holds records last updated hours before the others"
    assert set(rows.index[rows["stale_record"].astype(bool)]) == expected
    assert rows.loc["bitcoin", "stale_record"] == False  # noqa: E712 - numpy/pandas bool
    assert (rows["fetched_at"] == pd.Timestamp(fetched)).all()
    assert len(batch.rows) == len(records)  # flagged, never dropped
    # the threshold is passed in; None leaves the flag NULL; a record without last_updated is NULL
    loose = transform_snapshots([Snapshot(RUN, snapshot, "api", records, fetched)], stale_after=timedelta(days=2))
    assert not loose.rows["stale_record"].astype(bool).any()
    unknown = transform_snapshots([Snapshot(RUN, snapshot, "api", records, fetched)], stale_after=None)
    assert unknown.rows["stale_record"].isna().all()
    blank = transform_snapshots([Snapshot(RUN, snapshot, "api", [dict(records[0], last_updated=None)], fetched)])
    assert blank.rows["stale_record"].isna().all()


def test_stale_records_of_the_real_2022_body_are_the_week_old_ones():

    from pipeline.silver.data_time import data_time, last_updated_values, parse_time

    records = load_fixture(DEFAULT_MARKETS)
    snapshot = data_time(last_updated_values(records), datetime(2022, 10, 16, 9, 29)).at
    batch = transform_snapshots([Snapshot(RUN, snapshot, "sample", records, datetime(2022, 10, 16, 9, 29))])
    stale = batch.rows[batch.rows["stale_record"].astype(bool)]
    assert 0 < len(stale) < 20
    assert all(
        parse_time(r["last_updated"]) < datetime(2022, 10, 16, 3) for r in records if r["id"] in set(stale["id"])
    )


def test_a_duplicate_with_a_last_updated_from_the_future_never_wins():
    """Bitcoin's price became 1.0: a later page repeated 'bitcoin' with a stablecoin's numbers and a
    last_updated a day after the fetch; the record from the earlier page must stay."""
    from datetime import timedelta

    from pipeline.silver.data_time import parse_time

    records = _real("markets_2025-03-05_jpwnoise-Cripto-Brain.json")
    fetched = max(parse_time(r["last_updated"]) for r in records) + timedelta(seconds=30)
    bitcoin = next(r for r in records if r["id"] == "bitcoin")
    tether = next(r for r in records if r["id"] == "tether")
    impostor = dict(
        tether,
        id="bitcoin",
        symbol="btc",
        name="Bitcoin",
        last_updated=(fetched + timedelta(days=1)).isoformat(timespec="milliseconds") + "Z",
    )
    pages = records[:50] + records[50:] + [impostor]
    batch = transform_snapshots([Snapshot(RUN, fetched - timedelta(minutes=1), "api", pages, fetched)])
    assert row(batch, "bitcoin")["current_price"] == bitcoin["current_price"]
    assert row(batch, "bitcoin")["current_price"] != 1.0 and batch.duplicates_dropped == 1
    # a future timestamp ranks like a missing one: the earlier page wins even when its own is NULL
    nulled = [dict(r, last_updated=None) if r["id"] == "bitcoin" else r for r in records] + [impostor]
    batch = transform_snapshots([Snapshot(RUN, fetched, "api", nulled, fetched)])
    assert row(batch, "bitcoin")["current_price"] == bitcoin["current_price"]
    # within the skew a later last_updated is still the fresher record
    fresher = dict(
        bitcoin,
        current_price=bitcoin["current_price"] + 1,
        last_updated=(fetched + timedelta(minutes=2)).isoformat(timespec="milliseconds") + "Z",
    )
    batch = transform_snapshots([Snapshot(RUN, fetched, "api", records + [fresher], fetched)])
    assert row(batch, "bitcoin")["current_price"] == bitcoin["current_price"] + 1
