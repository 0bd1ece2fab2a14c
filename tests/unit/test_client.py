"""The real CoinGecko client over real HTTP, against the local fake server.

Time is faked where waiting is the behaviour under test: the client takes a
``sleep`` and a ``clock``, and ``FakeTime`` records every wait and advances its
clock by it, so a 2 s backoff costs nothing. Socket budgets (a request's
wall-clock limit) always run on real time, so those tests use short ones.
"""

from __future__ import annotations

import io
import json
import time
import tracemalloc
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
import requests
import urllib3
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

import pipeline.providers.coingecko as coingecko
from pipeline.config import Settings
from pipeline.errors import ConfigError, RateLimited, ResponseTooLarge, SchemaDrift, SourceError
from pipeline.providers.coingecko import client_from_settings, fetch_global, fetch_markets
from pipeline.providers.coingecko.client import CoinGeckoClient, parse_retry_after
from tests.fakes.coingecko import DEFAULT_MARKETS, FakeCoinGecko, load_fixture

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
    options = dict(
        calls_per_minute=0,
        timeout_seconds=2.0,
        deadline_seconds=60.0,
        max_retries=3,
        backoff_base_seconds=0.5,
        sleep=ft.sleep,
        clock=ft.clock,
    )
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
    """The API lists only 150 coins: a short page, then one probe asking for coin 151 finds nothing."""
    monkeypatch.setattr(coingecko, "MAX_PER_PAGE", 100)
    fake_coingecko.set_markets(load_fixture(DEFAULT_MARKETS)[:150])
    seen = []
    pages = list(fetch_markets(make_client(fake_coingecko, ft, on_response=seen.append), vs_currency="usd", top_n=250))
    assert [len(p.json()) for p in pages] == [100, 50]
    probe = fake_coingecko.requests_to("markets")[2]
    assert fake_coingecko.calls_to("markets") == 3
    assert (probe.query["per_page"], probe.query["page"]) == ("1", "151")
    assert [r.endpoint for r in seen] == ["markets", "markets", "markets_probe"]  # bronze keeps the probe


def test_a_list_shorter_than_one_page_is_fine_when_the_api_has_no_more(fake_coingecko, ft):
    fake_coingecko.set_markets(load_fixture(DEFAULT_MARKETS)[:3])
    pages = list(fetch_markets(make_client(fake_coingecko, ft), vs_currency="usd", top_n=250))
    assert [len(p.json()) for p in pages] == [3]
    assert fake_coingecko.calls_to("markets") == 2


def test_empty_first_page_is_schema_drift(fake_coingecko, ft):
    fake_coingecko.set_markets([])
    seen = []
    with pytest.raises(SchemaDrift, match="empty") as info:
        list(fetch_markets(make_client(fake_coingecko, ft, on_response=seen.append), vs_currency="usd", top_n=250))
    assert info.value.exit_code == 3 and "\n" not in str(info.value)
    assert fake_coingecko.calls_to("markets") == 1
    assert [r.body for r in seen] == [b"[]"]  # kept for bronze before the check


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
    assert ft.sleeps == [7.0]  # the header, not the 0.5 s backoff
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
    assert 0.4 < elapsed < 1.5  # gave up at the timeout, did not wait for the hang
    assert ft.sleeps == [0.5]
    assert [r.attempt for r in seen] == [2]  # a timeout has no body to keep
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
    client = CoinGeckoClient(
        "http://127.0.0.1:9/api/v3",
        max_retries=2,
        backoff_base_seconds=0.5,
        calls_per_minute=0,
        sleep=ft.sleep,
        clock=ft.clock,
    )
    with pytest.raises(SourceError, match="cannot connect") as info:
        client.get("markets", MARKETS, Q)
    assert "\n" not in str(info.value) and "3 attempts" in str(info.value)
    assert ft.sleeps == [0.5, 1.0]


