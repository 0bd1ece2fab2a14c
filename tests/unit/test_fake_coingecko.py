"""The fake CoinGecko server behaves like the real API (and breaks the way we ask it to).

Everything goes over real HTTP with ``requests``, because that is how the
pipeline will talk to it.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.fakes.coingecko import (
    DEFAULT_MARKETS,
    ERROR_403,
    FIXTURES_DIR,
    REAL_429_PATH,
    FakeCoinGecko,
    load_fixture,
)

MARKETS = load_fixture(DEFAULT_MARKETS)
PCT_KEYS = {
    "price_change_percentage_1h_in_currency",
    "price_change_percentage_24h_in_currency",
    "price_change_percentage_7d_in_currency",
}


@pytest.fixture
def cg():
    with FakeCoinGecko() as fake:
        yield fake


def markets(cg, timeout=5, **params):
    query = {"vs_currency": "usd", "order": "market_cap_desc", **params}
    return requests.get(f"{cg.base_url}/coins/markets", params=query, timeout=timeout)


# ---- plain endpoints ----------------------------------------------------------


def test_base_url_is_loopback_with_api_prefix(cg):
    assert cg.base_url.startswith("http://127.0.0.1:")
    assert cg.base_url.endswith("/api/v3")
    assert cg._server.server_address[0] == "127.0.0.1"


def test_base_url_needs_start():
    with pytest.raises(RuntimeError):
        _ = FakeCoinGecko(markets=[]).base_url


def test_ping(cg):
    r = requests.get(f"{cg.base_url}/ping", timeout=5)
    assert r.status_code == 200
    assert r.json() == {"gecko_says": "(V3) To the Moon!"}


def test_json_content_type_and_compact_body(cg):
    r = markets(cg, per_page=2)
    assert r.headers["Content-Type"] == "application/json"
    assert b"\n" not in r.content and b", " not in r.content[:200]
    assert int(r.headers["Content-Length"]) == len(r.content)


def test_default_fixtures_are_the_2022_10_16_snapshot():
    assert len(MARKETS) == 250
    assert MARKETS[0]["id"] == "bitcoin"
    assert load_fixture("global/global_2022-10-16_mrmendoza-dev-cryptotracker.json")["data"]["markets"] == 595


def test_unknown_path_is_404(cg):
    assert requests.get(f"{cg.base_url}/nope", timeout=5).status_code == 404


# ---- /coins/markets -------------------------------------------------------------


def test_paging_slices_records_in_rank_order(cg):
    pages = [markets(cg, per_page=100, page=p).json() for p in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [100, 100, 50, 0]
    ids = [row["id"] for page in pages for row in page]
    assert ids == [row["id"] for row in MARKETS]


def test_per_page_defaults_to_100_and_caps_at_250(cg):
    assert len(markets(cg).json()) == 100
    assert len(markets(cg, per_page=1000).json()) == 250


def test_bad_paging_value_is_400(cg):
    assert markets(cg, per_page="lots").status_code == 400


def test_missing_vs_currency_is_400_with_json_error(cg):
    r = requests.get(f"{cg.base_url}/coins/markets", timeout=5)
    assert r.status_code == 400
    assert "vs_currency" in r.json()["error"]


def test_sparkline_is_dropped_unless_requested(cg):
    assert all("sparkline_in_7d" not in row for row in markets(cg, per_page=250).json())
    assert all("sparkline_in_7d" not in row for row in markets(cg, sparkline="false").json())
    rows = markets(cg, sparkline="true").json()
    assert all(len(row["sparkline_in_7d"]["price"]) > 0 for row in rows)


def test_only_requested_price_change_periods_are_returned(cg):
    assert not PCT_KEYS & set(markets(cg).json()[0])
    row = markets(cg, price_change_percentage="1h,24h").json()[0]
    assert {k for k in row if k.endswith("_in_currency")} == {
        "price_change_percentage_1h_in_currency",
        "price_change_percentage_24h_in_currency",
    }
    assert "price_change_percentage_24h" in row  # the plain 24h field always stays
    row = markets(cg, price_change_percentage="1h,24h,7d,30d").json()[0]
    assert {k for k in row if k.endswith("_in_currency")} == PCT_KEYS  # 30d: not in fixture


def test_full_request_matches_fixture_values(cg):
    rows = markets(cg, per_page=250, sparkline="true", price_change_percentage="1h,24h,7d").json()
    assert rows == MARKETS


def test_set_markets_replaces_records(cg):
    cg.set_markets(load_fixture("markets/markets_10_2020-07-04_rudijs-coin-bot.json"))
    rows = markets(cg).json()
    assert len(rows) == 10
    assert "fully_diluted_valuation" not in rows[0]  # 2020 field set


def test_configured_records_are_not_mutated_by_faults():
    records = load_fixture("markets/madjin-daily-crypto/prices_2026-04-30_022921Z_bf726667de.json")
    with FakeCoinGecko(markets=records) as fake:
        fake.add_fault("nulls")
        markets(fake)
    assert records[0]["market_cap"] is not None


# ---- /global and market_chart ------------------------------------------------------


def test_global_serves_body_and_500_when_unset(cg):
    r = requests.get(f"{cg.base_url}/global", timeout=5)
    assert r.status_code == 200
    assert r.json()["data"]["total_market_cap"]["usd"] > 0
    cg.set_global(None)
    assert requests.get(f"{cg.base_url}/global", timeout=5).status_code == 500


def test_market_chart_max_and_days_trim(cg):
    url = f"{cg.base_url}/coins/bitcoin/market_chart"
    full = requests.get(url, params={"vs_currency": "usd", "days": "max"}, timeout=5).json()
    assert len(full["prices"]) == 3500
    trimmed = requests.get(url, params={"vs_currency": "usd", "days": "30"}, timeout=5).json()
    assert 30 <= len(trimmed["prices"]) <= 32
    assert len(trimmed["market_caps"]) == len(trimmed["total_volumes"]) == len(trimmed["prices"])
    assert trimmed["prices"][-1] == full["prices"][-1]


def test_market_chart_unknown_coin_is_404(cg):
    r = requests.get(
        f"{cg.base_url}/coins/dogecoin/market_chart", params={"vs_currency": "usd", "days": "1"}, timeout=5
    )
    assert r.status_code == 404
    assert r.json() == {"error": "coin not found"}


def test_market_charts_argument():
    bnb = load_fixture("market_chart/market_chart_binancecoin_usd_91d_2020-07-04_rudijs-coin-bot.json")
    with FakeCoinGecko(market_charts={"binancecoin": bnb}) as fake:
        r = requests.get(
            f"{fake.base_url}/coins/binancecoin/market_chart", params={"vs_currency": "usd", "days": "91"}, timeout=5
        )
        assert r.json()["prices"] == bnb["prices"]


# ---- faults: HTTP errors ------------------------------------------------------


def test_429_has_retry_after_and_real_body_then_recovers(cg):
    cg.add_fault("429", retry_after=7)
    r = markets(cg)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "7"
    assert r.json()["status"]["error_code"] == 429
    if REAL_429_PATH.exists():
        assert r.content == REAL_429_PATH.read_bytes()
    assert markets(cg).status_code == 200
    assert cg.pending_faults == 0


def test_429_falls_back_to_same_shape_without_shared_data(cg, monkeypatch, tmp_path):
    import tests.fakes.coingecko as fake_module

    monkeypatch.setattr(fake_module, "REAL_429_PATH", tmp_path / "absent.json")
    cg.add_fault("429")
    body = markets(cg).json()
    assert body["status"]["error_code"] == 429
    assert body["status"]["error_message"].startswith("You've exceeded the Rate Limit.")


def test_429_default_retry_after_is_1(cg):
    cg.add_fault("429", endpoint="market_chart")
    r = requests.get(f"{cg.base_url}/coins/bitcoin/market_chart", params={"vs_currency": "usd", "days": "1"}, timeout=5)
    assert (r.status_code, r.headers["Retry-After"]) == (429, "1")


@pytest.mark.parametrize("kind,status", [("500", None), ("503", None), ("error", 502), ("500", 504)])
def test_server_errors(cg, kind, status):
    cg.add_fault(kind, endpoint="global", times=2, status=status)
    expected = status or int(kind)
    codes = [requests.get(f"{cg.base_url}/global", timeout=5).status_code for _ in range(3)]
    assert codes == [expected, expected, 200]


def test_403_is_the_real_body(cg):
    cg.add_fault("403")
    r = markets(cg)
    assert r.status_code == 403
    assert r.content == (FIXTURES_DIR / ERROR_403).read_bytes()
    assert r.json()["status"]["error_code"] == 403


def test_faults_are_queued_in_order_and_per_endpoint(cg):
    cg.add_fault("429")
    cg.add_fault("503")
    assert requests.get(f"{cg.base_url}/ping", timeout=5).status_code == 200  # other endpoint
    assert [markets(cg).status_code for _ in range(3)] == [429, 503, 200]


def test_fault_can_target_one_page(cg):
    cg.add_fault("500", page=2)
    assert markets(cg, page=1).status_code == 200
    assert markets(cg, page=3).status_code == 200
    assert markets(cg, page=2).status_code == 500
    assert markets(cg, page=2).status_code == 200


def test_bad_fault_arguments_are_rejected(cg):
    with pytest.raises(ValueError):
        cg.add_fault("explode")
    with pytest.raises(ValueError):
        cg.add_fault("nulls", endpoint="global")
    with pytest.raises(ValueError):
        cg.add_fault("error")


# ---- faults: transport ----------------------------------------------------------


def test_hang_outlasts_a_short_client_timeout(cg):
    cg.add_fault("hang", hang_seconds=1.5)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        markets(cg, timeout=0.5)
    assert time.monotonic() - started < 1.0
    assert markets(cg, timeout=2).status_code == 200  # fault used up


def test_hang_then_answers_normally(cg):
    cg.add_fault("hang", endpoint="ping", hang_seconds=0.2)
    r = requests.get(f"{cg.base_url}/ping", timeout=2)
    assert r.status_code == 200 and r.json()["gecko_says"]


def test_truncated_body_fails_json_parsing(cg):
    full = markets(cg, per_page=10).content
    cg.add_fault("truncated")
    r = markets(cg, per_page=10)
    assert r.status_code == 200
    assert r.content == full[: len(full) // 2]
    assert int(r.headers["Content-Length"]) == len(r.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    with pytest.raises(requests.exceptions.JSONDecodeError):
        r.json()


# ---- faults: dirty data -----------------------------------------------------------


def test_missing_fields(cg):
    cg.add_fault("missing_fields")
    rows = markets(cg).json()
    assert "id" not in rows[0]
    assert "current_price" not in rows[1] and "market_cap" not in rows[1]
    assert rows[1]["id"] == MARKETS[1]["id"] and "current_price" in rows[2]


def test_numbers_as_strings(cg):
    cg.add_fault("numbers_as_strings")
    rows = markets(cg).json()
    assert rows[0]["current_price"] == str(MARKETS[0]["current_price"])
    assert float(rows[0]["market_cap"]) == MARKETS[0]["market_cap"]
    assert all(isinstance(row["total_volume"], str) for row in rows)
    assert rows[2]["total_volume"] == "n/a"


def test_nulls(cg):
    cg.add_fault("nulls")
    rows = markets(cg).json()
    keys = ("market_cap", "total_volume", "price_change_percentage_24h", "high_24h", "low_24h")
    assert all(rows[i][k] is None for i in range(3) for k in keys)
    assert rows[3]["market_cap"] == MARKETS[3]["market_cap"]


def test_negative(cg):
    cg.add_fault("negative")
    rows = markets(cg).json()
    assert rows[0]["current_price"] == -1.0
    assert rows[1]["total_volume"] == -5


def test_duplicate_ids_on_later_page_repeat_previous_page_tail(cg):
    cg.add_fault("duplicate_ids", page=2)
    page1 = markets(cg, per_page=50, page=1).json()
    page2 = markets(cg, per_page=50, page=2).json()
    assert [r["id"] for r in page2[:2]] == [r["id"] for r in page1[-2:]]
    assert [r["id"] for r in page2[2:]] == [r["id"] for r in MARKETS[50:100]]


def test_duplicate_ids_on_page_one_repeat_first_record(cg):
    cg.add_fault("duplicate_ids")
    ids = [r["id"] for r in markets(cg, per_page=10).json()]
    assert len(ids) == 11 and ids[-1] == ids[0] == "bitcoin"


# ---- request recording --------------------------------------------------------------


def test_requests_are_recorded_with_query_headers_and_time(cg):
    before = time.monotonic()
    markets(cg, per_page=5, page=2, price_change_percentage="1h,24h,7d")
    requests.get(f"{cg.base_url}/global", headers={"x-cg-demo-api-key": "demo-key"}, timeout=5)
    first, second = cg.requests
    assert first.path == "/api/v3/coins/markets" and first.endpoint == "markets"
    assert first.query == {
        "vs_currency": "usd",
        "order": "market_cap_desc",
        "per_page": "5",
        "page": "2",
        "price_change_percentage": "1h,24h,7d",
    }
    assert second.headers["x-cg-demo-api-key"] == "demo-key"
    assert all(k == k.lower() for k in second.headers)
    assert before <= first.at <= second.at <= time.monotonic()
    assert cg.requests_to("global") == [second]
    assert cg.calls_to("markets") == 1 and cg.calls_to("ping") == 0


def test_stop_leaves_no_server_threads():
    import threading

    before = threading.active_count()
    with FakeCoinGecko(markets=[]) as fake:
        fake.add_fault("hang", endpoint="ping", hang_seconds=5)
        with pytest.raises(requests.Timeout):
            requests.get(f"{fake.base_url}/ping", timeout=0.2)
        with requests.Session() as s:  # an idle keep-alive connection must not block stop()
            s.get(f"{fake.base_url}/ping", timeout=2)
            started = time.monotonic()
            fake.stop()
            assert time.monotonic() - started < 0.5
    time.sleep(0.05)
    assert threading.active_count() <= before


def test_failed_requests_are_recorded_too(cg):
    cg.add_fault("429", times=2)
    for _ in range(3):
        markets(cg)
    assert cg.calls_to("markets") == 3
