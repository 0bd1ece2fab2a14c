"""Public fetchers for the CoinGecko API v3.

Fetchers yield responses; they never write files or touch the database.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from pipeline.config import Settings
from pipeline.errors import SchemaDrift
from pipeline.sources.coingecko.client import ApiResponse, CoinGeckoClient
from pipeline.sources.coingecko.settings import (
    GLOBAL_PATH,
    MARKET_CHART_PATH,
    MARKETS_PATH,
    MAX_PER_PAGE,
    PRICE_CHANGE_PERIODS,
)

__all__ = ["ApiResponse", "CoinGeckoClient", "client_from_settings", "fetch_markets", "fetch_global",
           "fetch_market_chart"]


def client_from_settings(settings: Settings, on_response=None) -> CoinGeckoClient:
    return CoinGeckoClient(
        settings.coingecko_base_url,
        api_key=settings.api_key,
        api_key_header=settings.api_key_header,
        calls_per_minute=settings.calls_per_minute,
        timeout_seconds=settings.request_timeout_seconds,
        deadline_seconds=settings.fetch_deadline_seconds,
        max_retries=settings.max_retries,
        backoff_base_seconds=settings.backoff_base_seconds,
        on_response=on_response,
    )


def fetch_markets(client: CoinGeckoClient, *, vs_currency: str, top_n: int) -> Iterator[ApiResponse]:
    """Pages of /coins/markets by market cap, until ``top_n`` coins or the list ends.

    Args:
        top_n: coins wanted; pages hold up to 250 (the API maximum).
    Yields:
        One successful response per page. Rankings can shift between pages, so
        an id may appear on two pages: silver de-duplicates them.
    """
    per_page = min(MAX_PER_PAGE, top_n)
    for page in range(1, math.ceil(top_n / per_page) + 1):
        params = {
            "vs_currency": vs_currency,
            "order": "market_cap_desc",
            "per_page": per_page,
            "page": page,
            "sparkline": "true",
            "price_change_percentage": PRICE_CHANGE_PERIODS,
        }
        response = client.get("markets", MARKETS_PATH, params, page=page)
        records = response.json()
        if not isinstance(records, list):
            raise SchemaDrift(f"{MARKETS_PATH} page {page}: expected a JSON array, got {type(records).__name__}")
        yield response
        if len(records) < per_page:
            return


def fetch_global(client: CoinGeckoClient) -> ApiResponse:
    """/global: the whole market's cap, volume and market_cap_percentage."""
    response = client.get("global", GLOBAL_PATH, {})
    body = response.json()
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise SchemaDrift(f"{GLOBAL_PATH}: expected an object with 'data'")
    return response


def fetch_market_chart(client: CoinGeckoClient, coin_id: str, *, vs_currency: str, days: int) -> ApiResponse:
    """/coins/{id}/market_chart: daily prices, caps and volumes (the free plan allows 365 days)."""
    params = {"vs_currency": vs_currency, "days": days}
    if days > 90:
        params["interval"] = "daily"
    response = client.get("market_chart", MARKET_CHART_PATH.format(coin_id=coin_id), params)
    body = response.json()
    if not isinstance(body, dict) or not isinstance(body.get("prices"), list):
        raise SchemaDrift(f"market_chart for {coin_id}: expected an object with a 'prices' array")
    return response