class _HtmlErrorAdapter(BaseAdapter):
    """What a CDN in front of the API sends on an outage: an HTML page with line breaks."""

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code = 503
        response._content = (
            b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
            b"<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
            b"</body>\r\n</html>\r\n"
        )
        response.headers = CaseInsensitiveDict({"Content-Type": "text/html"})
        response.url, response.request = request.url, request
        return response

    def close(self):
        pass


def test_html_error_body_still_gives_a_one_line_error(ft):
    session = requests.Session()
    session.mount("http://", _HtmlErrorAdapter())
    client = CoinGeckoClient(
        "http://cdn.invalid/api/v3", session=session, max_retries=0, calls_per_minute=0, sleep=ft.sleep, clock=ft.clock
    )
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
        make_client(fake_coingecko, ft, deadline_seconds=5, backoff_base_seconds=2.0, max_retries=10).get(
            "markets", MARKETS, Q
        )
    assert ft.sleeps == [2.0]  # the next wait (4 s) would pass the 5 s deadline
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


@pytest.mark.parametrize(
    "plan, header, other",
    [("demo", "x-cg-demo-api-key", "x-cg-pro-api-key"), ("pro", "x-cg-pro-api-key", "x-cg-demo-api-key")],
)
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
    settings = Settings.from_env(
        _env(
            fake_coingecko,
            COINGECKO_CALLS_PER_MINUTE="30",
            COINGECKO_TIMEOUT_SECONDS="7",
            COINGECKO_MAX_RETRIES="4",
            COINGECKO_BACKOFF_SECONDS="0.25",
            COINGECKO_MAX_RESPONSE_BYTES="12345",
            PIPELINE_MIN_COVERAGE="0.5",
        )
    )
    client = client_from_settings(settings)
    assert client.base_url == fake_coingecko.base_url
    assert (client._min_interval, client._timeout, client._max_retries, client._backoff) == (2.0, 7.0, 4, 0.25)
    assert (client._max_bytes, client.min_coverage) == (12345, 0.5)
    assert 299 < client.remaining() <= 300


def test_client_from_settings_interactive_uses_the_short_budget(fake_coingecko):
    """The refresh button: a person waits, so a short deadline and few retries; the scheduler keeps the long one."""
    settings = Settings.from_env(
        _env(
            fake_coingecko,
            COINGECKO_MAX_RETRIES="5",
            COINGECKO_DEADLINE_SECONDS="300",
            COINGECKO_INTERACTIVE_DEADLINE_SECONDS="8",
            COINGECKO_INTERACTIVE_MAX_RETRIES="1",
        )
    )
    button = client_from_settings(settings, interactive=True)
    assert 7 < button.remaining() <= 8 and button._max_retries == 1
    scheduled = client_from_settings(settings)
    assert 299 < scheduled.remaining() <= 300 and scheduled._max_retries == 5
    default = client_from_settings(Settings.from_env(_env(fake_coingecko, COINGECKO_MAX_RETRIES="")), interactive=True)
    assert 9 < default.remaining() <= 10 and default._max_retries == 1
    never_longer = Settings.from_env(_env(fake_coingecko, COINGECKO_DEADLINE_SECONDS="4", COINGECKO_MAX_RETRIES="0"))
    short = client_from_settings(never_longer, interactive=True)  # never more than the scheduled budget
    assert 3 < short.remaining() <= 4 and short._max_retries == 0


def test_interactive_run_gives_up_within_its_budget_when_the_api_hangs(fake_coingecko):
    fake_coingecko.add_fault("hang", times=10, hang_seconds=30)
    settings = Settings.from_env(
        _env(
            fake_coingecko,
            COINGECKO_TIMEOUT_SECONDS="20",
            COINGECKO_BACKOFF_SECONDS="0.01",
            COINGECKO_INTERACTIVE_DEADLINE_SECONDS="1",
        )
    )
    start = time.monotonic()
    with pytest.raises(SourceError, match="deadline"):
        list(fetch_markets(client_from_settings(settings, interactive=True), vs_currency="usd", top_n=250))
    assert time.monotonic() - start < 2.5


