"""Gold: rebuild the analytics tables from silver with the SQL in ``sql/gold/``.

All gold tables are rebuilt inside one transaction, so a reader (the dashboard)
sees either the previous complete version or the new complete version, never a
half-built or empty table, on SQLite (WAL) as on PostgreSQL (MVCC). A failure
rolls everything back and the previous gold stays as it was.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from pipeline.schema import GOLD_TABLES

GOLD_SQL_DIR = Path(__file__).resolve().parent.parent / "sql" / "gold"


def gold_sql(table_name: str, dialect: str, sql_dir: Path = GOLD_SQL_DIR) -> str:
    """The SELECT for a gold table: ``<table>.<dialect>.sql`` if present, else ``<table>.sql``."""
    specific = sql_dir / f"{table_name}.{dialect}.sql"
    path = specific if specific.exists() else sql_dir / f"{table_name}.sql"
    return path.read_text()


def build_gold(engine: Engine, sql_dir: Path = GOLD_SQL_DIR) -> dict[str, int]:
    """Rebuild every gold table in dependency order and publish them together.

    Returns rows per table.
    """
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for table in GOLD_TABLES:  # mart first: the segment analysis reads it
            columns = ", ".join(c.name for c in table.columns)
            select_sql = gold_sql(table.name, conn.dialect.name, sql_dir).strip().rstrip(";")
            conn.execute(text(f"DELETE FROM {table.name}"))
            result = conn.execute(text(
                f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM ({select_sql}) AS built"))
            counts[table.name] = result.rowcount
    return counts
