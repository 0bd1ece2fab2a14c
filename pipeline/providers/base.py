"""What every data provider is, in one small interface; bronze and silver know nothing else.

A provider is one folder (a Python package) whose ``PROVIDER`` object has:

* ``name`` — what bronze manifests and silver rows record as ``provider``;
* ``endpoints`` — which of its endpoint names plays each role of a snapshot
  (:data:`COINS`: lists of coin records, paged; :data:`TOTALS`: the market-wide
  figures; :data:`HISTORY`: one coin's daily history, keyed by the coin);
* ``fetch_snapshot`` — what it fetches for one snapshot, handing every answer to
  ``keep`` (bronze) as received and yielding the good ones;
* ``coin_records`` / ``market_totals`` — how its bodies map to the silver contract:
  records with the fields :mod:`pipeline.silver.transform` reads (CoinGecko's
  /coins/markets names) and a market-wide body shaped like CoinGecko's /global.

Discovery is :mod:`pipeline.providers.registry`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.errors import SchemaDrift

if TYPE_CHECKING:
    from pipeline.config import Settings

#: The provider every bronze run and silver row without a ``provider`` came from.
DEFAULT_PROVIDER = "coingecko"

#: Roles of a snapshot's bodies (``Provider.endpoints`` maps each to an endpoint name).
COINS = "coins"
TOTALS = "totals"
HISTORY = "history"

#: A parsed JSON document.
Json = Any
#: One coin record in the silver contract (field name -> JSON value).
Record = dict[str, Any]


@dataclass
class Body:
    """One answer of a provider, exactly as received; bronze keeps it byte for byte.

    ``endpoint`` is the provider's name for what was asked (it names the bronze file),
    ``key`` what the body is about within that endpoint when several are fetched (a coin
    id for a per-coin history), ``page`` the page of a paged endpoint.
    """

    endpoint: str
    path: str
    params: dict[str, Any]
    status: int
    body: bytes
    fetched_at: datetime | None  # None: not fetched by us (an imported file)
    attempt: int
    page: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    key: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> Json:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SchemaDrift(
                f"{self.path} page {self.page or 1}: body is not valid JSON ({len(self.body)} bytes, {exc})"
            ) from exc


@dataclass(frozen=True)
class Unavailable:
    """An optional part of a snapshot that could not be fetched; the run goes on without it.

    ``message`` is one line for the run log (e.g. ``/global unavailable (HTTP 503)``). For the
    :data:`COINS` role it ends a whole-market sweep cut short (``partial sweep: 41 of ~68 pages
    ...``): the pages so far are kept and loaded, and the snapshot is held, never published as complete.
    """

    role: str
    message: str


@dataclass(frozen=True)
class SnapshotRequest:
    """What one snapshot asks a provider for."""

    vs_currency: str
    #: Coins by market cap; None: the whole market (every page until a short one).
    top_n: int | None
    #: A person is waiting (the dashboard's refresh button): use the short budget.
    interactive: bool = False


Keep = Callable[[Body], None]


class Provider(Protocol):
    """The interface a provider folder's ``PROVIDER`` object satisfies."""

    @property
    def name(self) -> str: ...

    @property
    def endpoints(self) -> Mapping[str, str]: ...

    def fetch_snapshot(self, settings: Settings, request: SnapshotRequest, keep: Keep) -> Iterator[Body | Unavailable]:
        """Fetch one snapshot: every answer goes to ``keep`` first; yields the good coins
        bodies (in page order), then the totals body or an :class:`Unavailable` for it
        (and, for a whole-market request cut short, an :class:`Unavailable` for the coins).
        Raises a :class:`pipeline.errors.SourceError` when the coins cannot be had."""
        ...

    def coin_records(self, payload: Json) -> list[Record]:
        """The silver-contract records of one coins body (SchemaDrift when it has the wrong shape)."""
        ...

    def market_totals(self, payload: Json) -> Json:
        """One totals body in the silver contract's shape (CoinGecko's /global: ``{"data": {...}}``)."""
        ...

    def legacy_key(self, endpoint: str, path: str) -> str | None:
        """The ``key`` of a body kept before manifests recorded one (from its request path), else None."""
        ...
