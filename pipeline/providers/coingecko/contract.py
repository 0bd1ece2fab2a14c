"""The response contract: is a well-formed CoinGecko body the shape we asked for?

Pure functions, no I/O. They raise :class:`SchemaDrift` (exit 3) for problems
of a whole body — the wrong JSON type, an empty first page, a required field
missing from most records (a rename upstream), far fewer coins than the request
covers — so a run never publishes a "successful" mart built from a broken
answer. A single malformed record (a missing id, a negative price) is not
drift: silver quarantines it and the run goes on.

Callers hand every body to bronze *before* checking it, so a drifted body is
kept exactly as received for diagnosis and replay.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.errors import SchemaDrift
from pipeline.providers.base import Json, Record
from pipeline.providers.coingecko.settings import CATEGORIES_LIST_PATH, CATEGORIES_PATH, GLOBAL_PATH, MARKETS_PATH

#: Keys every /coins/markets record must carry (their values may be null).
REQUIRED_MARKET_FIELDS = (
    "id",
    "symbol",
    "name",
    "current_price",
    "market_cap",
    "total_volume",
    "market_cap_rank",
    "last_updated",
)

#: Every key CoinGecko documents for a /coins/markets record (besides price_change_percentage_<p>_in_currency).
KNOWN_MARKET_FIELDS = frozenset(REQUIRED_MARKET_FIELDS) | frozenset(
    {
        "image",
        "fully_diluted_valuation",
        "high_24h",
        "low_24h",
        "price_change_24h",
        "price_change_percentage_24h",
        "market_cap_change_24h",
        "market_cap_change_percentage_24h",
        "circulating_supply",
        "total_supply",
        "max_supply",
        "ath",
        "ath_change_percentage",
        "ath_date",
        "atl",
        "atl_change_percentage",
        "atl_date",
        "roi",
        "sparkline_in_7d",
    }
)
_PCT_IN_CURRENCY = re.compile(r"^price_change_percentage_\w+_in_currency$")

#: Objects /global's ``data`` must hold: without them there is no market total to compute dominance from.
REQUIRED_GLOBAL_OBJECTS = ("total_market_cap", "market_cap_percentage")

#: Keys most /coins/categories rows must hold (the sector table needs little else).
REQUIRED_CATEGORY_FIELDS = ("id", "name", "market_cap")
REQUIRED_CATEGORY_LIST_FIELDS = ("category_id", "name")

#: Default share of the requested coins a run must return (PIPELINE_MIN_COVERAGE).
DEFAULT_MIN_COVERAGE = 0.9


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__


def _names(keys: Iterable[str], limit: int = 8) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _known_market_field(key: str) -> bool:
    return key in KNOWN_MARKET_FIELDS or bool(_PCT_IN_CURRENCY.match(key))


def check_markets_page(body: Json, *, page: int, path: str = MARKETS_PATH) -> list[Record]:
    """Check one /coins/markets page and return its records.

    Raises SchemaDrift when the page is not a JSON array of objects, when the
    first page is empty, or when a required key is absent from more than half
    of the records (the message names it and the unknown keys present instead:
    the likely rename).
    """
    where = f"{path} page {page}"
    if not isinstance(body, list):
        raise SchemaDrift(f"{where}: schema drift: expected a JSON array of coins, got a JSON {_json_type(body)}")
    if not body:
        if page == 1:
            raise SchemaDrift(f"{where}: schema drift: empty list (the first page must hold coins)")
        return body
    objects = [r for r in body if isinstance(r, dict)]
    if len(objects) * 2 < len(body):
        kinds = Counter(_json_type(r) for r in body if not isinstance(r, dict))
        raise SchemaDrift(
            f"{where}: schema drift: expected an array of coin objects, got an array of "
            f"{_names(k for k, _ in kinds.most_common())} ({len(body) - len(objects)} of {len(body)})"
        )
    present = Counter(key for record in objects for key in record)
    half = len(objects) / 2
    missing = [key for key in REQUIRED_MARKET_FIELDS if present[key] < half]
    if missing:
        unexpected = sorted(key for key, count in present.items() if count >= half and not _known_market_field(key))
        instead = (
            f"; unexpected field(s) present instead: {_names(unexpected)} (renamed?)"
            if unexpected
            else "; no unknown field took their place"
        )
        counts = ", ".join(f"{key} in {present[key]}" for key in missing)
        raise SchemaDrift(
            f"{where}: schema drift: required field(s) {_names(missing)} missing from most of "
            f"{len(objects)} records ({counts}){instead}"
        )
    return body


def coin_ids(pages: Sequence[list[Record]]) -> set[str]:
    """Distinct usable coin ids over a run's pages (duplicates and id-less records count once / not at all)."""
    return {
        r["id"].strip()
        for records in pages
        for r in records
        if isinstance(r, dict) and isinstance(r.get("id"), str) and r["id"].strip()
    }


