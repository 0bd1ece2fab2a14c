"""HTTP session for CoinGecko: auth header, pacing, retries, one overall deadline.

Every attempt, failed or not, is handed to ``on_response`` so bronze can keep
the body exactly as received. The API key travels only in a header: it is never
part of a URL, a parameter dict, a log line or a bronze file.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import requests

from pipeline.errors import RateLimited, SchemaDrift, SourceError
from pipeline.sources.coingecko.settings import MAX_RETRY_AFTER_SECONDS, RETRY_STATUSES

log = logging.getLogger(__name__)


@dataclass
class ApiResponse:
    """One HTTP answer, as received."""

    endpoint: str
    path: str
    params: dict
    status: int
    body: bytes
    fetched_at: datetime
    attempt: int
    page: int | None = None
    headers: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self):
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SchemaDrift(
                f"{self.path} page {self.page or 1}: body is not valid JSON ({len(self.body)} bytes, {exc})"
            ) from exc


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
        on_response: Callable[[ApiResponse], None] | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.base_url = base_url.rstrip("/")
        self._session = session or requests.Session()
        self._session.headers.update({"Accept": "application/json", "User-Agent": "crypto-market-analytics/1.0"})
        if api_key:
            self._session.headers[api_key_header] = api_key
        self._min_interval = 60.0 / calls_per_minute if calls_per_minute > 0 else 0.0
        self._timeout = timeout_seconds
        self._max_retries = max_retries
        self._backoff = backoff_base_seconds
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
            raise SourceError(f"gave up: {why} needs {seconds:.0f}s but the fetch deadline has "
                              f"{max(0.0, self.remaining()):.0f}s left")
        self._sleep(seconds)

    def get(self, endpoint: str, path: str, params: dict, *, page: int | None = None) -> ApiResponse:
        """GET ``path`` until a 200 with a JSON body, a final error, or the deadline.

        Retries 408/429/5xx, timeouts, dropped connections and truncated bodies
        with exponential backoff; a ``Retry-After`` header sets the wait instead.
        """
        url = self.base_url + path
        last_problem = "no attempt made"
        for attempt in range(1, self._max_retries + 2):
            if self.remaining() <= 0:
                raise SourceError(f"{path}: fetch deadline passed after {attempt - 1} attempts ({last_problem})")
            self._pace()
            try:
                resp = self._session.get(url, params=params, timeout=(min(5.0, self._timeout), self._timeout))
            except requests.Timeout:
                last_problem = f"timed out after {self._timeout:g}s"
                wait = self._backoff * 2 ** (attempt - 1)
            except requests.ConnectionError as exc:
                last_problem = f"cannot connect to {self.base_url} ({type(exc).__name__})"
                wait = self._backoff * 2 ** (attempt - 1)
            else:
                result = ApiResponse(
                    endpoint=endpoint, path=path, params=dict(params), status=resp.status_code,
                    body=resp.content, fetched_at=datetime.now(timezone.utc).replace(tzinfo=None),
                    attempt=attempt, page=page,
                    headers={k.lower(): v for k, v in resp.headers.items()
                             if k.lower() in ("content-type", "retry-after", "date")},
                )
                if self._on_response:
                    self._on_response(result)
                if resp.status_code == 200:
                    try:
                        result.json()
                    except SchemaDrift as exc:
                        last_problem = str(exc)
                        wait = self._backoff * 2 ** (attempt - 1)
                    else:
                        return result
                elif resp.status_code in RETRY_STATUSES:
                    last_problem = f"HTTP {resp.status_code}: {_error_message(resp.content)}"
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    wait = retry_after if retry_after is not None else self._backoff * 2 ** (attempt - 1)
                    if resp.status_code == 429 and (wait > MAX_RETRY_AFTER_SECONDS or wait > self.remaining()):
                        raise RateLimited(f"{path}: rate limited by CoinGecko, asked to wait {wait:.0f}s "
                                          f"({max(0.0, self.remaining()):.0f}s left before the deadline)")
                else:
                    raise SourceError(f"{path}: HTTP {resp.status_code}: {_error_message(resp.content)}")
            if attempt > self._max_retries:
                break
            log.warning("%s attempt %d failed (%s); retrying in %.1fs", path, attempt, last_problem, wait)
            self._wait(wait, f"retry of {path}")
        if "not valid JSON" in last_problem:
            raise SchemaDrift(f"{path}: {last_problem}")
        raise SourceError(f"{path}: failed after {self._max_retries + 1} attempts: {last_problem}")
