"""A local fake of the CoinGecko API v3 that serves real recorded responses.

Why: tests must exercise the real HTTP client (timeouts, status codes, headers,
broken bodies) without internet access. The server runs on 127.0.0.1 in a
background thread and answers from the recorded fixtures in
``tests/fixtures/coingecko/`` (see PROVENANCE.md there), re-shaped the way the
real API shapes them (paging, ``sparkline``, ``price_change_percentage``).

Faults are queued with :meth:`FakeCoinGecko.add_fault`; each queued fault is
consumed by the next matching request(s), so a test can script sequences such
as "429, then 500, then success". At most one fault applies per request.

Hostile-server faults (``HOSTILE_FAULTS``) cover what a misbehaving server or
network does to a well-behaved client: a body trickling byte by byte, headers
trickling, a connection dropped or reset mid-body, a redirect to another host,
a huge body (with or without Content-Length), a gzip bomb, and bodies that are
well-formed JSON of the wrong shape (renamed fields, an empty list, a single
record, one coin repeated, an object instead of an array, an array of strings).
A second ``FakeCoinGecko`` makes a good "other host": it records every header
it receives.

Usage::

    with FakeCoinGecko() as cg:
        cg.add_fault("429", retry_after=2)
        requests.get(f"{cg.base_url}/coins/markets", params={"vs_currency": "usd"})
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures" / "coingecko"
# The real 429 body has no license, so it is read from the shared data folder
# next to the repo instead of being copied into it.
REAL_429_PATH = (
    REPO_ROOT
    / ".."
    / "shared"
    / "data"
    / "real"
    / "errors"
    / "market_chart_error429_2025-03-05_jpwnoise-Cripto-Brain.json"
)
FALLBACK_429_BODY = {
    "status": {
        "error_code": 429,
        "error_message": (
            "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing "
            "to subscribe to our API plans for higher rate limits."
        ),
    }
}

DEFAULT_MARKETS = "markets/markets_250_sparkline_pct1h24h7d_2022-10-16_mrmendoza-dev-cryptotracker.json"
DEFAULT_GLOBAL = "global/global_2022-10-16_mrmendoza-dev-cryptotracker.json"
DEFAULT_BITCOIN_CHART = "market_chart/market_chart_bitcoin_usd_max_daily_2022-11-27_mrmendoza-dev-cryptotracker.json"
ERROR_403 = "errors/coins_markets_error403_2023-03-30_madjin-daily-crypto.json"
#: /coins/markets?category=<id>: the markets records whose ids this file lists under <id> (see PROVENANCE.md).
DEFAULT_CATEGORIES = "categories/category_members_2022-10-16.json"
#: The tracked sectors' members for /coins/markets?category=<sector> (merged with DEFAULT_CATEGORIES).
DEFAULT_SECTOR_MEMBERS = "categories/sector_members_2022-10-16.json"
#: /coins/categories: the real 2025-03-04 body (529 categories; no license, so read from the shared
#: data folder like the 429 body), else the MIT 2023-01-08 body copied here (90 categories).
SHARED_CATEGORIES_PATH = (
    REPO_ROOT / ".." / "shared" / "data" / "real" / "categories" / "categories_2025-03-04_RozanovIgor-monkey.json"
)
FALLBACK_CATEGORIES = "categories/categories_2023-01-08_JKorf-CoinGecko.Net.utf8.json"
DEFAULT_CATEGORIES_LIST = "categories/categories_list_2023-01-08_JKorf-CoinGecko.Net.json"

API_PREFIX = "/api/v3"
# "category": /coins/markets with a category parameter (recorded and faulted apart from the markets pages).
ENDPOINTS = frozenset({"markets", "global", "market_chart", "ping", "category", "categories", "categories_list"})
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 250
DAY_MS = 86_400_000

# Faults that rewrite the records of a /coins/markets page.
DATA_FAULTS = frozenset({"missing_fields", "numbers_as_strings", "nulls", "negative", "duplicate_ids"})
TRANSPORT_FAULTS = frozenset({"hang", "truncated"})
ERROR_FAULTS = frozenset({"403", "429", "error"})  # plus any 3-digit status such as "500"
# A hostile server: slow, broken or oversized transport, redirects, wrong-shaped bodies.
STREAM_FAULTS = frozenset({"trickle", "trickle_headers", "drop", "drop_chunked", "reset", "huge", "gzip_bomb"})
REDIRECT_FAULTS = frozenset({"redirect"})
# Well-formed JSON of the wrong shape ("schema drift"); markets-only except rename_fields and wrong_type.
SHAPE_FAULTS = frozenset(
    {"rename_fields", "empty_list", "single_record", "repeat_one", "wrong_type", "array_of_strings"}
)
GLOBAL_SHAPE_FAULTS = frozenset({"rename_fields", "wrong_type"})
HOSTILE_FAULTS = STREAM_FAULTS | REDIRECT_FAULTS | SHAPE_FAULTS
DEFAULT_RENAMES = {
    "markets": {"id": "coin_id"},
    "global": {"total_market_cap": "total_mcap", "market_cap_percentage": "dominance"},
}
DEFAULT_HUGE_BYTES = 8 * 1024 * 1024

_PCT_KEY = re.compile(r"^price_change_percentage_(.+)_in_currency$")
_CHART_PATH = re.compile(r"^/api/v3/coins/([^/]+)/market_chart$")


def load_fixture(name: str):
    """Parse a fixture file fresh, so callers may mutate the result freely."""
    with open(FIXTURES_DIR / name, "rb") as fh:
        return json.loads(fh.read())


@cache
def _shared_fixture(name: str):
    """Parsed fixture shared by all fakes; the fake never mutates it (it copies records)."""
    return load_fixture(name)


@cache
def default_categories_body() -> list[dict]:
    """The /coins/categories body the fake serves by default (see SHARED_CATEGORIES_PATH)."""
    try:
        return json.loads(SHARED_CATEGORIES_PATH.read_bytes())
    except OSError:
        return load_fixture(FALLBACK_CATEGORIES)


def _real_429_bytes() -> bytes:
    """The recorded 429 body when the shared data folder is present, else the same shape."""
    try:
        return REAL_429_PATH.read_bytes()
    except OSError:
        return _to_json(FALLBACK_429_BODY)


def _to_json(obj) -> bytes:
    """Compact JSON, like the real API sends."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class RecordedRequest:
    """One request as the fake saw it; tests assert on paging, headers, and timing."""

    method: str
    path: str  # e.g. "/api/v3/coins/markets"
    query: dict[str, str]  # first value of each parameter
    headers: dict[str, str]  # lower-case names
    at: float  # time.monotonic() when received
    endpoint: str  # "markets" | "global" | "market_chart" | "ping" | "category" | "unknown"


