"""A snapshot's data time: the median last_updated, robust to NULLs, futures and stale records."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pipeline.silver.data_time import (
    BASIS_FETCHED,
    BASIS_LAST_UPDATED,
    data_time,
    last_updated_values,
    median_time,
    parse_time,
)

REAL = Path("/work/shared/data/real")
FETCH = datetime(2025, 5, 6, 9, 0, 0)


def iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds") + "Z"


def test_parse_time_keeps_microseconds_and_converts_offsets_to_utc():
    assert parse_time("2025-05-06T08:55:00.773Z") == datetime(2025, 5, 6, 8, 55, 0, 773000)
    assert parse_time("2025-05-06T10:55:00+02:00") == datetime(2025, 5, 6, 8, 55)
    for bad in (None, "", "yesterday", 1746521700, "1970-01-01T00:00:00Z", "2999-01-01T00:00:00Z"):
        assert parse_time(bad) is None


def test_median_of_odd_and_even_counts():
    a, b, c = datetime(2024, 1, 1, 0, 0), datetime(2024, 1, 1, 0, 10), datetime(2024, 1, 1, 1, 0)
    assert median_time([c, a, b]) == b
    assert median_time([a, b]) == datetime(2024, 1, 1, 0, 5)


def test_the_median_of_last_updated_is_the_data_time():
    values = [iso(FETCH - timedelta(minutes=m)) for m in (1, 2, 3, 4, 30)]
    found = data_time(values, FETCH)
    assert found.basis == BASIS_LAST_UPDATED
    assert found.at == FETCH - timedelta(minutes=3)
    assert found.used == 5


def test_future_values_are_ignored():
    values = [iso(FETCH - timedelta(minutes=m)) for m in (1, 2, 3)] + [iso(FETCH + timedelta(days=400))] * 2
    found = data_time(values, FETCH)
    assert found.at == FETCH - timedelta(minutes=2) and found.future == 2
    # within the skew a value is not from the future, but the data time never passes the fetch
    assert data_time([iso(FETCH + timedelta(minutes=4))] * 3, FETCH).at == FETCH


def test_nulls_absurd_and_ancient_values_are_ignored_and_few_values_fall_back_to_the_fetch_time():
    values = [None, "n/a", iso(datetime(2022, 10, 16)), iso(FETCH - timedelta(minutes=1)), None]
    found = data_time(values, FETCH)
    assert found.basis == BASIS_FETCHED and found.at == FETCH
    assert (found.used, found.missing, found.outside) == (1, 3, 1)
    assert data_time([], FETCH).at == FETCH


def test_a_recorded_body_served_again_takes_the_fetch_time():
    """The fake CoinGecko serves 2022 bodies: their last_updated says nothing about this fetch."""
    records = json.loads((REAL / "markets/markets_2023-01-08_JKorf-CoinGecko.Net.json").read_bytes())
    found = data_time(last_updated_values(records), FETCH)
    assert found.basis == BASIS_FETCHED and found.at == FETCH


def test_a_saved_body_without_fetch_time_is_centred_on_its_own_values():
    records = json.loads(
        (REAL / "markets/markets_250_sparkline_pct1h24h7d_2022-10-16_mrmendoza-dev-cryptotracker.json").read_bytes()
    )
    found = data_time(last_updated_values(records), None, not_after=datetime(2026, 1, 1))
    assert found.basis == BASIS_LAST_UPDATED
    assert datetime(2022, 10, 16, 9, 27) < found.at < datetime(2022, 10, 16, 9, 29)
    assert found.outside >= 1  # the records last updated days earlier (2022-10-10) are left out
    # nothing usable and no fetch time: unknown, not "now"
    assert data_time([None, "bad"], None, not_after=datetime(2026, 1, 1)).at is None


def test_without_fetch_time_values_after_the_clock_are_futures():
    now = datetime(2024, 1, 1)
    values = [iso(now - timedelta(hours=1))] * 3 + [iso(now + timedelta(days=3))] * 2
    found = data_time(values, None, not_after=now)
    assert found.at == now - timedelta(hours=1) and found.future == 2


@pytest.mark.parametrize(
    "name", ["markets_2025-03-05_jpwnoise-Cripto-Brain.json", "markets_2021-08-23_jonas-jonas-div-dash.json"]
)
def test_real_bodies_get_a_time_between_their_oldest_and_newest_record(name):
    records = json.loads((REAL / "markets" / name).read_bytes())
    times = sorted(parse_time(r["last_updated"]) for r in records)
    found = data_time(last_updated_values(records), times[-1] + timedelta(seconds=30))
    assert found.basis == BASIS_LAST_UPDATED and times[0] <= found.at <= times[-1]
