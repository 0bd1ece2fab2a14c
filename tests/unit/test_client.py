"""The real CoinGecko client over real HTTP, against the local fake server.

Time is faked where waiting is the behaviour under test: the client takes a
``sleep`` and a ``clock``, and ``FakeTime`` records every wait and advances its
clock by it, so a 2 s backoff costs nothing.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

import pipeline.sources.coingecko as coingecko
from pipeline.config import Settings
from pipeline.errors import RateLimited, SchemaDrift, SourceError
from pipeline.sources.coingecko import client_from_settings, fetch_global, fetch_markets
from pipeline.sources.coingecko.client import CoinGeckoClient, parse_retry_after
from tests.fakes.coingecko import DEFAULT_MARKETS, load_fixture

MARKETS = "/coins/markets"
Q = {"vs_currency": "usd", "per_page": 5, "page": 1}


class FakeTime:
    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def ft():
    return FakeTime()


def make_client(fake, ft, **kw):
    options = dict(calls_per_minute=0, timeout_seconds=2.0, deadline_seconds=60.0, max_retries=3,
                   backoff_base_seconds=0.5, sleep=ft.sleep, clock=ft.clock)
    options.update(kw)
    return CoinGeckoClient(fake.base_url, **options)


def records_of(responses):
    return [rec for r in responses for rec in r.json()]


# ---- paging ---------------------------------------------------------------------

def test_pages_through_250_coins_with_per_page_100(fake_coingecko, ft, monkeypatch):
    monkeypatch.setattr(coingecko, "MAX_PER_PAGE", 100)
    client = make_client(fake_coingecko, ft)
    pages = list(fetch_markets(client, vs_currency="usd", top_n=250))
    assert [len(p.json()) for p in pages] == [100, 100, 50]
    assert [p.page for p in pages] == [1, 2, 3]
    sent = fake_coingecko.requests_to("markets")
    assert len(sent) == 3
    for number, req in enumerate(sent, start=1):
        assert req.query["page"] == str(number)
        assert req.query["per_page"] == "100"
        assert req.query["vs_currency"] == "usd"
        assert req.query["order"] == "market_cap_desc"
        assert req.query["sparkline"] == "true"
        assert set(req.query["price_change_percentage"].split(",")) >= {"1h", "24h", "7d"}
    expected = [r["id"] for r in load_fixture(DEFAULT_MARKETS)]
    assert [r["id"] for r in records_of(pages)] == expected
    assert "sparkline_in_7d" in pages[0].json()[0]
    assert "price_change_percentage_1h_in_currency" in pages[0].json()[0]
    assert ft.sleeps == []


def test_top_250_is_one_page_of_250(fake_coingecko, ft):
    pages = list(fetch_markets(make_client(fake_coingecko, ft), vs_currency="usd", top_n=250))
    assert len(pages) == 1 and len(pages[0].json()) == 250
    assert fake_coingecko.requests_to("markets")[0].query["per_page"] == "250"


def test_stops_early_on_a_short_page(fake_coingecko, ft, monkeypatch):
    monkeypatch.setattr(coingecko, "MAX_PER_PAGE", 100)
    fake_coingecko.set_markets(load_fixture(DEFAULT_MARKETS)[:150])
    pages = list(fetch_markets(make_client(fake_coingecko, ft), vs_currency="usd", top_n=250))
    assert [len(p.json()) for p in pages] == [100, 50]
    assert fake_coingecko.calls_to("markets") == 2


def test_empty_first_page_stops(fake_coingecko, ft):
    fake_coingecko.set_markets([])
    pages = list(fetch_markets(make_client(fake_coingecko, ft), vs_currency="usd", top_n=250))
    assert len(pages) == 1 and pages[0].json() == []
    assert fake_coingecko.calls_to("markets") == 1


def test_duplicate_ids_are_passed_through_not_deduplicated(fake_coingecko, ft, monkeypatch):
    monkeypatch.setattr(coingecko, "MAX_PER_PAGE", 100)
    fake_coingecko.add_fault("duplicate_ids", page=2)
    pages = list(fetch_markets(make_client(fake_coingecko, ft), vs_currency="usd", top_n=250))
    page1, page2 = pages[0].json(), pages[1].json()
    assert len(page2) == 102
    assert [r["id"] for r in page2[:2]] == [r["id"] for r in page1[-2:]]
    ids = [r["id"] for r in records_of(pages)]
    assert len(ids) == 252 and len(set(ids)) == 250


def test_fetch_global(fake_coingecko, ft):
    response = fetch_global(make_client(fake_coingecko, ft))
    assert response.ok and response.endpoint == "global"
    assert response.json()["data"]["total_market_cap"]["usd"] > 0
    fake_coingecko.set_global({"no": "data"})
    with pytest.raises(SchemaDrift):
        fetch_global(make_client(fake_coingecko, ft))


# ---- retries --------------------------------------------------------------------

def test_429_is_retried_honouring_retry_after(fake_coingecko, ft):
    fake_coingecko.add_fault("429", retry_after=7)
    seen = []
    client = make_client(fake_coingecko, ft, on_response=seen.append)
    response = client.get("markets", MARKETS, Q, page=1)
    assert response.ok and len(response.json()) == 5
    assert ft.sleeps == [7.0]                          # the header, not the 0.5 s backoff
    assert [(r.status, r.attempt) for r in seen] == [(429, 1), (200, 2)]
    assert seen[0].headers["retry-after"] == "7"
    assert fake_coingecko.calls_to("markets") == 2


def test_429_with_real_sleep_is_short(fake_coingecko):
    """The default sleep really waits what Retry-After says (1 s here)."""
    fake_coingecko.add_fault("429", retry_after=1)
    client = CoinGeckoClient(fake_coingecko.base_url, calls_per_minute=0, backoff_base_seconds=0.01)
    start = time.monotonic()
    assert client.get("markets", MARKETS, Q).ok
    gap = fake_coingecko.requests_to("markets")[1].at - fake_coingecko.requests_to("markets")[0].at
    assert 0.9 <= gap < 3 and time.monotonic() - start < 3


@pytest.mark.parametrize("status", ["500", "503"])
def test_server_errors_retried_with_exponential_backoff(fake_coingecko, ft, status):
    fake_coingecko.add_fault(status, times=3)
    seen = []
    client = make_client(fake_coingecko, ft, on_response=seen.append, max_retries=3)
    response = client.get("markets", MARKETS, Q)
    assert response.ok and response.attempt == 4
    assert ft.sleeps == [0.5, 1.0, 2.0]
    assert [r.status for r in seen] == [int(status)] * 3 + [200]
    assert fake_coingecko.calls_to("markets") == 4


def test_retry_after_on_503_is_honoured(fake_coingecko, ft):
    fake_coingecko.add_fault("503", retry_after=3)
    assert make_client(fake_coingecko, ft).get("markets", MARKETS, Q).ok
    assert ft.sleeps == [3.0]


def test_hang_past_timeout_is_retried(fake_coingecko, ft):
    fake_coingecko.add_fault("hang", hang_seconds=1.5)
    seen = []
    client = make_client(fake_coingecko, ft, timeout_seconds=0.5, on_response=seen.append)
    start = time.monotonic()
    response = client.get("markets", MARKETS, Q)
    elapsed = time.monotonic() - start
    assert response.ok and response.attempt == 2
    assert 0.4 < elapsed < 1.5                        # gave up at the timeout, did not wait for the hang
    assert ft.sleeps == [0.5]
    assert [r.attempt for r in seen] == [2]           # a timeout has no body to keep
    assert fake_coingecko.calls_to("markets") == 2


def test_truncated_body_is_retried_then_succeeds(fake_coingecko, ft):
    fake_coingecko.add_fault("truncated")
    seen = []
    response = make_client(fake_coingecko, ft, on_response=seen.append).get("markets", MARKETS, Q)
    assert response.ok and response.attempt == 2 and len(response.json()) == 5
    assert [r.status for r in seen] == [200, 200]
    with pytest.raises(SchemaDrift):
        seen[0].json()
    assert ft.sleeps == [0.5]


def test_truncated_every_time_is_schema_drift(fake_coingecko, ft):
    fake_coingecko.add_fault("truncated", times=3)
    with pytest.raises(SchemaDrift) as info:
        make_client(fake_coingecko, ft, max_retries=2).get("markets", MARKETS, Q)
    assert "not valid JSON" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["500", "503", "429"])
def test_too_many_faults_raise_one_line_source_error(fake_coingecko, ft, kind):
    fake_coingecko.add_fault(kind, times=3, retry_after=1 if kind == "429" else None)
    seen = []
    with pytest.raises(SourceError) as info:
        make_client(fake_coingecko, ft, max_retries=2, on_response=seen.append).get("markets", MARKETS, Q)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert MARKETS in message and "3 attempts" in message and f"HTTP {kind}" in message
    assert len(seen) == 3 and fake_coingecko.calls_to("markets") == 3
    assert len(ft.sleeps) == 2


def test_connection_refused_is_a_source_error():
    ft = FakeTime()
    client = CoinGeckoClient("http://127.0.0.1:9/api/v3", max_retries=2, backoff_base_seconds=0.5,
                             calls_per_minute=0, sleep=ft.sleep, clock=ft.clock)
    with pytest.raises(SourceError, match="cannot connect") as info:
        client.get("markets", MARKETS, Q)
    assert "\n" not in str(info.value) and "3 attempts" in str(info.value)
    assert ft.sleeps == [0.5, 1.0]


class _HtmlErrorAdapter(BaseAdapter):
    """What a CDN in front of the API sends on an outage: an HTML page with line breaks."""

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code = 503
        response._content = (b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
                              b"<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
                              b"</body>\r\n</html>\r\n")
        response.headers = CaseInsensitiveDict({"Content-Type": "text/html"})
        response.url, response.request = request.url, request
        return response

    def close(self):
        pass


def test_html_error_body_still_gives_a_one_line_error(ft):
    session = requests.Session()
    session.mount("http://", _HtmlErrorAdapter())
    client = CoinGeckoClient("http://cdn.invalid/api/v3", session=session, max_retries=0, calls_per_minute=0,
                             sleep=ft.sleep, clock=ft.clock)
    with pytest.raises(SourceError) as info:
        client.get("markets", MARKETS, Q)
    assert "HTTP 503" in str(info.value)
    assert "\n" not in str(info.value)


def test_429_longer_than_the_deadline_raises_rate_limited_at_once(fake_coingecko, ft):
    fake_coingecko.add_fault("429", retry_after=120)
    seen = []
    client = make_client(fake_coingecko, ft, deadline_seconds=30, on_response=seen.append)
    with pytest.raises(RateLimited) as info:
        client.get("markets", MARKETS, Q)
    assert ft.sleeps == []
    assert fake_coingecko.calls_to("markets") == 1 and [r.status for r in seen] == [429]
    assert "120" in str(info.value) and "\n" not in str(info.value)


def test_429_longer_than_the_cap_raises_rate_limited(fake_coingecko, ft):
    fake_coingecko.add_fault("429", retry_after=301)
    with pytest.raises(RateLimited):
        make_client(fake_coingecko, ft, deadline_seconds=3600).get("markets", MARKETS, Q)
    assert ft.sleeps == []


def test_403_is_not_retried(fake_coingecko, ft):
    fake_coingecko.add_fault("403", times=3)
    seen = []
    with pytest.raises(SourceError) as info:
        make_client(fake_coingecko, ft, on_response=seen.append).get("markets", MARKETS, Q)
    assert not isinstance(info.value, RateLimited)
    assert "HTTP 403" in str(info.value) and "temporarily unavailable" in str(info.value)
    assert "\n" not in str(info.value)
    assert fake_coingecko.calls_to("markets") == 1 and ft.sleeps == []
    assert [r.status for r in seen] == [403]


def test_deadline_stops_retrying(fake_coingecko, ft):
    fake_coingecko.add_fault("500", times=10)
    with pytest.raises(SourceError, match="deadline") as info:
        make_client(fake_coingecko, ft, deadline_seconds=5, backoff_base_seconds=2.0, max_retries=10)\
            .get("markets", MARKETS, Q)
    assert ft.sleeps == [2.0]                # the next wait (4 s) would pass the 5 s deadline
    assert "\n" not in str(info.value)
    assert fake_coingecko.calls_to("markets") == 2


def test_on_response_sees_every_attempt(fake_coingecko, ft):
    fake_coingecko.add_fault("429", retry_after=0)
    fake_coingecko.add_fault("500")
    fake_coingecko.add_fault("truncated")
    seen = []
    response = make_client(fake_coingecko, ft, on_response=seen.append).get("markets", MARKETS, Q, page=1)
    assert [(r.status, r.attempt) for r in seen] == [(429, 1), (500, 2), (200, 3), (200, 4)]
    assert seen[-1] is response
    assert all(r.endpoint == "markets" and r.path == MARKETS and r.page == 1 for r in seen)
    assert all(r.params == {"vs_currency": "usd", "per_page": 5, "page": 1} for r in seen)
    assert json.loads(seen[0].body)["status"]["error_code"] == 429
    assert isinstance(seen[0].fetched_at, datetime) and seen[0].fetched_at.tzinfo is None


# ---- API key --------------------------------------------------------------------

def _env(fake, **extra):
    env = {"COINGECKO_BASE_URL": fake.base_url, "COINGECKO_CALLS_PER_MINUTE": "0", "COINGECKO_MAX_RETRIES": "0"}
    env.update(extra)
    return env


@pytest.mark.parametrize("plan, header, other", [("demo", "x-cg-demo-api-key", "x-cg-pro-api-key"),
                                                 ("pro", "x-cg-pro-api-key", "x-cg-demo-api-key")])
def test_api_key_goes_in_the_right_header_only(fake_coingecko, plan, header, other):
    key = f"{plan}-secret-key-123"
    settings = Settings.from_env(_env(fake_coingecko, COINGECKO_API_KEY=key, COINGECKO_API_PLAN=plan))
    seen = []
    client = client_from_settings(settings, on_response=seen.append)
    list(fetch_markets(client, vs_currency="usd", top_n=5))
    fetch_global(client)
    for req in fake_coingecko.requests:
        assert req.headers.get(header) == key
        assert other not in req.headers
        assert key not in req.path
        assert all(key not in k and key not in v for k, v in req.query.items())
    for response in seen:
        assert key not in json.dumps(response.params) and key not in json.dumps(response.headers)


def test_no_key_no_header(fake_coingecko):
    client = client_from_settings(Settings.from_env(_env(fake_coingecko)))
    client.get("ping", "/ping", {})
    headers = fake_coingecko.requests_to("ping")[0].headers
    assert "x-cg-demo-api-key" not in headers and "x-cg-pro-api-key" not in headers


def test_client_from_settings_passes_every_setting(fake_coingecko):
    settings = Settings.from_env(_env(fake_coingecko, COINGECKO_CALLS_PER_MINUTE="30", COINGECKO_TIMEOUT_SECONDS="7",
                                      COINGECKO_MAX_RETRIES="4", COINGECKO_BACKOFF_SECONDS="0.25"))
    client = client_from_settings(settings)
    assert client.base_url == fake_coingecko.base_url
    assert (client._min_interval, client._timeout, client._max_retries, client._backoff) == (2.0, 7.0, 4, 0.25)
    assert 299 < client.remaining() <= 300


# ---- pacing ---------------------------------------------------------------------

def test_pacing_60_per_minute_waits_one_second_between_calls(fake_coingecko, ft):
    client = make_client(fake_coingecko, ft, calls_per_minute=60)
    client.get("ping", "/ping", {})
    assert ft.sleeps == []                         # the first call never waits
    client.get("ping", "/ping", {})
    assert ft.sleeps == [pytest.approx(1.0)]
    ft.now += 0.25                                 # time spent elsewhere counts
    client.get("ping", "/ping", {})
    assert ft.sleeps[1] == pytest.approx(0.75)
    ft.now += 5
    client.get("ping", "/ping", {})
    assert len(ft.sleeps) == 2                     # already more than a second since the last call


def test_pacing_does_not_add_to_a_longer_backoff(fake_coingecko, ft):
    fake_coingecko.add_fault("500")
    client = make_client(fake_coingecko, ft, calls_per_minute=60, backoff_base_seconds=2.0)
    assert client.get("markets", MARKETS, Q).ok
    assert ft.sleeps == [2.0]


def test_pacing_with_the_real_clock(fake_coingecko):
    """Three calls at 300/minute span at least two 0.2 s intervals, whatever the machine's load."""
    client = CoinGeckoClient(fake_coingecko.base_url, calls_per_minute=300)
    start = time.monotonic()
    for _ in range(3):
        client.get("ping", "/ping", {})
    assert time.monotonic() - start >= 0.4
    assert fake_coingecko.calls_to("ping") == 3


# ---- Retry-After parsing ---------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), (" 3 ", 3.0), ("0", 0.0), ("1.5", 1.5), ("-5", 0.0),
    ("", None), (None, None), ("soon", None), ("Wed, 99 Foo 2015", None), ("12abc", None),
])
def test_parse_retry_after_seconds_and_garbage(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=now) == pytest.approx(30.0)
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0   # in the past
    future = datetime.fromtimestamp(time.time() + 60, timezone.utc)
    assert 55 <= parse_retry_after(format_datetime(future, usegmt=True)) <= 61