# ---- pacing ---------------------------------------------------------------------


def test_pacing_60_per_minute_waits_one_second_between_calls(fake_coingecko, ft):
    client = make_client(fake_coingecko, ft, calls_per_minute=60)
    client.get("ping", "/ping", {})
    assert ft.sleeps == []  # the first call never waits
    client.get("ping", "/ping", {})
    assert ft.sleeps == [pytest.approx(1.0)]
    ft.now += 0.25  # time spent elsewhere counts
    client.get("ping", "/ping", {})
    assert ft.sleeps[1] == pytest.approx(0.75)
    ft.now += 5
    client.get("ping", "/ping", {})
    assert len(ft.sleeps) == 2  # already more than a second since the last call


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


@pytest.mark.parametrize(
    "value, expected",
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("Wed, 99 Foo 2015", None),
        ("12abc", None),
    ],
)
def test_parse_retry_after_seconds_and_garbage(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=now) == pytest.approx(30.0)
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0  # in the past
    future = datetime.fromtimestamp(time.time() + 60, UTC)
    assert 55 <= parse_retry_after(format_datetime(future, usegmt=True)) <= 61


# ---- a wall-clock budget per request and per run --------------------------------------


def test_trickled_body_is_cut_at_the_request_budget_then_retried(fake_coingecko, ft):
    """One byte every 0.1 s never trips a 0.5 s read timeout; the 0.5 s total per request does."""
    fake_coingecko.add_fault("trickle", interval=0.1)
    seen = []
    client = make_client(fake_coingecko, ft, timeout_seconds=0.5, on_response=seen.append)
    start = time.monotonic()
    response = client.get("markets", MARKETS, Q)
    assert response.ok and response.attempt == 2 and len(response.json()) == 5
    assert time.monotonic() - start < 1.5
    assert [r.attempt for r in seen] == [2]  # a cut-off body is not an answer: nothing to keep
    assert ft.sleeps == [0.5]  # retried with the usual backoff


def test_trickled_body_every_time_fails_after_the_retries(fake_coingecko, ft):
    fake_coingecko.add_fault("trickle", interval=0.1, times=3)
    start = time.monotonic()
    with pytest.raises(SourceError) as info:
        make_client(fake_coingecko, ft, timeout_seconds=0.3, max_retries=2).get("markets", MARKETS, Q)
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert "3 attempts" in message and "timed out" in message and "0.3s" in message and "\n" not in message
    assert info.value.exit_code == 3


def test_trickled_headers_are_cut_at_the_request_budget(fake_coingecko, ft):
    fake_coingecko.add_fault("trickle_headers", interval=0.1)
    client = make_client(fake_coingecko, ft, timeout_seconds=0.5)
    start = time.monotonic()
    response = client.get("markets", MARKETS, Q)
    assert response.ok and response.attempt == 2
    assert time.monotonic() - start < 1.5


def test_run_deadline_cuts_a_request_mid_body(fake_coingecko):
    """Real clock: a 1 s run deadline ends a trickling request after 1 s even with a 20 s request timeout."""
    fake_coingecko.add_fault("trickle", interval=0.1, times=5)
    client = CoinGeckoClient(
        fake_coingecko.base_url,
        calls_per_minute=0,
        timeout_seconds=20,
        deadline_seconds=1.0,
        max_retries=5,
        backoff_base_seconds=0.01,
    )
    start = time.monotonic()
    with pytest.raises(SourceError, match="deadline passed") as info:
        client.get("markets", MARKETS, Q)
    assert 0.9 < time.monotonic() - start < 1.8
    assert "\n" not in str(info.value) and info.value.exit_code == 3
    assert fake_coingecko.calls_to("markets") == 1


# ---- every transport error is retried ----------------------------------------------------