def covers(pages: Sequence[list[Record]], wanted: int, min_coverage: float) -> bool:
    """True when the pages hold at least ``min_coverage`` of ``wanted`` distinct coins."""
    return len(coin_ids(pages)) >= math.ceil(min_coverage * wanted - 1e-9)


def check_markets_run(
    pages: Sequence[list[Record]],
    *,
    top_n: int,
    listable: int | None,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    path: str = MARKETS_PATH,
) -> int:
    """Check a run's pages together: enough distinct coins for the request. Returns the coin count.

    Args:
        pages: the parsed record lists, in page order (each already passed :func:`check_markets_page`).
        top_n: coins asked for.
        listable: how many coins the API can list, when the list was seen to end
            (None: at least ``top_n``).
        min_coverage: share of min(top_n, listable) that must come back.
    Raises SchemaDrift "partial response: got N of M coins" when short.
    """
    expected = top_n if listable is None else min(top_n, listable)
    got = len(coin_ids(pages))
    if expected > 0 and not covers(pages, expected, min_coverage):
        records = sum(len(p) for p in pages)
        detail = f"{records} records" if records == got else f"{records} records, {got} distinct usable ids"
        raise SchemaDrift(
            f"{path}: schema drift: partial response: got {got} of {expected} coins ({detail}; "
            f"at least {min_coverage:.0%} required)"
        )
    return got


def check_global(body: Json, *, path: str = GLOBAL_PATH) -> dict[str, Any]:
    """Check a /global body: an object whose ``data`` holds the market-total objects. Returns ``data``."""
    if not isinstance(body, dict):
        raise SchemaDrift(f"{path}: schema drift: expected a JSON object, got a JSON {_json_type(body)}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise SchemaDrift(
            f"{path}: schema drift: expected an object with a 'data' object, got keys "
            f"{_names(sorted(body)) or '(none)'}"
        )
    missing = [key for key in REQUIRED_GLOBAL_OBJECTS if not isinstance(data.get(key), dict)]
    if missing:
        extra = sorted(k for k, v in data.items() if isinstance(v, dict) and k not in REQUIRED_GLOBAL_OBJECTS)
        instead = f"; other objects present: {_names(extra)} (renamed?)" if extra else ""
        raise SchemaDrift(f"{path}: schema drift: data lacks the {_names(missing)} object(s){instead}")
    return data


def _check_array_of_objects(body: Json, required: Sequence[str], where: str, what: str) -> list[Record]:
    """A non-empty JSON array, mostly objects, with each ``required`` key in at least half of them."""
    if not isinstance(body, list):
        raise SchemaDrift(f"{where}: schema drift: expected a JSON array of {what}, got a JSON {_json_type(body)}")
    if not body:
        raise SchemaDrift(f"{where}: schema drift: empty list (CoinGecko always lists {what})")
    objects = [r for r in body if isinstance(r, dict)]
    if len(objects) * 2 < len(body):
        raise SchemaDrift(f"{where}: schema drift: expected an array of {what} objects")
    present = Counter(key for record in objects for key in record)
    missing = [key for key in required if present[key] * 2 < len(objects)]
    if missing:
        others = sorted(key for key, count in present.items() if count * 2 >= len(objects) and key not in required)
        raise SchemaDrift(
            f"{where}: schema drift: required field(s) {_names(missing)} missing from most of {len(objects)} "
            f"records; present instead: {_names(others) or '(none)'}"
        )
    return body


def check_categories(body: Json, *, path: str = CATEGORIES_PATH) -> list[Record]:
    """Check a /coins/categories body: an array of category objects with ``id`` and ``market_cap``.

    Single malformed rows are silver's business (quarantined there); a body of the wrong shape is drift.
    """
    return _check_array_of_objects(body, REQUIRED_CATEGORY_FIELDS, path, "categories")


def check_categories_list(body: Json, *, path: str = CATEGORIES_LIST_PATH) -> list[Record]:
    """Check a /coins/categories/list body: an array of ``{category_id, name}`` objects."""
    return _check_array_of_objects(body, REQUIRED_CATEGORY_LIST_FIELDS, path, "categories")
