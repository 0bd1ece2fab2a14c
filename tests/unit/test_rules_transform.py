"""Silver's rules at their edges: /global's odd values, timestamps, NULL text, the absurd-value limits.

Each test names one rule of ``pipeline/silver/transform.py`` (its module docstring lists them) and
checks it on both sides of its boundary, so a changed comparison or limit fails a test
(``make mutation`` measures that).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest

from pipeline.silver.transform import (
    ABSURD_LIMITS,
    FDV_LIMIT,
    ID_MAX_LENGTH,
    MONEY_LIMIT,
    NUMERIC_LIMITS,
    PRICE_LIMIT,
    SHOWN_VALUE_CHARS,
    Snapshot,
    frame_to_tuples,
    global_dominance_rows,
    global_usability,
    limit_columns,
    limit_records,
    raw_record_text,
    records_table,
    stale_flags,
    transform_global,
    transform_markets,
    transform_snapshots,
)

SNAP = datetime(2024, 1, 2, 3, 4, 5)
RUN = "run-rules"
UPDATED = 1704164645  # 2024-01-02 03:04:05 UTC, the snapshot's time


def coin(coin_id="bitcoin", **fields):
    rec = {
        "id": coin_id,
        "symbol": "btc",
        "name": "Bitcoin",
        "image": "https://img/btc.png",
        "current_price": 100.0,
        "market_cap": 20e9,
        "total_volume": 3e9,
        "high_24h": 110.0,
        "low_24h": 90.0,
        "ath": 200.0,
        "last_updated": "2024-01-02T03:00:00.000Z",
    }
    rec.update(fields)
    return rec


def run(records, **kw):
    return transform_markets(records, run_id=RUN, snapshot_at=SNAP, source="api", **kw)


def only_row(batch):
    assert len(batch.rows) == 1, [q.reason for q in batch.quarantined]
    return batch.rows.iloc[0]


def notes(batch):
    return [(n.field, n.reason) for n in batch.nulled]


def global_row(data, **kw):
    body = {"data": {"total_market_cap": {"usd": 1e12}, "updated_at": UPDATED, **data}}
    return transform_global(body, run_id=RUN, snapshot_at=SNAP, source="api", vs_currency="usd", **kw)


# ---- /global: booleans, non-finite values, limits, a missing market_cap_percentage ----------------


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_in_global_is_no_number(value):
    out = global_row(
        {
            "total_market_cap": {"usd": value},
            "total_volume": {"usd": value},
            "market_cap_change_percentage_24h_usd": value,
            "active_cryptocurrencies": value,
            "markets": value,
            "market_cap_percentage": {"btc": value, "eth": 17.5},
            "updated_at": value,
        }
    )
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
    assert out["eth_dominance_pct"] == 17.5
    assert json.loads(out["market_cap_percentage"]) == {"btc": None, "eth": 17.5}
    assert (out["usable"], out["unusable_reason"]) == (False, "/global has no plausible total market cap")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "NaN", "-Infinity", "inf"], ids=repr)
def test_a_non_finite_global_value_is_null(value):
    out = global_row(
        {
            "total_volume": {"usd": value},
            "market_cap_change_percentage_24h_usd": value,
            "market_cap_percentage": {"btc": value},
        }
    )
    assert out["total_volume"] is None and out["market_cap_change_percentage_24h"] is None
    assert out["btc_dominance_pct"] is None and out["market_cap_percentage"] == '{"btc":null}'
    assert out["usable"] is True  # the total market cap and the update time are fine


@pytest.mark.parametrize(
    "data",
    [
        {},  # missing
        {"market_cap_percentage": None},
        {"market_cap_percentage": [38.3, 16.2]},  # not an object
        {"market_cap_percentage": "btc=38"},
    ],
    ids=["missing", "null", "list", "text"],
)
def test_a_missing_market_cap_percentage_gives_no_dominance(data):
    out = global_row(data)
    assert out["btc_dominance_pct"] is None and out["eth_dominance_pct"] is None
    assert out["market_cap_percentage"] == "{}"
    assert global_dominance_rows(out) == []
    assert out["total_market_cap"] == 1e12 and out["usable"] is True


def test_global_dominance_is_keyed_by_symbol_and_stored_as_sorted_compact_json():
    out = global_row({"market_cap_percentage": {"eth": 16.5, "btc": 38.25, "usdt": 4}})
    assert (out["btc_dominance_pct"], out["eth_dominance_pct"]) == (38.25, 16.5)
    assert out["market_cap_percentage"] == '{"btc":38.25,"eth":16.5,"usdt":4.0}'


@pytest.mark.parametrize(
    "key, value, kept",
    [
        ("total_market_cap", 1e6, True),
        ("total_market_cap", 999_999.0, False),  # a whole market below $1M is no measurement
        ("total_market_cap", 1e16, True),
        ("total_market_cap", 1.0001e16, False),
        ("total_volume", 0.0, True),
        ("total_volume", -1.0, False),
        ("total_volume", 1e16, True),
        ("total_volume", 1.0001e16, False),
        ("market_cap_change_percentage_24h", 1e6, True),
        ("market_cap_change_percentage_24h", -1e6, True),
        ("market_cap_change_percentage_24h", 1.0001e6, False),
        ("market_cap_change_percentage_24h", -1.0001e6, False),
        ("btc_dominance_pct", 0.0, True),
        ("btc_dominance_pct", 100.0, True),
        ("btc_dominance_pct", 100.01, False),
        ("btc_dominance_pct", -0.01, False),
    ],
)
def test_global_limits_are_inclusive(key, value, kept):
    data = {
        "total_market_cap": {"usd": value if key == "total_market_cap" else 1e12},
        "total_volume": {"usd": value if key == "total_volume" else 5e10},
        "market_cap_change_percentage_24h_usd": value if key == "market_cap_change_percentage_24h" else 0.5,
        "market_cap_percentage": {"btc": value if key == "btc_dominance_pct" else 40.0},
    }
    out = global_row(data)
    assert out[key] == (value if kept else None)


@pytest.mark.parametrize(
    "value, expected",
    [(0, 0), (13204, 13204), (13204.0, 13204), (1e9, 1_000_000_000), (1e9 + 1, None), (-1, None), ("13204", None)],
    ids=repr,
)
def test_global_counts_are_whole_numbers_within_limits(value, expected):
    out = global_row({"active_cryptocurrencies": value, "markets": value})
    assert out["active_cryptocurrencies"] == expected and out["markets"] == expected
    if expected is not None:
        assert type(out["markets"]) is int


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, datetime(1970, 1, 1)),
        (UPDATED, SNAP),
        (UPDATED + 0.5, SNAP + timedelta(milliseconds=500)),
        (4102444800, datetime(2100, 1, 1)),
        (4102444801, None),
        (-1, None),
        ("1704164645", None),  # text is not the documented epoch number
        (None, None),
    ],
    ids=repr,
)
def test_global_updated_at_is_a_naive_utc_time_from_epoch_seconds(value, expected):
    out = global_row({"updated_at": value})
    assert out["updated_at"] == expected


def test_global_without_update_time_is_unusable_and_says_why():
    out = global_row({"updated_at": None})
    assert (out["usable"], out["unusable_reason"]) == (False, "/global has no update time, so its age is unknown")


def test_global_age_is_judged_against_the_snapshot_when_the_coins_time_is_unknown():
    fresh = global_row({}, coins_at=None)
    assert (fresh["usable"], fresh["unusable_reason"]) == (True, None)
    old = transform_global(
        {"data": {"total_market_cap": {"usd": 1e12}, "updated_at": UPDATED}},
        run_id=RUN,
        snapshot_at=SNAP + timedelta(hours=2),
        source="api",
        vs_currency="usd",
    )
    assert (old["usable"], old["unusable_reason"]) == (False, "/global is 2.0 h older than the coins")
    assert (old["fetched_at"], old["run_id"], old["source"], old["vs_currency"]) == (None, RUN, "api", "usd")


@pytest.mark.parametrize(
    "age, expected",
    [
        (timedelta(minutes=30), (True, None)),  # the limit is inclusive
        (timedelta(minutes=30, seconds=1), (False, "/global is 30 min older than the coins")),
        (-timedelta(minutes=30), (True, None)),
        (-timedelta(minutes=31), (False, "/global is 31 min newer than the coins")),
        (timedelta(minutes=89), (False, "/global is 89 min older than the coins")),
        (timedelta(minutes=90), (False, "/global is 1.5 h older than the coins")),
        (timedelta(hours=47, minutes=54), (False, "/global is 47.9 h older than the coins")),
        (timedelta(hours=48), (False, "/global is 2 days older than the coins")),
        (timedelta(days=3, hours=13), (False, "/global is 4 days older than the coins")),
    ],
)
def test_global_usability_age_limit_and_wording(age, expected):
    assert global_usability(SNAP - age, SNAP, 30) == expected


def test_global_usability_without_the_coins_time_trusts_the_update_time():
    assert global_usability(SNAP, None, 30) == (True, None)
    assert global_usability(SNAP, SNAP, 30, total_market_cap=0.0) == (True, None)  # 0 is a value, None is not


def test_global_dominance_rows_normalise_symbols_and_skip_the_unusable():
    row = {
        "snapshot_at": SNAP,
        "market_cap_percentage": json.dumps(
            {" BTC ": 38.5, "eth": 16, "": 1.0, "   ": 2.0, "usdt": None, "x" * 300: 0.5, "doge": "1.2"}
        ),
    }
    rows = global_dominance_rows(row)
    assert rows == [(SNAP, "btc", 38.5), (SNAP, "eth", 16.0), (SNAP, "x" * 200, 0.5)]
    assert all(type(r[2]) is float for r in rows)
    assert global_dominance_rows({"snapshot_at": SNAP, "market_cap_percentage": None}) == []
    assert global_dominance_rows({"snapshot_at": SNAP, "market_cap_percentage": "[1, 2]"}) == []


# ---- timestamps: unparseable, non-UTC, out of range --------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-01-02T03:00:00.000Z", datetime(2024, 1, 2, 3, 0)),
        ("2024-01-02T05:30:00+02:30", datetime(2024, 1, 2, 3, 0)),  # converted to UTC, not cut
        ("2024-01-01T22:00:00-05:00", datetime(2024, 1, 2, 3, 0)),
        ("2024-01-02T03:00:00", datetime(2024, 1, 2, 3, 0)),  # no zone: UTC
        ("2024-01-02T03:00:00.123456Z", datetime(2024, 1, 2, 3, 0, 0, 123456)),
        ("1990-01-01T00:00:00Z", datetime(1990, 1, 1)),  # DATE_RANGE includes its start
        ("2099-12-31T23:59:59Z", datetime(2099, 12, 31, 23, 59, 59)),
    ],
)
def test_dates_become_naive_utc(text, expected):
    batch = run([coin(last_updated=text, ath_date=text, atl_date=text)])
    row = only_row(batch)
    for name in ("last_updated", "ath_date", "atl_date"):
        assert row[name] == pd.Timestamp(expected), name
    assert batch.nulled == []


@pytest.mark.parametrize(
    "value",
    ["yesterday", "", "2024-13-45T00:00:00Z", "1989-12-31T23:59:59Z", "2100-01-01T00:00:00Z", 1704164400, True],
    ids=repr,
)
def test_an_unusable_date_is_null_with_a_note_and_the_record_kept(value):
    batch = run([coin(last_updated=value)])
    row = only_row(batch)
    assert pd.isna(row["last_updated"]) and batch.quarantined == []
    assert notes(batch) == [("last_updated", f"not a date last_updated: {value!r}")]
    assert pd.isna(row["stale_record"])  # unknown age is not judged stale


def test_a_null_date_is_null_without_a_note():
    batch = run([coin(last_updated=None, ath_date=None)])
    assert pd.isna(only_row(batch)["last_updated"]) and batch.nulled == []


def test_dates_of_mixed_zones_in_one_column_are_each_converted():
    batch = run([coin("a", last_updated="2024-01-02T03:00:00Z"), coin("b", last_updated="2024-01-02T04:00:00+01:00")])
    assert batch.rows["last_updated"].tolist() == [pd.Timestamp(2024, 1, 2, 3), pd.Timestamp(2024, 1, 2, 3)]
    assert str(batch.rows["last_updated"].dtype) == "datetime64[us]"


# ---- stale records --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "age, stale",
    [(timedelta(hours=6), False), (timedelta(hours=6, seconds=1), True), (timedelta(0), False)],
)
def test_a_record_is_stale_only_beyond_the_threshold(age, stale):
    updated = pd.Series([pd.Timestamp(SNAP - age)])
    flags = stale_flags(updated, pd.Series([pd.Timestamp(SNAP)]), timedelta(hours=6))
    assert flags.tolist() == [stale] and str(flags.dtype) == "boolean"


def test_stale_flags_are_null_when_unknown():
    updated = pd.Series([pd.NaT, pd.Timestamp(SNAP)], dtype="datetime64[us]")
    at = pd.Series([pd.Timestamp(SNAP), pd.NaT], dtype="datetime64[us]")
    assert stale_flags(updated, at, timedelta(hours=6)).isna().all()
    assert stale_flags(updated.iloc[:0], at.iloc[:0], timedelta(hours=6)).empty


def test_stale_record_uses_the_default_six_hours():
    batch = transform_snapshots(
        [
            Snapshot(
                RUN,
                SNAP,
                "api",
                [
                    coin("old", last_updated="2024-01-01T21:04:04Z"),  # 6 h 1 s before the snapshot
                    coin("edge", last_updated="2024-01-01T21:04:05Z"),  # exactly 6 h
                ],
            )
        ]
    )
    assert dict(zip(batch.rows["id"], batch.rows["stale_record"])) == {"old": True, "edge": False}


# ---- NULL and non-text text fields ------------------------------------------------------------


@pytest.mark.parametrize("field", ["symbol", "name", "image"])
def test_a_missing_text_field_is_null_not_the_text_none(field):
    record = coin()
    del record[field]
    batch = run([record])
    assert only_row(batch)[field] is None and batch.nulled == []
    assert frame_to_tuples(batch.rows, [field]) == [(None,)]
    assert "None" not in frame_to_tuples(batch.rows, [field], datetime_text=True)[0]


@pytest.mark.parametrize("field", ["symbol", "name", "image"])
@pytest.mark.parametrize("value", [True, ["btc"], {"en": "Bitcoin"}, float("inf")], ids=repr)
def test_a_non_text_value_in_a_text_field_is_null_with_a_note(field, value):
    batch = run([coin(**{field: value})])
    assert only_row(batch)[field] is None and batch.quarantined == []
    assert notes(batch) == [(field, f"not text {field}: {value!r}")]


@pytest.mark.parametrize("value, text", [(42, "42"), (1.5, "1.5")])
def test_a_number_in_a_text_field_is_kept_as_its_text(value, text):
    batch = run([coin(symbol=value)])
    assert only_row(batch)["symbol"] == text and batch.nulled == []


# ---- absurd values: market cap, FDV, price, volume ----------------------------------------------


def test_the_absurd_limits_are_the_documented_ones():
    assert ABSURD_LIMITS == {
        "current_price": 1e9,
        "market_cap": 1e14,
        "fully_diluted_valuation": 1e15,
        "total_volume": 1e14,
    }
    assert NUMERIC_LIMITS["market_cap_rank"] == (1.0, 1e7)
    assert NUMERIC_LIMITS["atl_change_percentage"] == (-1e6, 1e12)


@pytest.mark.parametrize(
    "field, limit", [("market_cap", MONEY_LIMIT), ("total_volume", MONEY_LIMIT), ("current_price", PRICE_LIMIT)]
)
def test_a_required_field_at_its_limit_is_kept_and_beyond_it_quarantined(field, limit):
    kept = run([coin(**{field: limit})])
    assert only_row(kept)[field] == limit
    zero = run([coin(**{field: 0.0})])
    assert only_row(zero)[field] == 0.0
    over = run([coin(**{field: limit * 1.01})])
    assert over.rows.empty
    assert [q.reason for q in over.quarantined] == [f"absurd {field}: {limit * 1.01!r}"]
    negative = run([coin(**{field: -0.5})])
    assert [q.reason for q in negative.quarantined] == [f"negative {field}: -0.5"]
    assert negative.quarantined[0].record_id == "bitcoin" and negative.quarantined[0].record_index == 0


def test_an_overflowing_required_field_is_quarantined_quoting_the_value():
    batch = run([coin(market_cap="1e400")])
    assert [q.reason for q in batch.quarantined] == ["absurd market_cap: '1e400'"]


@pytest.mark.parametrize(
    "value, kept", [(FDV_LIMIT, True), (0.0, True), (FDV_LIMIT * 1.01, False), (-1.0, False), ("1e400", False)]
)
def test_fdv_beyond_its_limit_is_nulled_and_the_record_kept(value, kept):
    batch = run([coin(fully_diluted_valuation=value)])
    row = only_row(batch)
    if kept:
        assert row["fully_diluted_valuation"] == value and batch.nulled == []
    else:
        assert pd.isna(row["fully_diluted_valuation"])
        assert notes(batch) == [
            (
                "fully_diluted_valuation",
                f"out of range fully_diluted_valuation: {value!r} (plausible: 0 to 1e+15)",
            )
        ]


@pytest.mark.parametrize("rank, expected", [(1, 1), (1e7, 10_000_000), (2.6, 3), (0, None), (1e7 + 1, None)])
def test_market_cap_rank_is_a_whole_number_within_its_range(rank, expected):
    batch = run([coin(market_cap_rank=rank)])
    value = only_row(batch)["market_cap_rank"]
    assert pd.isna(value) if expected is None else value == expected
    assert str(batch.rows["market_cap_rank"].dtype) == "Int64"


def test_every_reason_of_a_record_is_listed_and_non_numeric_is_named():
    batch = run([coin(current_price="n/a", total_volume=-3.0, market_cap=True)])
    assert batch.quarantined[0].reason == (
        "non-numeric current_price: 'n/a'; non-numeric market_cap: True; negative total_volume: -3.0"
    )


@pytest.mark.parametrize("text, number", [(" 42.5 ", 42.5), ("+7", 7.0), ("1e3", 1000.0)])
def test_numbers_sent_as_text_are_read(text, number):
    assert only_row(run([coin(current_price=text)]))["current_price"] == number


@pytest.mark.parametrize("text", ["+inf", "-INFINITY", " nan ", "Infinity"])
def test_non_finite_text_in_a_required_field_is_null_not_quarantined(text):
    batch = run([coin(current_price=text)])
    assert pd.isna(only_row(batch)["current_price"])
    assert notes(batch) == [("current_price", f"non-finite current_price: {text!r}")]


def test_a_quoted_value_is_cut_to_a_sane_length():
    batch = run([coin(current_price="x" * 500)])
    reason = batch.quarantined[0].reason
    quoted = reason.removeprefix("non-numeric current_price: ")
    assert len(quoted) == SHOWN_VALUE_CHARS and quoted.endswith("…") and quoted.startswith("'xxx")


# ---- derived columns ------------------------------------------------------------------------


def test_derived_columns_and_their_limits():
    row = only_row(run([coin(current_price=100.0, high_24h=110.0, low_24h=90.0, ath=200.0)]))
    assert row["price_volatility_24h"] == pytest.approx(20.0)
    assert row["volume_to_mcap_ratio"] == pytest.approx(0.15)
    assert row["distance_from_ath_pct"] == pytest.approx(-50.0)  # recomputed: no ath_change_percentage
    assert (row["market_cap_category"], row["liquidity_category"]) == ("large_cap", "high_liquidity")
    from_api = only_row(run([coin(ath_change_percentage=-42.0)]))
    assert from_api["distance_from_ath_pct"] == -42.0  # CoinGecko's own figure wins
    tiny = only_row(run([coin(current_price=1e-6, high_24h=100.0, low_24h=0.0)]))
    assert pd.isna(tiny["price_volatility_24h"])  # 1e10 % is beyond DERIVED_LIMITS
    edge = only_row(run([coin(current_price=1.0, high_24h=10_001.0, low_24h=1.0)]))
    assert edge["price_volatility_24h"] == pytest.approx(1e6)  # the limit itself is kept
    heavy = only_row(run([coin(market_cap=1.0, total_volume=1e9)]))
    assert heavy["volume_to_mcap_ratio"] == 1e9
    heavier = only_row(run([coin(market_cap=1.0, total_volume=1.5e9)]))
    assert pd.isna(heavier["volume_to_mcap_ratio"])


# ---- ids, quarantine text, top-N -----------------------------------------------------------------


@pytest.mark.parametrize(
    "coin_id, reason",
    [
        (None, "missing id"),
        ("  ", "missing id"),
        ("bit\x00coin", "id contains a NUL byte"),
        ("x" * (ID_MAX_LENGTH + 1), f"id longer than {ID_MAX_LENGTH} characters: {ID_MAX_LENGTH + 1:,}"),
        ("x" * 1500, "id longer than 200 characters: 1,500"),
        ("bit\ud800coin", "id contains a lone surrogate (not UTF-8)"),
    ],
    ids=["none", "blank", "nul", "201", "1500", "surrogate"],
)
def test_an_unusable_id_names_its_problem(coin_id, reason):
    batch = run([coin(coin_id), coin("good")])
    assert [q.reason for q in batch.quarantined] == [reason]
    assert batch.rows["id"].tolist() == ["good"]


def test_an_id_is_stripped_of_surrounding_blanks():
    assert only_row(run([coin("  bitcoin ")]))["id"] == "bitcoin"


def test_the_quarantined_record_keeps_its_id_and_compact_json():
    batch = run([coin("bad", current_price=-1.0)])
    q = batch.quarantined[0]
    assert (q.run_id, q.snapshot_at, q.record_index, q.record_id) == (RUN, SNAP, 0, "bad")
    assert q.raw_record.startswith('{"id":"bad","symbol":"btc"')


def test_raw_record_text_escapes_what_a_database_cannot_store():
    assert raw_record_text({"a": [1, 2]}) == '{"a":[1,2]}'
    assert raw_record_text({"when": datetime(2024, 1, 2)}) == '{"when":"2024-01-02 00:00:00"}'
    assert raw_record_text({("k",): "v\x00"}) == "{('k',): 'v\\x00'}"
    assert raw_record_text({("k",): "\ud800"}) == "{('k',): '\\ud800'}"


def test_limit_records_keeps_the_first_distinct_coins_and_passes_the_rest_through():
    records = [coin("a"), coin("b"), coin("a"), {"id": None}, "junk", coin("c"), coin("d")]
    assert limit_records(records, None) is records
    assert limit_records(records, 2) == [coin("a"), coin("b"), coin("a"), {"id": None}, "junk"]
    assert limit_records(records, 3) == records[:6]
    assert limit_records(records, 0) == [{"id": None}, "junk"]


@pytest.mark.parametrize("top_n", [None, 0, 1, 2, 3, 4, 5, 6, 7, 50])
def test_limit_columns_keeps_what_limit_records_keeps(top_n):
    records = [coin("a"), coin("b"), coin("a"), {"id": None}, {"id": " "}, coin("c"), coin("d")]
    limited = limit_columns(records_table(records), top_n)
    assert limited is not None
    columns, kept = limited
    expected = limit_records(records, top_n)
    assert [records[i] for i in kept] == expected
    assert len(columns["id"]) == len(expected)


def test_a_page_within_top_n_is_kept_whole_whatever_its_ids():
    # ids the ranking cannot read (not text): a page of at most top_n records needs no ranking
    columns = {"id": [1, "a", None], "current_price": [1.0, 2.0, 3.0]}
    limited = limit_columns(columns, 3)
    assert limited is not None and limited[0] is columns and list(limited[1]) == [0, 1, 2]
    assert limit_columns(columns, 2) is None  # beyond top_n they must be ranked: the records' path


def test_duplicates_are_counted_and_the_fresher_one_kept():
    batch = run(
        [
            coin("a", current_price=1.0, last_updated="2024-01-02T02:00:00Z"),
            coin("a", current_price=2.0, last_updated="2024-01-02T03:00:00Z"),
            coin("a", current_price=3.0, last_updated=None),
        ]
    )
    assert only_row(batch)["current_price"] == 2.0 and batch.duplicates_dropped == 2


# ---- sparklines and tuples ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sparkline, encoded",
    [
        # points are floats always (2 is written 2.0), as a bronze Parquet copy holds them
        ({"price": [1.0, 2, None, True, "3", -1.0, 1e9, 1.0001e9]}, "[1.0,2.0,null,null,null,null,1000000000.0,null]"),
        ({"price": []}, None),
        ({"price": "1,2"}, None),
        ([1.0, 2.0], None),
        (None, None),
    ],
    ids=["mixed", "empty", "text", "list", "none"],
)
def test_sparkline_points_outside_the_price_range_are_null(sparkline, encoded):
    batch = run([coin(sparkline_in_7d=sparkline)])
    found = [s[3] for s in batch.sparklines]
    assert found == ([] if encoded is None else [encoded])
    if encoded is not None:
        assert batch.sparklines[0][:3] == ("bitcoin", SNAP, RUN)


def test_frame_to_tuples_writes_sqlite_datetime_text():
    batch = run([coin(last_updated="2024-01-02T03:00:00.5Z", ath_date=None)])
    assert frame_to_tuples(batch.rows, ["last_updated", "ath_date"], datetime_text=True) == [
        ("2024-01-02 03:00:00.500000", None)
    ]
    assert frame_to_tuples(batch.rows, ["last_updated"]) == [(datetime(2024, 1, 2, 3, 0, 0, 500000),)]