@pytest.mark.parametrize("kind", ["drop", "drop_chunked", "reset"])
def test_connection_lost_mid_body_is_retried(fake_coingecko, ft, kind):
    fake_coingecko.add_fault(kind)
    seen = []
    response = make_client(fake_coingecko, ft, on_response=seen.append).get("markets", MARKETS, Q)
    assert response.ok and response.attempt == 2 and len(response.json()) == 5
    assert [r.attempt for r in seen] == [2]
    assert ft.sleeps == [0.5]


@pytest.mark.parametrize("kind", ["drop", "drop_chunked", "reset"])
def test_connection_lost_every_time_is_a_one_line_source_error(fake_coingecko, ft, kind):
    fake_coingecko.add_fault(kind, times=3)
    with pytest.raises(SourceError) as info:
        make_client(fake_coingecko, ft, max_retries=2).get("markets", MARKETS, Q)
    message = str(info.value)
    assert type(info.value) is SourceError and info.value.exit_code == 3
    assert "3 attempts" in message and "dropped mid-body" in message and "\n" not in message
    assert fake_coingecko.calls_to("markets") == 3


class _FlakyAdapter(BaseAdapter):
    """Fails the first send with ``error``, then answers a one-coin page from memory."""

    def __init__(self, error):
        super().__init__()
        self.error, self.calls = error, 0

    def send(self, request, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise self.error
        response = requests.Response()
        response.status_code = 200
        response._content = b'[{"id": "bitcoin"}]'
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response.url, response.request = request.url, request
        return response

    def close(self):
        pass


class _BrokenRaw:
    """A body object from another adapter whose first read fails the way a broken connection does."""

    def __init__(self, error):
        self.error = error

    def stream(self, amt=None, decode_content=None):
        raise self.error

    def read(self, amt=None):
        raise self.error

    def close(self):
        pass


class _BrokenBodyAdapter(_FlakyAdapter):
    """The first answer's body breaks while it is read; ``make_raw()`` builds that body."""

    def send(self, request, **kwargs):
        self.calls += 1
        response = requests.Response()
        response.status_code = 200
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response.url, response.request = request.url, request
        if self.calls == 1:
            response.raw = self.error()
        else:
            response._content = b'[{"id": "bitcoin"}]'
        return response


def _urllib3_body(body: bytes, **headers):
    """A real urllib3 response over an in-memory body (the client's streaming read path)."""
    return lambda: urllib3.HTTPResponse(body=io.BytesIO(body), headers=headers, status=200, preload_content=False)


TRANSPORT_ERRORS = [
    requests.exceptions.ChunkedEncodingError("Connection broken"),
    requests.exceptions.ContentDecodingError("bad gzip"),
    requests.exceptions.ConnectionError("reset"),
    requests.exceptions.ReadTimeout("read timed out"),
    requests.exceptions.ConnectTimeout("connect timed out"),
    requests.exceptions.SSLError("bad record mac"),
    requests.exceptions.ProxyError("proxy went away"),
    requests.exceptions.RetryError("retries"),
    urllib3.exceptions.ProtocolError("Connection broken", ConnectionResetError(104, "reset")),
    urllib3.exceptions.IncompleteRead(10, 5),
    ConnectionResetError(104, "Connection reset by peer"),
]


@pytest.mark.parametrize("error", TRANSPORT_ERRORS, ids=lambda e: type(e).__name__)
def test_every_transport_error_before_the_body_is_retried(ft, error):
    adapter = _FlakyAdapter(error)
    session = requests.Session()
    session.mount("http://", adapter)
    client = CoinGeckoClient(
        "http://cg.invalid/api/v3",
        session=session,
        calls_per_minute=0,
        backoff_base_seconds=0.5,
        sleep=ft.sleep,
        clock=ft.clock,
    )
    response = client.get("markets", MARKETS, Q)
    assert response.ok and response.attempt == 2 and adapter.calls == 2
    assert ft.sleeps == [0.5]


MID_BODY_ERRORS = {
    "ProtocolError": lambda: _BrokenRaw(
        urllib3.exceptions.ProtocolError("broken", urllib3.exceptions.IncompleteRead(10, 5))
    ),
    "DecodeError": lambda: _BrokenRaw(urllib3.exceptions.DecodeError("bad gzip")),
    "ReadTimeoutError": lambda: _BrokenRaw(urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out")),
    "SSLError": lambda: _BrokenRaw(urllib3.exceptions.SSLError("bad record mac")),
    "ConnectionResetError": lambda: _BrokenRaw(ConnectionResetError(104, "Connection reset by peer")),
    "urllib3-short-body": _urllib3_body(b'[{"id": "bit', **{"Content-Length": "100"}),
    "urllib3-bad-gzip": _urllib3_body(b"this is not gzip", **{"Content-Encoding": "gzip"}),
}


@pytest.mark.parametrize("make_raw", MID_BODY_ERRORS.values(), ids=MID_BODY_ERRORS.keys())
def test_every_transport_error_mid_body_is_retried(ft, make_raw):
    adapter = _BrokenBodyAdapter(make_raw)
    session = requests.Session()
    session.mount("http://", adapter)
    client = CoinGeckoClient(
        "http://cg.invalid/api/v3",
        session=session,
        calls_per_minute=0,
        backoff_base_seconds=0.5,
        sleep=ft.sleep,
        clock=ft.clock,
    )
    response = client.get("markets", MARKETS, Q)
    assert response.ok and response.attempt == 2 and adapter.calls == 2


@pytest.mark.parametrize(
    "base_url, api_key",
    [("htp://127.0.0.1/api/v3", None), ("http:///api/v3", None), ("http://127.0.0.1:9/api/v3", "secret\nkey-123")],
)
def test_a_request_that_cannot_be_built_is_a_config_error_at_once(ft, base_url, api_key):
    client = CoinGeckoClient(base_url, api_key=api_key, calls_per_minute=0, sleep=ft.sleep, clock=ft.clock)
    with pytest.raises(ConfigError) as info:
        client.get("markets", MARKETS, Q)
    assert ft.sleeps == [] and "\n" not in str(info.value)
    assert "key-123" not in str(info.value)


# ---- redirects: the key never leaves the API's host ---------------------------------------


@pytest.fixture
def other_host():
    """A second local server standing for someone else's host: it records every header it gets."""
    with FakeCoinGecko() as other:
        yield other


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("where", ["other port", "other name", "other scheme", "protocol-relative"])
def test_redirect_to_another_host_is_not_followed_and_the_key_never_leaves(
    fake_coingecko, other_host, ft, where, status
):
    query = "vs_currency=usd&per_page=5&page=1"
    location = {
        "other port": f"{other_host.base_url}/coins/markets?{query}",
        "other name": f"http://localhost:{fake_coingecko.port}/api/v3/coins/markets?{query}",
        "other scheme": f"https://127.0.0.1:{fake_coingecko.port}/api/v3/coins/markets?{query}",
        "protocol-relative": f"//127.0.0.1:{other_host.port}/api/v3/coins/markets?{query}",
    }[where]
    fake_coingecko.add_fault("redirect", location=location, status=status)
    seen = []
    client = make_client(fake_coingecko, ft, api_key="secret-key-123", on_response=seen.append)
    with pytest.raises(SourceError) as info:
        client.get("markets", MARKETS, Q)
    message = str(info.value)
    assert "another host" in message and "not sent" in message and "\n" not in message
    expected_host = {
        "other port": f"127.0.0.1:{other_host.port}",
        "other name": "localhost",
        "other scheme": "https://127.0.0.1",
        "protocol-relative": f"127.0.0.1:{other_host.port}",
    }[where]
    assert expected_host in message
    assert other_host.requests == []  # never contacted, so never saw the key
    assert fake_coingecko.calls_to("markets") == 1 and ft.sleeps == []
    assert [(r.status, r.headers.get("location")) for r in seen] == [(status, location)]
    assert fake_coingecko.requests_to("markets")[0].headers["x-cg-demo-api-key"] == "secret-key-123"


def test_same_host_redirect_is_followed(fake_coingecko, ft):
    fake_coingecko.add_fault("redirect", times=2)  # the same URL again, twice
    seen = []
    response = make_client(fake_coingecko, ft, api_key="k", on_response=seen.append).get("markets", MARKETS, Q)
    assert response.ok and response.attempt == 1 and len(response.json()) == 5
    assert fake_coingecko.calls_to("markets") == 3
    assert [r.status for r in seen] == [200]
    assert all(r.headers["x-cg-demo-api-key"] == "k" for r in fake_coingecko.requests_to("markets"))


def test_redirect_loop_stops_after_five_hops(fake_coingecko, ft):
    fake_coingecko.add_fault("redirect", times=20)
    with pytest.raises(SourceError, match="more than 5 redirects") as info:
        make_client(fake_coingecko, ft).get("markets", MARKETS, Q)
    assert fake_coingecko.calls_to("markets") == 6 and "\n" not in str(info.value)


# ---- a cap on the decoded body -----------------------------------------------------------

MIB = 1024 * 1024


@pytest.mark.parametrize(
    "kind, chunked",
    [("huge", False), ("huge", True), ("gzip_bomb", False)],
    ids=["content-length", "chunked-no-length", "gzip-bomb"],
)
def test_body_over_the_cap_is_refused_not_kept_not_retried(fake_coingecko, ft, kind, chunked):
    fake_coingecko.add_fault(kind, size=30 * MIB, chunked=chunked, times=3)
    seen = []
    client = make_client(fake_coingecko, ft, max_response_bytes=1 * MIB, on_response=seen.append)
    start = time.monotonic()
    with pytest.raises(ResponseTooLarge) as info:
        client.get("markets", MARKETS, Q)
    assert time.monotonic() - start < 2
    assert isinstance(info.value, SourceError) and info.value.exit_code == 3
    message = str(info.value)
    assert "too large" in message and "1,048,576" in message and "\n" not in message
    assert seen == []  # nothing over the cap reaches bronze
    assert fake_coingecko.calls_to("markets") == 1 and ft.sleeps == []


def test_gzip_bomb_is_stopped_without_inflating_it_in_memory(fake_coingecko, ft):
    fake_coingecko.add_fault("gzip_bomb", size=60 * MIB, times=2)
    client = make_client(fake_coingecko, ft, max_response_bytes=1 * MIB)
    with pytest.raises(ResponseTooLarge):
        client.get("markets", MARKETS, Q)  # builds and caches the bomb in the fake
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge):
            make_client(fake_coingecko, ft, max_response_bytes=1 * MIB).get("markets", MARKETS, Q)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB


def test_body_at_the_cap_is_accepted_and_one_byte_over_is_not(fake_coingecko, ft):
    size = len(make_client(fake_coingecko, ft).get("markets", MARKETS, Q).body)
    assert make_client(fake_coingecko, ft, max_response_bytes=size).get("markets", MARKETS, Q).ok
    with pytest.raises(ResponseTooLarge):
        make_client(fake_coingecko, ft, max_response_bytes=size - 1).get("markets", MARKETS, Q)


def test_gzip_body_is_decoded_and_capped_on_its_decoded_size(fake_coingecko, ft):
    """A gzip body small on the wire, a bit over the cap once decoded (no Content-Length over the cap)."""
    fake_coingecko.add_fault("gzip_bomb", size=2 * MIB)
    with pytest.raises(ResponseTooLarge, match="decoded"):
        make_client(fake_coingecko, ft, max_response_bytes=1 * MIB).get("markets", MARKETS, Q)
    fake_coingecko.add_fault("gzip_bomb", size=MIB // 2)
    response = make_client(fake_coingecko, ft, max_response_bytes=1 * MIB).get("markets", MARKETS, Q)
    assert len(response.body) == MIB // 2 and len(response.json()) == 5


# ---- the response contract -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, options, words",
    [
        ("rename_fields", {"rename": {"id": "coin_id"}}, ["id", "coin_id"]),
        ("rename_fields", {"rename": {"current_price": "price"}}, ["current_price", "price"]),
        (
            "rename_fields",
            {"rename": {"market_cap": "mcap", "total_volume": "volume"}},
            ["market_cap", "total_volume", "mcap", "volume"],
        ),
        ("empty_list", {}, ["empty"]),
        ("wrong_type", {}, ["array", "object"]),
        ("array_of_strings", {}, ["objects", "string"]),
    ],
)
def test_a_body_of_the_wrong_shape_is_schema_drift(fake_coingecko, ft, kind, options, words):
    fake_coingecko.add_fault(kind, **options)
    seen = []
    with pytest.raises(SchemaDrift) as info:
        list(fetch_markets(make_client(fake_coingecko, ft, on_response=seen.append), vs_currency="usd", top_n=250))
    message = str(info.value)
    assert "schema drift" in message and "\n" not in message and info.value.exit_code == 3
    for word in words:
        assert word in message
    assert len(seen) == 1 and seen[0].status == 200  # the body went to bronze before the check
    assert fake_coingecko.calls_to("markets") == 1  # well-formed: no retry


@pytest.mark.parametrize("kind", ["single_record", "repeat_one"])
def test_far_fewer_coins_than_asked_is_a_partial_response(fake_coingecko, ft, kind):
    fake_coingecko.add_fault(kind)
    with pytest.raises(SchemaDrift, match="partial response: got 1 of 250 coins") as info:
        list(fetch_markets(make_client(fake_coingecko, ft), vs_currency="usd", top_n=250))
    assert "\n" not in str(info.value)


def test_a_short_later_page_is_a_partial_response(fake_coingecko, ft, monkeypatch):
    monkeypatch.setattr(coingecko, "MAX_PER_PAGE", 100)
    fake_coingecko.add_fault("single_record", page=2)
    with pytest.raises(SchemaDrift, match="partial response: got 101 of 250 coins"):
        list(fetch_markets(make_client(fake_coingecko, ft), vs_currency="usd", top_n=250))


def test_coverage_threshold_is_configurable(fake_coingecko, ft):
    records = load_fixture(DEFAULT_MARKETS)
    fake_coingecko.set_markets(records[:200] + [dict(records[0]) for _ in range(50)])  # 200 distinct of 250
    pages = list(fetch_markets(make_client(fake_coingecko, ft, min_coverage=0.8), vs_currency="usd", top_n=250))
    assert len(pages) == 1
    with pytest.raises(SchemaDrift, match="got 200 of 250"):
        list(fetch_markets(make_client(fake_coingecko, ft, min_coverage=0.9), vs_currency="usd", top_n=250))


@pytest.mark.parametrize("kind", ["missing_fields", "numbers_as_strings", "nulls", "negative", "duplicate_ids"])
def test_malformed_records_are_not_drift(fake_coingecko, ft, kind):
    """A few bad records are silver's to quarantine; only a whole-body problem is drift."""
    fake_coingecko.add_fault(kind)
    pages = list(fetch_markets(make_client(fake_coingecko, ft), vs_currency="usd", top_n=250))
    assert len(pages) == 1 and len(pages[0].json()) >= 250


@pytest.mark.parametrize(
    "kind, words",
    [
        ("rename_fields", ["total_market_cap", "market_cap_percentage", "total_mcap"]),
        ("wrong_type", ["object", "array"]),
    ],
)
def test_global_of_the_wrong_shape_is_schema_drift(fake_coingecko, ft, kind, words):
    fake_coingecko.add_fault(kind, endpoint="global")
    with pytest.raises(SchemaDrift) as info:
        fetch_global(make_client(fake_coingecko, ft))
    for word in words:
        assert word in str(info.value)
    assert "/global" in str(info.value) and "\n" not in str(info.value)
