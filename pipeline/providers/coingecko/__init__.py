"""Public fetchers for the CoinGecko API v3.

Fetchers yield responses; they never write files or touch the database. Each
body is handed to the client's ``on_response`` (bronze) as received, then
checked against the response contract (:mod:`.contract`): a body of the wrong
shape raises SchemaDrift instead of being published as a success.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from pipeline.config import Settings
from pipeline.errors import SchemaDrift, SourceError
from pipeline.providers.base import COINS, Keep, Record, Unavailable
from pipeline.providers.coingecko.client import ApiResponse, CoinGeckoClient
from pipeline.providers.coingecko.contract import (
    check_categories,
    check_categories_list,
    check_global,
    check_markets_page,
    check_markets_run,
    covers,
)
from pipeline.providers.coingecko.provider import PROVIDER
from pipeline.providers.coingecko.settings import (
    CATEGORIES_LIST_PATH,
    CATEGORIES_PATH,
    GLOBAL_PATH,
    MARKET_CHART_PATH,
    MARKETS_PATH,
    MAX_PER_PAGE,
    PRICE_CHANGE_PERIODS,
    markets_pages,
)

__all__ = [
    "ApiResponse",
    "CoinGeckoClient",
    "client_from_settings",
    "fetch_markets",
    "sweep_markets",
    "fetch_global",
    "fetch_market_chart",
    "fetch_category_markets",
    "fetch_categories",
    "fetch_categories_list",
    "PROVIDER",
]


def client_from_settings(
    settings: Settings, on_response: Keep | None = None, *, interactive: bool = False, sweep: bool = False
) -> CoinGeckoClient:
    """A client for one run.

    Args:
        interactive: a person is waiting (the dashboard's refresh button): use the short
            budget (COINGECKO_INTERACTIVE_DEADLINE_SECONDS / _MAX_RETRIES) instead of the
            scheduler's and the CLI's (COINGECKO_DEADLINE_SECONDS / COINGECKO_MAX_RETRIES).
        sweep: the whole market, ~70 paced pages: COINGECKO_SWEEP_DEADLINE_SECONDS instead
            of COINGECKO_DEADLINE_SECONDS (``interactive`` wins: a person never waits for a sweep).
    """
    if interactive:
        deadline = min(settings.interactive_deadline_seconds, settings.fetch_deadline_seconds)
        retries = min(settings.interactive_max_retries, settings.max_retries)
    elif sweep:
        deadline, retries = settings.sweep_deadline_seconds, settings.max_retries
    else:
        deadline, retries = settings.fetch_deadline_seconds, settings.max_retries
    return CoinGeckoClient(
        settings.coingecko_base_url,
        api_key=settings.api_key,
        api_key_header=settings.api_key_header,
        calls_per_minute=settings.calls_per_minute,
        timeout_seconds=settings.request_timeout_seconds,
        deadline_seconds=deadline,
        max_retries=retries,
        backoff_base_seconds=settings.backoff_base_seconds,
        max_response_bytes=settings.max_response_bytes,
        min_coverage=settings.min_coverage,
        on_response=on_response,
    )


def _markets_params(vs_currency: str, per_page: int, page: int, *, sparkline: bool = True) -> dict[str, Any]:
    return {
        "vs_currency": vs_currency,
        "order": "market_cap_desc",
        "per_page": per_page,
        "page": page,
        "sparkline": "true" if sparkline else "false",
        "price_change_percentage": PRICE_CHANGE_PERIODS,
    }


def fetch_markets(
    client: CoinGeckoClient, *, vs_currency: str, top_n: int, min_coverage: float | None = None
) -> Iterator[ApiResponse]:
    """Pages of /coins/markets by market cap, until ``top_n`` coins or the list ends.

    Args:
        top_n: coins wanted; pages hold up to 250 (the API maximum).
        min_coverage: share of min(top_n, coins the API lists) that must come back
            (default: the client's, from PIPELINE_MIN_COVERAGE).
    Yields:
        One successful response per page, each checked against the contract. Rankings
        can shift between pages, so an id may appear on two pages: silver de-duplicates them.
    Raises:
        SchemaDrift: a page of the wrong shape, or far fewer coins than asked for
            ("partial response"), raised after the body reached bronze.
    """
    if min_coverage is None:
        min_coverage = getattr(client, "min_coverage", 0.9)
    per_page = min(MAX_PER_PAGE, top_n)
    pages: list[list[Record]] = []
    for page in range(1, math.ceil(top_n / per_page) + 1):
        response = client.get("markets", MARKETS_PATH, _markets_params(vs_currency, per_page, page), page=page)
        records = check_markets_page(response.json(), page=page)
        pages.append(records)
        yield response
        if len(records) < per_page:
            break
    listable = None
    if len(pages[-1]) < per_page and not covers(pages, top_n, min_coverage):
        # The list ended early. Either the API lists no more coins, or that page came back
        # partial: ask for the one coin after the last position received to tell which.
        position = (len(pages) - 1) * per_page + len(pages[-1])
        if not _more_coins_after(client, vs_currency, position):
            listable = position
    check_markets_run(pages, top_n=top_n, listable=listable, min_coverage=min_coverage)


def sweep_markets(client: CoinGeckoClient, *, vs_currency: str) -> Iterator[ApiResponse | Unavailable]:
    """The whole market: /coins/markets by market cap, 250 a page, until a short (or empty) page.

    About 17,000 coins, ~70 pages, paced by the client (COINGECKO_CALLS_PER_MINUTE) within its
    deadline (COINGECKO_SWEEP_DEADLINE_SECONDS).

    Yields:
        Each page's response, checked against the contract; then, when the sweep is cut short
        after the first page (the deadline, a 429 asking to wait past it, a page failing after its
        retries, a short page with coins listed after it), one ``Unavailable(COINS, "partial
        sweep: 41 of ~68 pages ...")`` and nothing more: the pages so far stay in bronze and the
        snapshot is held, never published as the whole market.
    Raises:
        SchemaDrift: a page of the wrong shape (after its body reached bronze).
        SourceError: the first page cannot be had (there is nothing to keep).
    """
    coins = 0
    page = 0
    while True:
        page += 1
        try:
            response = client.get("markets", MARKETS_PATH, _markets_params(vs_currency, MAX_PER_PAGE, page), page=page)
            records = check_markets_page(response.json(), page=page)
        except SchemaDrift:
            raise
        except SourceError as exc:
            if page == 1:
                raise
            yield Unavailable(COINS, partial_sweep(page - 1, coins, str(exc)))
            return
        coins += len(records)
        yield response
        if len(records) == MAX_PER_PAGE:
            continue
        # A short page ends the list, unless the API lists a coin after it (the page came back partial).
        if records:
            try:
                more = _more_coins_after(client, vs_currency, coins)
            except SourceError as exc:
                yield Unavailable(
                    COINS, partial_sweep(page, coins, f"could not tell whether page {page} ends the list: {exc}")
                )
                return
            if more:
                yield Unavailable(
                    COINS,
                    partial_sweep(page, coins, f"page {page} held {len(records)} coins, yet more are listed after it"),
                )
        return


def partial_sweep(pages: int, coins: int, why: str) -> str:
    """The held snapshot's reason: ``partial sweep: 41 of ~68 pages (10,250 coins); <why>``."""
    expected = max(markets_pages(None), pages + 1)
    return f"partial sweep: {pages} of ~{expected} pages ({coins:,} coins); {why}"


def _more_coins_after(client: CoinGeckoClient, vs_currency: str, position: int) -> bool:
    """Does the API list a coin after ``position``? (One record; kept in bronze as ``markets_probe``.)"""
    response = client.get(
        "markets_probe", MARKETS_PATH, _markets_params(vs_currency, 1, position + 1, sparkline=False), page=position + 1
    )
    return bool(check_markets_page(response.json(), page=position + 1))


def fetch_global(client: CoinGeckoClient) -> ApiResponse:
    """/global: the whole market's cap, volume and market_cap_percentage.

    Raises SchemaDrift (a SourceError: callers treat /global as unavailable) when the
    body lacks the total_market_cap / market_cap_percentage objects.
    """
    response = client.get("global", GLOBAL_PATH, {})
    check_global(response.json())
    return response


def fetch_category_markets(client: CoinGeckoClient, category: str, *, vs_currency: str = "usd") -> ApiResponse:
    """/coins/markets?category=<category>: the coins CoinGecko files under one category (the
    first 250 by market cap, no sparkline), e.g. ``stablecoins``, ``wrapped-tokens``.

    The body reaches bronze (endpoint ``category_<category>``) before it is checked; an
    empty list is a valid answer (a category with no coin), a body of the wrong shape
    raises SchemaDrift.
    """
    params = {
        "vs_currency": vs_currency,
        "category": category,
        "order": "market_cap_desc",
        "per_page": MAX_PER_PAGE,
        "page": 1,
        "sparkline": "false",
    }
    response = client.get(f"category_{category}", MARKETS_PATH, params)
    body = response.json()
    if body:
        check_markets_page(body, page=1, path=f"{MARKETS_PATH}?category={category}")
    elif not isinstance(body, list):
        raise SchemaDrift(f"{MARKETS_PATH}?category={category}: expected a JSON array of coins")
    return response


def fetch_categories(client: CoinGeckoClient) -> ApiResponse:
    """/coins/categories: every category's market cap, 24h volume and 24h market-cap change (one call).

    The body reaches bronze (endpoint ``categories``) before it is checked; a body of the wrong
    shape raises SchemaDrift.
    """
    response = client.get("categories", CATEGORIES_PATH, {"order": "market_cap_desc"})
    check_categories(response.json())
    return response


def fetch_categories_list(client: CoinGeckoClient) -> ApiResponse:
    """/coins/categories/list: every category's id and name (endpoint ``categories_list``)."""
    response = client.get("categories_list", CATEGORIES_LIST_PATH, {})
    check_categories_list(response.json())
    return response


def fetch_market_chart(client: CoinGeckoClient, coin_id: str, *, vs_currency: str, days: int) -> ApiResponse:
    """/coins/{id}/market_chart: daily prices, caps and volumes (the free plan allows 365 days)."""
    params = {"vs_currency": vs_currency, "days": days}
    if days > 90:
        params["interval"] = "daily"
    response = client.get("market_chart", MARKET_CHART_PATH.format(coin_id=coin_id), params, key=coin_id)
    body = response.json()
    if not isinstance(body, dict) or not isinstance(body.get("prices"), list):
        raise SchemaDrift(f"market_chart for {coin_id}: expected an object with a 'prices' array")
    return response
