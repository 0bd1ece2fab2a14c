"""HTTP session for CoinGecko: auth header, pacing, retries, deadlines, a size cap, safe redirects.

Every complete answer, failed or not, is handed to ``on_response`` so bronze can
keep the body exactly as received. The API key travels only in a header: it is
never part of a URL, a parameter dict, a log line or a bronze file, and it never
leaves for another host (redirects are followed by hand, same origin only).

A hostile or broken server cannot hold a run: each request has a wall-clock
budget (COINGECKO_TIMEOUT_SECONDS, capped by what is left of the run's
deadline) enforced while the body streams in, and a cap on the decoded body
(COINGECKO_MAX_RESPONSE_BYTES) stops a huge body or a gzip bomb before it is
held in memory. Transport failures of any kind are retried within the deadline
and end as one-line :class:`SourceError` s.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
import urllib3.response
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pipeline.budget import note_call
from pipeline.errors import ConfigError, RateLimited, ResponseTooLarge, SchemaDrift, SourceError
from pipeline.providers.base import Body
from pipeline.providers.coingecko.settings import (
    DEFAULT_MAX_RESPONSE_BYTES,
    MAX_REDIRECTS,
    MAX_RETRY_AFTER_SECONDS,
    READ_CHUNK_BYTES,
    RETRY_STATUSES,
)

log = logging.getLogger(__name__)

#: requests errors that mean the request itself cannot be built (code or configuration), not the network.
_BUILD_ERRORS = (
    requests.exceptions.URLRequired,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidJSONError,
    requests.exceptions.StreamConsumedError,
    requests.exceptions.UnrewindableBodyError,
)
#: Everything the network can throw at us, from requests, urllib3 (raw body reads) or the socket.
_TRANSPORT_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)

_DECODE_ERRORS = (urllib3.exceptions.DecodeError, requests.exceptions.ContentDecodingError)
_TIMEOUT_ERRORS = (urllib3.exceptions.TimeoutError, requests.Timeout, TimeoutError)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_KEPT_HEADERS = ("content-type", "retry-after", "date", "location")


#: CoinGecko's answers are the neutral :class:`pipeline.providers.base.Body` (the old name stays for callers).
ApiResponse = Body


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]


def _error_message(body: bytes) -> str:
    """The API's own words from an error body, if it has any, on one line."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _one_line(body[:2000].decode("utf-8", "replace")) or "(empty body)"
    if isinstance(data, dict):
        status = data.get("status")
        if isinstance(status, dict) and status.get("error_message"):
            return _one_line(str(status["error_message"]))
        for key in ("error", "message"):
            if data.get(key):
                return _one_line(str(data[key]))
    return _one_line(str(data))


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with default ports filled in: what "the same host" means for the key."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def _describe_origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url[:100]


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error under requests' and urllib3's wrappers (e.g. IncompleteRead, ConnectionResetError)."""
    seen = {id(exc)}
    while True:
        nxt = getattr(exc, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = next((a for a in reversed(exc.args) if isinstance(a, BaseException)), None)
        if nxt is None:
            nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def _error_name(exc: BaseException) -> str:
    root = _root_cause(exc)
    name = type(exc).__name__
    return name if root is exc else f"{name}: {type(root).__name__}"


class _Retryable(Exception):
    """One attempt failed in a way worth another try (timeouts, dropped connections)."""


class _Watch:
    """Cuts one request's socket when its wall-clock budget runs out.

    A server that trickles its headers or body a byte at a time never trips a
    per-read timeout; shutting the socket down from a timer thread ends any read
    that is blocked on it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._done = False
        self.fired = False

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.fired and not self._done:
                self._cut()

    def detach(self) -> None:
        with self._lock:
            self._sock = None

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            self._cut()

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._sock = None

    def _cut(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


_current = threading.local()


def _watched_response(connection: HTTPConnection) -> None:
    """Hand the connection's socket to the calling thread's :class:`_Watch` before the answer is read."""
    watch = getattr(_current, "watch", None)
    sock = getattr(connection, "sock", None)
    if watch is not None and sock is not None:
        watch.attach(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3's own
        _watched_response(self)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3's own
        _watched_response(self)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections report their socket to the request's watch."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def _socket_of(raw: object) -> socket.socket | None:
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    return getattr(connection, "sock", None)


class CoinGeckoClient:
    """Paced, retrying GET against one CoinGecko base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        api_key_header: str = "x-cg-demo-api-key",
        calls_per_minute: float = 25.0,
        timeout_seconds: float = 20.0,
        deadline_seconds: float = 300.0,
        max_retries: int = 5,
        backoff_base_seconds: float = 2.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        min_coverage: float = 0.9,
        on_response: Callable[[ApiResponse], None] | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        """
        Args:
            timeout_seconds: wall-clock budget of one request, headers and body together
                (and of each connect or socket read within it).
            deadline_seconds: budget of all requests this client makes, waits included.
            max_response_bytes: largest decoded body accepted (ResponseTooLarge beyond it).
            min_coverage: share of the requested coins a markets fetch must return
                (read by :func:`pipeline.providers.coingecko.fetch_markets`).
            clock: the deadline's clock (tests fake it); socket budgets always use real time.
        """
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        if session is None:
            session = requests.Session()
            for prefix in ("http://", "https://"):
                session.mount(prefix, _WatchedAdapter())
        self._session = session
        self._session.headers.update({"Accept": "application/json", "User-Agent": "crypto-market-analytics/1.0"})
        if api_key:
            self._session.headers[api_key_header] = api_key
        self._min_interval = 60.0 / calls_per_minute if calls_per_minute > 0 else 0.0
        self._timeout = timeout_seconds
        self._max_retries = max_retries
        self._backoff = backoff_base_seconds
        self._max_bytes = max_response_bytes
        self.min_coverage = min_coverage
        self._on_response = on_response
        self._sleep = sleep
        self._clock = clock
        self._deadline = clock() + deadline_seconds
        self._last_call: float | None = None

    def remaining(self) -> float:
        return self._deadline - self._clock()

    def _pace(self) -> None:
        if self._last_call is not None and self._min_interval:
            wait = self._last_call + self._min_interval - self._clock()
            if wait > 0:
                self._wait(wait, "pacing")
        self._last_call = self._clock()

    def _wait(self, seconds: float, why: str) -> None:
        if seconds > self.remaining():
            raise SourceError(
                f"gave up: {why} needs {seconds:.0f}s but the fetch deadline has {max(0.0, self.remaining()):.0f}s left"
            )
        self._sleep(seconds)

    def get(
        self, endpoint: str, path: str, params: dict[str, Any], *, page: int | None = None, key: str | None = None
    ) -> ApiResponse:
        """GET ``path`` until a 200 with a JSON body, a final error, or the deadline.

        Retries 408/429/5xx, timeouts (a request over its wall-clock budget
        included), dropped connections, undecodable and truncated bodies with
        exponential backoff; a ``Retry-After`` header sets the wait instead.
        A body over the size cap, a redirect to another host and other 4xx are
        final at once.
        """
        last_problem = "no attempt made"
        for attempt in range(1, self._max_retries + 2):
            if self.remaining() <= 0:
                raise SourceError(f"{path}: fetch deadline passed after {attempt - 1} attempts ({last_problem})")
            self._pace()
            backoff = self._backoff * 2 ** (attempt - 1)
            try:
                result, refused = self._attempt(endpoint, path, params, page, attempt, key)
            except _Retryable as exc:
                last_problem, wait = str(exc), backoff
            else:
                if self._on_response:
                    self._on_response(result)
                if refused:
                    raise SourceError(f"{path}: {refused}")
                if result.status == 200:
                    try:
                        result.json()
                    except SchemaDrift as exc:
                        last_problem, wait = str(exc), backoff
                    else:
                        return result
                elif result.status in RETRY_STATUSES:
                    last_problem = f"HTTP {result.status}: {_error_message(result.body)}"
                    retry_after = parse_retry_after(result.headers.get("retry-after"))
                    wait = retry_after if retry_after is not None else backoff
                    if result.status == 429 and (wait > MAX_RETRY_AFTER_SECONDS or wait > self.remaining()):
                        raise RateLimited(
                            f"{path}: rate limited by CoinGecko, asked to wait {wait:.0f}s "
                            f"({max(0.0, self.remaining()):.0f}s left before the deadline)"
                        )
                else:
                    raise SourceError(f"{path}: HTTP {result.status}: {_error_message(result.body)}")
            if self.remaining() <= 0:
                raise SourceError(f"{path}: fetch deadline passed after {attempt} attempts ({last_problem})")
            if attempt > self._max_retries:
                break
            # INFO, not WARNING: a failing CLI run prints one line; --verbose shows every attempt.
            log.info("%s attempt %d failed (%s); retrying in %.1fs", path, attempt, last_problem, wait)
            self._wait(wait, f"retry of {path}")
        if "not valid JSON" in last_problem:
            raise SchemaDrift(f"{path}: {last_problem}")
        raise SourceError(f"{path}: failed after {self._max_retries + 1} attempts: {last_problem}")

    # ---- one attempt -------------------------------------------------------------------

    def _attempt(
        self, endpoint: str, path: str, params: dict[str, Any], page: int | None, attempt: int, key: str | None = None
    ) -> tuple[ApiResponse, str | None]:
        """One request within its wall-clock budget, following same-origin redirects by hand.

        Returns the final answer and, when it is a redirect we refused, why.
        Raises _Retryable for transport trouble, ResponseTooLarge, ConfigError.
        """
        budget = max(0.001, min(self._timeout, self.remaining()))
        request_end = time.monotonic() + budget
        watch = _Watch()
        timer = threading.Timer(budget, watch.fire)
        timer.daemon = True
        timer.start()
        _current.watch = watch
        url = self.base_url + path
        query: dict[str, Any] | None = dict(params)
        try:
            for _hop in range(MAX_REDIRECTS + 1):
                try:
                    status, headers, body, final_url = self._exchange(path, url, query, request_end, budget, watch)
                except ConfigError:  # never sent
                    raise
                except BaseException:
                    note_call(path, params, ok=False)  # the API budget counts every request sent
                    raise
                note_call(path, params, ok=status == 200)
                result = ApiResponse(
                    endpoint=endpoint,
                    path=path,
                    params=dict(params),
                    status=status,
                    body=body,
                    fetched_at=datetime.now(UTC).replace(tzinfo=None),
                    attempt=attempt,
                    page=page,
                    key=key,
                    headers={k.lower(): v for k, v in headers.items() if k.lower() in _KEPT_HEADERS},
                )
                location = headers.get("Location")
                if status not in _REDIRECT_STATUSES or location is None:
                    return result, None
                target = urljoin(final_url, location.strip())
                if _origin(target) != self._origin:
                    return result, (
                        f"HTTP {status} redirect to another host ({_describe_origin(target)}) "
                        f"not followed: the API key was not sent there"
                    )
                url, query = target, None
            return result, f"more than {MAX_REDIRECTS} redirects (last to {_describe_origin(target)})"
        finally:
            _current.watch = None
            watch.finish()
            timer.cancel()

    def _exchange(
        self, path: str, url: str, query: dict[str, Any] | None, request_end: float, budget: float, watch: _Watch
    ) -> tuple[int, Mapping[str, str], bytes, str]:
        """Send one GET and read its body within the request's budget: (status, headers, body, url).

        ``headers`` is case-insensitive.
        """
        left = request_end - time.monotonic()
        if left <= 0:
            raise _Retryable(f"timed out: no complete answer within {budget:.3g}s")
        try:
            resp = self._session.get(
                url, params=query, timeout=(min(5.0, left), left), stream=True, allow_redirects=False
            )
        except _BUILD_ERRORS as exc:
            what = "COINGECKO_API_KEY" if isinstance(exc, requests.exceptions.InvalidHeader) else "COINGECKO_BASE_URL"
            raise ConfigError(
                f"{path}: cannot build a request to {self.base_url} ({type(exc).__name__}); check {what}"
            ) from None
        except _TRANSPORT_ERRORS as exc:
            if watch.fired or time.monotonic() >= request_end:
                raise _Retryable(f"timed out: no complete answer within {budget:.3g}s") from exc
            if isinstance(exc, requests.ConnectTimeout):
                raise _Retryable(f"cannot connect to {self.base_url}: timed out") from exc
            if isinstance(exc, requests.Timeout):
                raise _Retryable(f"timed out: no answer within {left:.3g}s") from exc
            root = _root_cause(exc)
            if isinstance(root, (urllib3.exceptions.NewConnectionError, ConnectionRefusedError, socket.gaierror)):
                raise _Retryable(f"cannot connect to {self.base_url} ({_error_name(exc)})") from exc
            raise _Retryable(
                f"connection to {_describe_origin(url)} failed before the answer ({_error_name(exc)})"
            ) from exc
        try:
            body = self._read_body(resp, path, request_end, budget, watch)
            return resp.status_code, resp.headers, body, resp.url or url
        finally:
            watch.detach()
            resp.close()

    def _too_large(self, path: str, what: str) -> ResponseTooLarge:
        return ResponseTooLarge(
            f"{path}: response too large: {what} over the {self._max_bytes:,} byte cap "
            f"(COINGECKO_MAX_RESPONSE_BYTES); not kept, not retried"
        )

    def _read_body(self, resp: requests.Response, path: str, request_end: float, budget: float, watch: _Watch) -> bytes:
        """The decoded body, read in chunks: never past the size cap, never past the request's budget."""
        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self._max_bytes:
            raise self._too_large(path, f"Content-Length {int(declared):,} bytes is")
        raw = resp.raw
        body = bytearray()
        try:
            if not isinstance(raw, urllib3.response.BaseHTTPResponse):  # another adapter's response (tests)
                chunks = resp.iter_content(READ_CHUNK_BYTES) if raw is not None else iter([resp.content or b""])
                for chunk in chunks:
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise self._too_large(path, f"the body ({len(body):,} bytes read so far) is")
                    if time.monotonic() > request_end:
                        raise _Retryable(
                            f"timed out: body not complete within {budget:.3g}s ({len(body):,} bytes received)"
                        )
                return bytes(body)
            sock = _socket_of(raw)
            while True:
                left = request_end - time.monotonic()
                if left <= 0:
                    raise _Retryable(
                        f"timed out: body not complete within {budget:.3g}s ({len(body):,} bytes received)"
                    )
                if sock is not None:
                    sock.settimeout(left)  # this socket read may not outlast the request's budget
                chunk = raw.read1(READ_CHUNK_BYTES, decode_content=True)
                if not chunk:
                    break
                body += chunk
                if len(body) > self._max_bytes:
                    raise self._too_large(path, f"the decoded body ({len(body):,} bytes read so far) is")
        except (_Retryable, ResponseTooLarge):
            raise
        except _TRANSPORT_ERRORS as exc:
            if watch.fired or time.monotonic() >= request_end:
                raise _Retryable(
                    f"timed out: body not complete within {budget:.3g}s ({len(body):,} bytes received)"
                ) from exc
            root = _root_cause(exc)
            if isinstance(exc, _DECODE_ERRORS) or isinstance(root, _DECODE_ERRORS):
                what = "body could not be decoded"
            elif isinstance(exc, _TIMEOUT_ERRORS) or isinstance(root, _TIMEOUT_ERRORS):
                what = "timed out mid-body"
            else:
                what = "connection dropped mid-body"
            raise _Retryable(f"{what} after {len(body):,} bytes ({_error_name(exc)})") from exc
        if watch.fired:  # the watch closed the socket: an early end of body is not the end of the answer
            raise _Retryable(f"timed out: body not complete within {budget:.3g}s ({len(body):,} bytes received)")
        return bytes(body)
