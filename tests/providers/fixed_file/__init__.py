"""A second, tiny provider for tests only: serves one fixed file of quotes, in its own shape.

It plugs in by being this one folder: ``PIPELINE_PROVIDER_PATH=tests/providers`` and
``PIPELINE_PROVIDER=fixed_file`` (pipeline.providers.registry finds it; nothing lists it).
``quotes.json`` holds the top three coins of the bundled sample (a real CoinGecko recording
of 2022-10-16, data/sample/), renamed into this provider's own field names and stamped with
the sample's recorded time, so its rows meet CoinGecko's for the same coins and moment.
It serves no market-wide totals: silver falls back to the tracked coins, as when /global fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeline.config import Settings
from pipeline.errors import SchemaDrift
from pipeline.providers.base import COINS, Body, Json, Keep, Record, SnapshotRequest, Unavailable

QUOTES = Path(__file__).resolve().parent / "quotes.json"
#: When quotes.json was "fetched" (the sample's recorded time).
RECORDED_AT = datetime(2022, 10, 16, 9, 28, 53)

#: This provider's field -> the silver contract's (CoinGecko /coins/markets names).
FIELDS = {
    "slug": "id",
    "ticker": "symbol",
    "title": "name",
    "rank": "market_cap_rank",
    "price_usd": "current_price",
    "cap_usd": "market_cap",
    "volume_usd": "total_volume",
    "high_24h_usd": "high_24h",
    "low_24h_usd": "low_24h",
    "change_24h_pct": "price_change_percentage_24h",
    "supply": "circulating_supply",
    "as_of": "last_updated",
}


class FixedFile:
    name = "fixed_file"
    endpoints: Mapping[str, str] = MappingProxyType({COINS: "quotes"})

    def fetch_snapshot(self, settings: Settings, request: SnapshotRequest, keep: Keep) -> Iterator[Body | Unavailable]:
        body = Body(
            endpoint="quotes",
            path=QUOTES.name,
            params={},
            status=200,
            body=QUOTES.read_bytes(),
            fetched_at=RECORDED_AT,
            attempt=1,
            page=1,
        )
        keep(body)
        yield body

    def coin_records(self, payload: Json) -> list[Record]:
        if not isinstance(payload, list):
            raise SchemaDrift("quotes.json: expected a JSON array of quotes")
        records: list[Record] = []
        for quote in payload:
            record: dict[str, Any] = {FIELDS[k]: v for k, v in quote.items() if k in FIELDS}
            if isinstance(record.get("symbol"), str):
                record["symbol"] = record["symbol"].lower()
            records.append(record)
        return records

    def market_totals(self, payload: Json) -> Json:
        return None

    def legacy_key(self, endpoint: str, path: str) -> str | None:
        return None


PROVIDER = FixedFile()
