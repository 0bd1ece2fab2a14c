"""Named watchlists: save, load, list and delete a list of coin ids kept under a name the user chose.

There are no accounts: a list is known by its name, so anyone who knows the name can load,
change or delete it (the README says so). Names and ids are user text (a form field, a link):
control characters and NUL are removed (PostgreSQL text cannot hold a NUL), both are cut to a
limit, and they reach the database only as bound parameters. The list is one JSON array in one
row (``pipeline.schema.watchlists``), so a save replaces the whole list atomically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, inspect, select
from sqlalchemy.dialects import postgresql, sqlite

from pipeline.db import utcnow
from pipeline.errors import PipelineError
from pipeline.schema import watchlists

#: A name is at most this many characters (after cleaning); longer ones are cut.
NAME_LIMIT = 60
#: CoinGecko ids are short slugs; a longer "id" is not one and is dropped.
ID_LIMIT = 100
#: Coins one list keeps (the rest of a longer list is dropped).
MAX_COINS = 500

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


class WatchlistError(PipelineError):
    """A watchlist name or content the user gave cannot be used (empty name, no coins)."""


@dataclass(frozen=True)
class Watchlist:
    """One saved list: its name, its coin ids in the user's order, and when it was last saved."""

    name: str
    coin_ids: tuple[str, ...]
    updated_at: datetime


def clean_name(name: str) -> str:
    """The name as stored: control characters and NUL removed, spaces collapsed, cut to ``NAME_LIMIT``.

    Raises WatchlistError when nothing is left.
    """
    cleaned = _SPACES.sub(" ", _CONTROL.sub(" ", str(name))).strip()[:NAME_LIMIT].strip()
    if not cleaned:
        raise WatchlistError("a watchlist needs a name (letters, digits or other visible characters)")
    return cleaned


def clean_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """Coin ids as kept: trimmed, without control characters, no empties, no repeats (first order kept),
    none longer than ``ID_LIMIT``, at most ``MAX_COINS``."""
    kept: dict[str, None] = {}
    for raw in ids:
        value = _CONTROL.sub("", str(raw)).strip()
        if value and len(value) <= ID_LIMIT:
            kept.setdefault(value, None)
        if len(kept) >= MAX_COINS:
            break
    return tuple(kept)


def parse_ids(text: str | None) -> tuple[str, ...]:
    """``?watch=bitcoin,ethereum`` -> ('bitcoin', 'ethereum'), cleaned like ``clean_ids``."""
    return clean_ids((text or "").split(","))


def _exists(conn: Connection) -> bool:
    return bool(inspect(conn).has_table(watchlists.name))


def _decode(raw: object) -> tuple[str, ...]:
    """The stored JSON array (a damaged value reads as an empty list rather than failing the page)."""
    try:
        value = json.loads(str(raw))
    except ValueError:
        return ()
    return clean_ids(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def save_watchlist(engine: Engine, name: str, coin_ids: Iterable[str]) -> Watchlist:
    """Create or replace the list called ``name`` (cleaned) with ``coin_ids`` (cleaned); returns what was stored.

    The table is created if the database predates it (the pipeline's create_all would too).
    """
    stored = Watchlist(clean_name(name), clean_ids(coin_ids), utcnow())
    values = {"name": stored.name, "coin_ids": json.dumps(list(stored.coin_ids)), "updated_at": stored.updated_at}
    with engine.begin() as conn:
        watchlists.create(conn, checkfirst=True)
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(watchlists).values(**values)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[watchlists.c.name],
                set_={"coin_ids": statement.excluded.coin_ids, "updated_at": statement.excluded.updated_at},
            )
        )
    return stored


def load_watchlist(engine: Engine, name: str) -> Watchlist | None:
    """The list called ``name`` (cleaned the way it was saved), or None."""
    try:
        key = clean_name(name)
    except WatchlistError:
        return None
    with engine.connect() as conn:
        if not _exists(conn):
            return None
        row = conn.execute(select(watchlists).where(watchlists.c.name == key)).first()
    return None if row is None else Watchlist(row.name, _decode(row.coin_ids), row.updated_at)


def list_watchlists(engine: Engine) -> list[Watchlist]:
    """Every saved list, by name."""
    with engine.connect() as conn:
        if not _exists(conn):
            return []
        rows = conn.execute(select(watchlists).order_by(watchlists.c.name)).all()
    return [Watchlist(row.name, _decode(row.coin_ids), row.updated_at) for row in rows]


def delete_watchlist(engine: Engine, name: str) -> bool:
    """Delete the list called ``name``; False when there was none."""
    try:
        key = clean_name(name)
    except WatchlistError:
        return False
    with engine.begin() as conn:
        if not _exists(conn):
            return False
        deleted = conn.execute(delete(watchlists).where(watchlists.c.name == key)).rowcount
    return bool(deleted)
