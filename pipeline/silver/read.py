"""Reads of silver for the plausibility gate: one snapshot's rows, its quarantine count, the USD stablecoins.

Small, indexed reads (silver is keyed and indexed by snapshot time); no writes.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, func, select

from pipeline.schema import quarantine_crypto_market, ref_stablecoins, staging_crypto_market

#: What the gate looks at (pipeline.plausibility.check_snapshot).
GATE_COLUMNS = (
    "id",
    "market_cap_rank",
    "current_price",
    "market_cap",
    "circulating_supply",
    "last_updated",
    "snapshot_at",
)


def snapshot_rows(conn: Connection, snapshot_at: datetime) -> pd.DataFrame:
    """The silver rows of one snapshot, with the columns the gate needs."""
    table = staging_crypto_market
    rows = conn.execute(
        select(*(table.c[name] for name in GATE_COLUMNS)).where(table.c.snapshot_at == snapshot_at)
    ).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(GATE_COLUMNS))
    for name in ("market_cap_rank", "current_price", "market_cap", "circulating_supply"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame


def quarantined_count(conn: Connection, snapshot_at: datetime, run_id: str | None = None) -> int:
    """Records of this snapshot (and run) that silver quarantined."""
    table = quarantine_crypto_market
    query = select(func.count()).select_from(table).where(table.c.snapshot_at == snapshot_at)
    if run_id is not None:
        query = query.where(table.c.run_id == run_id)
    return int(conn.execute(query).scalar() or 0)


def usd_stablecoins(conn: Connection) -> set[str]:
    """Ids of the stablecoins pegged to the US dollar (``sql/seeds/ref_stablecoins.csv``)."""
    return set(conn.execute(select(ref_stablecoins.c.id).where(ref_stablecoins.c.pegged_to == "USD")).scalars())
