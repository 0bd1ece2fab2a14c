"""CoinGecko as a :class:`pipeline.providers.base.Provider`: what a snapshot fetches, and how
its bodies map to the silver contract (they *are* the contract: silver reads CoinGecko's names)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from pipeline.errors import SchemaDrift, SourceError
from pipeline.providers.base import COINS, HISTORY, TOTALS, Body, Json, Keep, Record, SnapshotRequest, Unavailable

if TYPE_CHECKING:
    from pipeline.config import Settings


class CoinGecko:
    """The public CoinGecko API v3: /coins/markets pages (the top N, or every page: the whole market), then /global."""

    name = "coingecko"
    endpoints: Mapping[str, str] = MappingProxyType({COINS: "markets", TOTALS: "global", HISTORY: "market_chart"})

    def fetch_snapshot(self, settings: Settings, request: SnapshotRequest, keep: Keep) -> Iterator[Body | Unavailable]:
        from pipeline.providers.coingecko import client_from_settings, fetch_global, fetch_markets, sweep_markets

        sweep = request.top_n is None
        client = client_from_settings(settings, on_response=keep, interactive=request.interactive, sweep=sweep)
        if request.top_n is None:
            yield from sweep_markets(client, vs_currency=request.vs_currency)
        else:
            yield from fetch_markets(client, vs_currency=request.vs_currency, top_n=request.top_n)
        try:
            yield fetch_global(client)
        except SourceError as exc:
            yield Unavailable(TOTALS, f"/global unavailable ({exc})")

    def coin_records(self, payload: Json) -> list[Record]:
        if not isinstance(payload, list):
            raise SchemaDrift("/coins/markets: expected a JSON array of coins")
        return payload

    def market_totals(self, payload: Json) -> Json:
        return payload

    def legacy_key(self, endpoint: str, path: str) -> str | None:
        """/coins/{id}/market_chart: the coin id."""
        parts = path.strip("/").split("/")
        return parts[1] if endpoint == self.endpoints[HISTORY] and len(parts) >= 2 else None


PROVIDER = CoinGecko()