@dataclass
class Fault:
    """A queued misbehaviour; ``remaining`` counts down to 0 and then it is dropped."""

    kind: str
    endpoint: str
    page: int | None
    remaining: int
    retry_after: int | None
    hang_seconds: float
    status: int | None
    interval: float = 0.5  # trickle: seconds between bytes
    location: str | None = None  # redirect: Location header (None = the same URL again)
    size: int = DEFAULT_HUGE_BYTES  # huge / gzip_bomb: decoded body bytes
    chunked: bool = False  # huge: no Content-Length (Transfer-Encoding: chunked)
    rename: dict | None = None  # rename_fields: {old key: new key}

    def matches(self, endpoint: str, page: int) -> bool:
        return self.endpoint == endpoint and (self.page is None or self.page == page)


@dataclass
class Reply:
    """What a handler decided to send; faults may still alter it."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # Writes the whole answer itself (status line, headers, body) for stream faults.
    writer: Callable[[BaseHTTPRequestHandler], None] | None = None


class FakeCoinGecko:
    """In-process CoinGecko v3 stand-in bound to 127.0.0.1 on a free port."""

    def __init__(
        self,
        markets: list[dict] | None = None,
        global_body: dict | None = None,
        market_charts: dict[str, dict] | None = None,
        categories: dict[str, list[str]] | None = None,
        categories_body: list | dict | None = None,
        categories_list: list | dict | None = None,
    ):
        self._lock = threading.Lock()
        self._markets: list[dict] = list(markets) if markets is not None else _shared_fixture(DEFAULT_MARKETS)
        self._global: dict | None = global_body if global_body is not None else _shared_fixture(DEFAULT_GLOBAL)
        self._charts: dict[str, dict] = (
            dict(market_charts) if market_charts is not None else {"bitcoin": _shared_fixture(DEFAULT_BITCOIN_CHART)}
        )
        self._categories: dict[str, list[str]] = (
            dict(categories)
            if categories is not None
            else {**_shared_fixture(DEFAULT_CATEGORIES), **_shared_fixture(DEFAULT_SECTOR_MEMBERS)}
        )
        self._categories_body = categories_body if categories_body is not None else default_categories_body()
        self._categories_list = (
            categories_list if categories_list is not None else _shared_fixture(DEFAULT_CATEGORIES_LIST)
        )
        self._faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # wakes "hang" faults so stop() is instant
        self._open_sockets: set = set()

    # ---- lifecycle -------------------------------------------------------

    def start(self) -> FakeCoinGecko:
        """Bind to an OS-chosen port on loopback only and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="FakeCoinGecko", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections so no thread lingers."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            sockets = list(self._open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(2)  # socket.SHUT_RDWR
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(timeout=2)
        self._server = self._thread = None

    def __enter__(self) -> FakeCoinGecko:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeCoinGecko is not started; call start() first")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """Like https://api.coingecko.com/api/v3 (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    # ---- configuration ---------------------------------------------------

    def set_markets(self, records: list[dict]) -> None:
        """Replace the ranked coin list that /coins/markets pages through."""
        with self._lock:
            self._markets = list(records)

    def set_global(self, body: dict | None) -> None:
        """Replace the /global body; None makes /global answer 500."""
        with self._lock:
            self._global = body

    def set_categories(self, categories: dict[str, list[str]]) -> None:
        """Replace the category -> coin ids map that /coins/markets?category=... filters by."""
        with self._lock:
            self._categories = dict(categories)

    def set_categories_body(self, body: list | dict | None) -> None:
        """Replace the /coins/categories body; None makes it answer 500."""
        with self._lock:
            self._categories_body = body

    def set_categories_list(self, body: list | dict | None) -> None:
        """Replace the /coins/categories/list body; None makes it answer 500."""
        with self._lock:
            self._categories_list = body

    def set_market_chart(self, coin_id: str, body: dict | None) -> None:
        """Add/replace (or with None remove) the market_chart body for one coin."""
        with self._lock:
            if body is None:
                self._charts.pop(coin_id, None)
            else:
                self._charts[coin_id] = body

    def add_fault(
        self,
        kind: str,
        *,
        endpoint: str = "markets",
        page: int | None = None,
        times: int = 1,
        retry_after: int | None = None,
        hang_seconds: float = 5.0,
        status: int | None = None,
        interval: float = 0.5,
        location: str | None = None,
        size: int = DEFAULT_HUGE_BYTES,
        chunked: bool = False,
        rename: dict | None = None,
    ) -> None:
        """Queue a fault for the next ``times`` requests to ``endpoint`` (and ``page``, if given).

        kinds: "429", "403", "500"/"503"/any 3-digit status, "error" (needs ``status=``),
        "hang", "truncated", and markets-only "missing_fields", "numbers_as_strings",
        "nulls", "negative", "duplicate_ids". ``status=`` overrides the code of error kinds.

        Hostile server (any endpoint unless noted):

        * "trickle": the real body one byte every ``interval`` seconds (headers at once);
          "trickle_headers": the status line and headers that slowly, then the body.
        * "drop": half the body (Content-Length says all of it), then the connection is closed;
          "drop_chunked": the same with Transfer-Encoding: chunked; "reset": half, then a TCP RST.
        * "redirect": 302 to ``location`` (default: the same URL again, i.e. the same host).
        * "huge": the real body padded with JSON whitespace to ``size`` bytes (valid JSON),
          with Content-Length, or chunked without it (``chunked=True``).
        * "gzip_bomb": that padded body gzip-compressed (Content-Encoding: gzip): ~1000x smaller on the wire.
        * "rename_fields": keys renamed per ``rename`` (markets records, /coins/categories(/list) rows,
          or /global's data); the markets shape faults apply to the categories endpoints too;
          "wrong_type": an object instead of the markets array (an array instead of /global's object);
          markets-only "empty_list", "single_record" (the page's first record only), "repeat_one"
          (the page's first record, page-size times), "array_of_strings" (the ids as strings).
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")
        is_status = kind.isdigit() and len(kind) == 3
        if not (is_status or kind in DATA_FAULTS | TRANSPORT_FAULTS | ERROR_FAULTS | HOSTILE_FAULTS):
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind == "error" and status is None:
            raise ValueError('fault kind "error" needs status=')
        if kind in DATA_FAULTS and endpoint != "markets":
            raise ValueError(f"fault {kind!r} only applies to the markets endpoint")
        global_ok = endpoint == "global" and kind in GLOBAL_SHAPE_FAULTS
        global_ok = global_ok or endpoint in ("categories", "categories_list")  # arrays like the markets pages
        if kind in SHAPE_FAULTS and endpoint != "markets" and not global_ok:
            raise ValueError(f"fault {kind!r} does not apply to the {endpoint} endpoint")
        if times < 1:
            raise ValueError("times must be >= 1")
        if kind in ("trickle", "trickle_headers") and interval <= 0:
            raise ValueError("interval must be > 0")
        with self._lock:
            self._faults.append(
                Fault(
                    kind,
                    endpoint,
                    page,
                    times,
                    retry_after,
                    hang_seconds,
                    status,
                    interval=interval,
                    location=location,
                    size=size,
                    chunked=chunked,
                    rename=dict(rename) if rename else None,
                )
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many fault applications are still queued (0 = all used up)."""
        with self._lock:
            return sum(f.remaining for f in self._faults)

    # ---- inspection ------------------------------------------------------

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        """Recorded requests for one endpoint, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def calls_to(self, endpoint: str) -> int:
        """Number of requests made to one endpoint."""
        return len(self.requests_to(endpoint))

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # ---- request handling (called from server threads) --------------------

    def _record(self, handler: BaseHTTPRequestHandler) -> tuple[RecordedRequest, str]:
        split = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        endpoint, coin_id = _classify(split.path)
        if endpoint == "markets" and "category" in query:
            endpoint = "category"
        rec = RecordedRequest(handler.command, split.path, query, headers, time.monotonic(), endpoint)
        with self._lock:
            self.requests.append(rec)
        return rec, coin_id

    def _take_fault(self, endpoint: str, page: int) -> Fault | None:
        """Pop one use of the first queued fault matching this request (FIFO)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(endpoint, page):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> Reply | None:
        """Route, apply the fault (if any), and return the reply; None = connection dropped."""
        rec, coin_id = self._record(handler)
        page = _int_or(rec.query.get("page"), 1)
        fault = self._take_fault(rec.endpoint, page) if rec.endpoint in ENDPOINTS else None

        if fault is not None and (error := _error_reply(fault)) is not None:
            return error
        if fault is not None and fault.kind == "hang":
            if self._stopping.wait(fault.hang_seconds):
                return None  # server is stopping; the client gave up long ago
        if fault is not None and fault.kind == "redirect":
            location = fault.location or f"http://127.0.0.1:{self.port}{handler.path}"
            return Reply(fault.status or 302, b"", {"Location": location})
        data_fault = fault.kind if fault is not None and fault.kind in DATA_FAULTS else None

        if rec.endpoint in ("markets", "category"):
            reply = self._markets_reply(rec.query, data_fault)
            if fault is not None and fault.kind in SHAPE_FAULTS and reply.status == 200:
                reply.body = _to_json(_reshape_markets(json.loads(reply.body), fault))
        elif rec.endpoint == "global":
            reply = self._global_reply()
            if fault is not None and fault.kind in GLOBAL_SHAPE_FAULTS and reply.status == 200:
                reply.body = _to_json(_reshape_global(json.loads(reply.body), fault))
        elif rec.endpoint == "market_chart":
            reply = self._chart_reply(coin_id, rec.query)
        elif rec.endpoint in ("categories", "categories_list"):
            with self._lock:
                body = self._categories_body if rec.endpoint == "categories" else self._categories_list
            reply = (
                Reply(200, _to_json(body))
                if body is not None
                else Reply(500, _to_json({"error": "Internal server error (fake: categories not configured)"}))
            )
            if fault is not None and fault.kind in SHAPE_FAULTS and reply.status == 200 and isinstance(body, list):
                reply.body = _to_json(_reshape_markets(json.loads(reply.body), fault))
        elif rec.endpoint == "ping":
            reply = Reply(200, _to_json({"gecko_says": "(V3) To the Moon!"}))
        else:
            reply = Reply(404, _to_json({"error": "Incorrect path. Please check https://www.coingecko.com/api/"}))

        if fault is not None and fault.kind == "truncated":
            reply.body = reply.body[: len(reply.body) // 2]
        if fault is not None and fault.kind in STREAM_FAULTS:
            reply.writer = _stream_writer(fault, reply, self._stopping)
        return reply

    def _markets_reply(self, query: dict[str, str], data_fault: str | None) -> Reply:
        if not query.get("vs_currency"):
            return Reply(400, _to_json({"error": "Missing parameter vs_currency"}))
        per_page = _int_or(query.get("per_page"), DEFAULT_PER_PAGE)
        page = _int_or(query.get("page"), 1)
        if per_page is None or page is None:
            return Reply(400, _to_json({"error": "Invalid value for per_page or page"}))
        per_page = min(max(per_page, 1), MAX_PER_PAGE)
        page = max(page, 1)
        with self._lock:
            records = self._markets
            members = self._categories.get(query["category"]) if "category" in query else None
        if "category" in query:
            if members is None:
                return Reply(404, _to_json({"error": "category not found"}))
            wanted = set(members)
            records = [r for r in records if r.get("id") in wanted]
        rows = _page_slice(records, per_page, page)
        if data_fault == "duplicate_ids":
            rows = _with_duplicates(records, rows, per_page, page)
        keep_sparkline = query.get("sparkline", "false").lower() == "true"
        periods = {p.strip() for p in query.get("price_change_percentage", "").split(",") if p.strip()}
        rows = [_shape_record(r, keep_sparkline, periods) for r in rows]
        if data_fault and data_fault != "duplicate_ids":
            DATA_FAULT_MUTATORS[data_fault](rows)
        return Reply(200, _to_json(rows))

    def _global_reply(self) -> Reply:
        with self._lock:
            body = self._global
        if body is None:
            return Reply(500, _to_json({"error": "Internal server error (fake: global not configured)"}))
        return Reply(200, _to_json(body))

    def _chart_reply(self, coin_id: str, query: dict[str, str]) -> Reply:
        for param in ("vs_currency", "days"):
            if not query.get(param):
                return Reply(400, _to_json({"error": f"Missing parameter {param}"}))
        with self._lock:
            body = self._charts.get(coin_id)
        if body is None:
            return Reply(404, _to_json({"error": "coin not found"}))
        return Reply(200, _to_json(_trim_chart(body, query["days"])))


# ---- pure helpers ---------------------------------------------------------


def _classify(path: str) -> tuple[str, str]:
    """Map a URL path to (endpoint name, coin id for market_chart)."""
    path = path.rstrip("/")
    if path == f"{API_PREFIX}/coins/markets":
        return "markets", ""
    if path == f"{API_PREFIX}/global":
        return "global", ""
    if path == f"{API_PREFIX}/ping":
        return "ping", ""
    if path == f"{API_PREFIX}/coins/categories":
        return "categories", ""
    if path == f"{API_PREFIX}/coins/categories/list":
        return "categories_list", ""
    if m := _CHART_PATH.match(path):
        return "market_chart", m.group(1)
    return "unknown", ""


def _int_or(raw: str | None, default: int) -> int | None:
    """Parse an integer query value; missing -> default, garbage -> None."""
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return None


def _page_slice(records: list[dict], per_page: int, page: int) -> list[dict]:
    start = (page - 1) * per_page
    return records[start : start + per_page]


def _with_duplicates(records: list[dict], rows: list[dict], per_page: int, page: int) -> list[dict]:
    """Rankings shifting mid-paging: the previous page's last 2 coins show up again on this page."""
    if not rows:
        return rows
    if page == 1:
        return rows + rows[:1]
    previous = _page_slice(records, per_page, page - 1)
    return previous[-2:] + rows


def _shape_record(record: dict, keep_sparkline: bool, periods: set[str]) -> dict:
    """Shallow copy holding only what the query asked for (sparkline, *_in_currency periods)."""
    out = {}
    for key, value in record.items():
        if key == "sparkline_in_7d" and not keep_sparkline:
            continue
        m = _PCT_KEY.match(key)
        if m and m.group(1) not in periods:
            continue
        out[key] = value
    return out


def _trim_chart(body: dict, days: str) -> dict:
    """days=N keeps points within N days of the last price point; 'max' keeps all."""
    try:
        n_days = float(days)
    except ValueError:
        return body
    prices = body.get("prices") or []
    if not prices:
        return body
    cutoff = prices[-1][0] - n_days * DAY_MS
    return {
        key: ([p for p in series if p[0] >= cutoff] if isinstance(series, list) else series)
        for key, series in body.items()
    }


def _error_reply(fault: Fault) -> Reply | None:
    """Reply for error-status faults; None when the fault is not an error kind."""
    if fault.kind == "429":
        status, body = fault.status or 429, _real_429_bytes()
    elif fault.kind == "403":
        status, body = fault.status or 403, (FIXTURES_DIR / ERROR_403).read_bytes()
    elif fault.kind == "error" or fault.kind.isdigit():
        status = fault.status or int(fault.kind)
        body = _to_json({"status": {"error_code": status, "error_message": f"fake CoinGecko error {status}"}})
    else:
        return None
    headers = {}
    if fault.kind == "429" or fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
    return Reply(status, body, headers)


def _missing_fields(rows: list[dict]) -> None:
    if len(rows) > 0:
        rows[0].pop("id", None)
    if len(rows) > 1:
        rows[1].pop("current_price", None)
        rows[1].pop("market_cap", None)


def _numbers_as_strings(rows: list[dict]) -> None:
    for row in rows:
        for key in ("current_price", "market_cap", "total_volume"):
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = str(value)
    if len(rows) > 2:
        rows[2]["total_volume"] = "n/a"


def _nulls(rows: list[dict]) -> None:
    for row in rows[:3]:
        for key in ("market_cap", "total_volume", "price_change_percentage_24h", "high_24h", "low_24h"):
            row[key] = None


def _negative(rows: list[dict]) -> None:
    if len(rows) > 0:
        rows[0]["current_price"] = -1.0
    if len(rows) > 1:
        rows[1]["total_volume"] = -5


DATA_FAULT_MUTATORS = {
    "missing_fields": _missing_fields,
    "numbers_as_strings": _numbers_as_strings,
    "nulls": _nulls,
    "negative": _negative,
}


def _reshape_markets(rows: list[dict], fault: Fault):
    """A well-formed /coins/markets body of the wrong shape (schema drift)."""
    if fault.kind == "rename_fields":
        renames = fault.rename or DEFAULT_RENAMES["markets"]
        return [{renames.get(k, k): v for k, v in row.items()} for row in rows]
    if fault.kind == "empty_list":
        return []
    if fault.kind == "single_record":
        return rows[:1]
    if fault.kind == "repeat_one":
        return [dict(rows[0]) for _ in rows] if rows else rows
    if fault.kind == "wrong_type":
        return {"coins": rows}
    if fault.kind == "array_of_strings":
        return [str(row.get("id")) for row in rows]
    raise ValueError(fault.kind)


def _reshape_global(body, fault: Fault):
    if fault.kind == "wrong_type":
        return [body]
    renames = fault.rename or DEFAULT_RENAMES["global"]
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return body
    return {**body, "data": {renames.get(k, k): v for k, v in data.items()}}


def _padded(body: bytes, size: int) -> tuple[bytes, int, bytes]:
    """(head, spaces, tail): ``body`` with JSON whitespace inserted after its first byte, ``size`` bytes in all."""
    spaces = max(0, size - len(body))
    return body[:1], spaces, body[1:]


@lru_cache(maxsize=4)
def _gzip_bomb(body: bytes, size: int) -> bytes:
    """gzip of the padded body: whitespace compresses ~1000:1, so a few MB on the wire decode to GBs."""
    head, spaces, tail = _padded(body, size)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    out = [comp.compress(head)]
    block = b" " * (1 << 20)
    while spaces > 0:
        n = min(spaces, len(block))
        out.append(comp.compress(block[:n]))
        spaces -= n
    out.append(comp.compress(tail))
    out.append(comp.flush())
    return b"".join(out)


def _stream_writer(fault: Fault, reply: Reply, stopping: threading.Event) -> Callable[[BaseHTTPRequestHandler], None]:
    """A function that writes the whole misbehaving answer to the handler's socket."""
    body = reply.body

    def head(handler, extra: dict[str, str]) -> bytes:
        lines = [
            f"HTTP/1.1 {reply.status} {'OK' if reply.status == 200 else 'Fake'}",
            "Server: FakeCoinGecko/1.0",
            "Content-Type: application/json",
            "Connection: close",
        ]
        lines += [f"{k}: {v}" for k, v in {**reply.headers, **extra}.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def trickle(handler, data: bytes) -> bool:
        for i in range(len(data)):
            handler.wfile.write(data[i : i + 1])
            if stopping.wait(fault.interval):
                return False
        return True

    def write(handler):
        out = handler.wfile
        kind = fault.kind
        if kind == "trickle":
            out.write(head(handler, {"Content-Length": str(len(body))}))
            trickle(handler, body)
        elif kind == "trickle_headers":
            if trickle(handler, head(handler, {"Content-Length": str(len(body))})):
                out.write(body)
        elif kind in ("drop", "reset"):
            out.write(head(handler, {"Content-Length": str(len(body))}))
            out.write(body[: len(body) // 2])
            if kind == "reset":  # SO_LINGER 0: close() sends RST instead of FIN
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                handler.connection.close()
            else:
                handler.connection.shutdown(socket.SHUT_RDWR)
        elif kind == "drop_chunked":
            out.write(head(handler, {"Transfer-Encoding": "chunked"}))
            half = body[: len(body) // 2]
            out.write(f"{len(half):x}\r\n".encode() + half + b"\r\n")
            out.write(f"{len(body) - len(half):x}\r\n".encode() + body[len(half) : len(half) + 10])
            handler.connection.shutdown(socket.SHUT_RDWR)
        elif kind == "huge":
            first, spaces, tail = _padded(body, fault.size)
            total = len(first) + spaces + len(tail)
            if fault.chunked:
                out.write(head(handler, {"Transfer-Encoding": "chunked"}))
                send = lambda data: out.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")  # noqa: E731
            else:
                out.write(head(handler, {"Content-Length": str(total)}))
                send = out.write
            send(first)
            block = b" " * 65536
            while spaces > 0 and not stopping.is_set():
                n = min(spaces, len(block))
                send(block[:n])
                spaces -= n
            send(tail)
            if fault.chunked:
                out.write(b"0\r\n\r\n")
        elif kind == "gzip_bomb":
            packed = _gzip_bomb(body, fault.size)
            out.write(head(handler, {"Content-Length": str(len(packed)), "Content-Encoding": "gzip"}))
            out.write(packed)
        else:
            raise ValueError(kind)

    return write


def _make_handler(fake: FakeCoinGecko) -> type[BaseHTTPRequestHandler]:
    """Handler class bound to one fake instance (http.server wants a class, not an object)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind requests.Session
        server_version = "FakeCoinGecko/1.0"

        def setup(self):
            super().setup()
            with fake._lock:
                fake._open_sockets.add(self.connection)

        def finish(self):
            try:
                super().finish()
            finally:
                with fake._lock:
                    fake._open_sockets.discard(self.connection)

        def do_GET(self):
            reply = fake._handle(self)
            if reply is None:
                self.close_connection = True
                return
            if reply.writer is not None:  # a misbehaving answer: written raw, then the connection closes
                self.close_connection = True
                try:
                    reply.writer(self)
                except OSError:
                    pass  # the client gave up, or the fault closed the socket itself
                return
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # client timed out / hung up: expected in hang tests

        def log_message(self, format, *args):  # noqa: A002 - keep pytest output clean
            pass

    return Handler


# ---- the whole market -------------------------------------------------------

#: Market-cap step between neighbouring synthetic coins (0.999: the 17,000th coin is worth ~$5).
WHOLE_MARKET_DECAY = 0.999
#: Money fields of a /coins/markets record, scaled with the price (percentages, supplies and dates are kept).
_MONEY_FIELDS = (
    "current_price",
    "market_cap",
    "fully_diluted_valuation",
    "total_volume",
    "high_24h",
    "low_24h",
    "price_change_24h",
    "market_cap_change_24h",
    "ath",
    "atl",
)


def whole_market(coins: int, base: list[dict] | None = None) -> list[dict]:
    """A /coins/markets list of ``coins`` coins for whole-market sweeps (``set_markets(whole_market(1630))``
    serves 6 full pages of 250 and a short seventh).

    The recorded bodies hold 250 coins; the real market ~17,000. Beyond the real records (``base``,
    default the 2022-10-16 body, served first and unchanged) every coin is a deterministic variation
    of one of them: record ``p % 250`` copied, its id, symbol and name suffixed with the copy number
    (``bitcoin-m3``, ``BTC3``, ``Bitcoin M3``), its rank ``p + 1``, and every money field scaled
    so its market cap is the previous coin's times WHOLE_MARKET_DECAY. Market cap = price x
    circulating supply and ranks follow market cap, as in a real body, down to micro-caps of a few
    dollars; percentages, supplies, dates, NULLs and the sparkline's shape stay the real record's.
    No randomness: the same ``coins`` gives the same list. See PROVENANCE.md of the fixtures.
    """
    real = sorted(
        base if base is not None else _shared_fixture(DEFAULT_MARKETS),
        key=lambda r: (r.get("market_cap_rank") is None, r.get("market_cap_rank") or 0),
    )
    out = [dict(r) for r in real[:coins]]
    cap = next((r["market_cap"] for r in reversed(real) if r.get("market_cap")), 1.0e8)
    for position in range(len(out), coins):
        template = real[position % len(real)]
        copy = position // len(real)
        cap *= WHOLE_MARKET_DECAY
        factor = cap / template["market_cap"] if template.get("market_cap") else cap / 1.0e8
        record = dict(template)
        for key in _MONEY_FIELDS:
            value = template.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                record[key] = value * factor
        if record.get("market_cap") is not None:
            record["market_cap"] = cap
        sparkline = template.get("sparkline_in_7d")
        if isinstance(sparkline, dict) and isinstance(sparkline.get("price"), list):
            record["sparkline_in_7d"] = {
                "price": [p * factor if isinstance(p, (int, float)) else p for p in sparkline["price"]]
            }
        record["id"] = f"{template['id']}-m{copy}"
        record["symbol"] = f"{template.get('symbol') or ''}{copy}"
        record["name"] = f"{template.get('name') or ''} M{copy}"
        record["market_cap_rank"] = position + 1
        out.append(record)
    return out
