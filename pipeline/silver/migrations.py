"""Schema version 6: silver rows say which provider they came from.

``staging_crypto_market`` gains a ``provider`` column (not in its key: a snapshot time
belongs to one run, so to one provider). ``staging_coin_history`` gains one in its
primary key, (provider, id, ts): two providers' daily points for the same coin and day
are both kept. Rows already there are CoinGecko's. Every step looks before it changes,
so a database that already has the new shape (created by this code, then marked older)
upgrades to the same tables. :data:`pipeline.db.MIGRATIONS` lists these steps.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, text

from pipeline.schema import PROVIDER_DEFAULT, staging_coin_history

Step = Callable[[Connection], None]

_COLUMN_SQL = f"VARCHAR(32) NOT NULL DEFAULT '{PROVIDER_DEFAULT}'"


def _add_provider(table: str) -> Step:
    def step(conn: Connection) -> None:
        if "provider" not in {c["name"] for c in inspect(conn).get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN provider {_COLUMN_SQL}"))

    return step


def _history_key_has_provider(conn: Connection) -> bool:
    return "provider" in (inspect(conn).get_pk_constraint(staging_coin_history.name).get("constrained_columns") or [])


def _postgresql_history_key(conn: Connection) -> None:
    if _history_key_has_provider(conn):
        return
    conn.execute(text("ALTER TABLE staging_coin_history DROP CONSTRAINT IF EXISTS pk_staging_coin_history"))
    conn.execute(
        text("ALTER TABLE staging_coin_history ADD CONSTRAINT pk_staging_coin_history PRIMARY KEY (provider, id, ts)")
    )


def _sqlite_history_key(conn: Connection) -> None:
    """SQLite cannot change a primary key in place: copy the rows into the new table."""
    if _history_key_has_provider(conn):
        return
    columns = ", ".join(c.name for c in staging_coin_history.columns)
    conn.execute(text("ALTER TABLE staging_coin_history RENAME TO staging_coin_history_v5"))
    staging_coin_history.create(conn)
    conn.execute(text(f"INSERT INTO staging_coin_history ({columns}) SELECT {columns} FROM staging_coin_history_v5"))
    conn.execute(text("DROP TABLE staging_coin_history_v5"))


def provider_steps(dialect_name: str) -> list[Step]:
    """The version-6 steps for this dialect, in order."""
    added = [_add_provider("staging_crypto_market"), _add_provider("staging_coin_history")]
    return [*added, _postgresql_history_key if dialect_name == "postgresql" else _sqlite_history_key]
