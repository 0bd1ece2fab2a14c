"""Replays compared table for table: generated bronze with malformed records (a module-scoped fixture,
``replay_bronze``, registered in tests/integration/conftest.py), settings for a replay of it, and a hash
of every table a replay writes. Used by the tests that check a replay gives the same warehouse
whichever engine ran it (single process, threads, Dask, the scale-out topology)."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
from sqlalchemy import text

from benchmarks.benchgen import generate_bronze
from pipeline.db import make_engine
from tests.conftest import make_settings

#: Tables a replay writes, with the columns that name the moment of the replay itself (left out).
COMPARED = {
    "staging_crypto_market": (),
    "staging_global_market": (),
    "staging_global_dominance": (),
    "quarantine_crypto_market": (),
    "snapshots": ("decided_at",),
    "crypto_analytics_mart": (),
    "market_segment_analysis": (),
    "market_history": (),
    "coin_history_hourly": (),
    "coin_history_daily": (),
    "market_history_hourly": (),
    "market_history_daily": (),
    "coins_seen": (),
}
COINS, SNAPSHOTS, BATCH = 120, 60, 600  # 7,200 records in 12 batches of 5 snapshots


@pytest.fixture(scope="module")
def replay_bronze(tmp_path_factory):
    """Generated bronze runs (with the generator's malformed records, so quarantine is compared too)."""
    data_dir = tmp_path_factory.mktemp("dask_bronze")
    records = generate_bronze(
        data_dir / "raw", COINS, SNAPSHOTS, write_parquet=True, writer_process=False, bad_rate=0.005
    )
    assert records == COINS * SNAPSHOTS
    return data_dir


def settings_for(database_url, data_dir):
    return make_settings(database_url, data_dir, replay_batch_records=BATCH)


def _text(value) -> str:
    """A cell as text; floats to 12 significant digits: a SUM in SQL adds in the table's physical order,
    which differs between a live run and a replay by a last bit (seen on PostgreSQL)."""
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.12g}"
    return str(value)


def contents(database_url) -> dict[str, str]:
    """A hash of every compared table's rows, in a fixed order."""
    engine = make_engine(settings_for(database_url, ".").database_url)
    hashes = {}
    with engine.connect() as conn:
        for table, volatile in COMPARED.items():
            frame = pd.read_sql(text(f"SELECT * FROM {table}"), conn).drop(columns=list(volatile))
            frame = frame.map(_text).sort_values(list(frame.columns)).reset_index(drop=True)
            hashes[table] = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest() + f" ({len(frame)} rows)"
    return hashes
