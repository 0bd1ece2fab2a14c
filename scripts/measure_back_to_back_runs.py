"""Measure rows lost when pipeline runs follow each other back to back (issue: two runs in one second).

Runs ``--runs`` API runs in a row against the local fake CoinGecko (real recorded bodies, 127.0.0.1)
and compares what the run log claims (sum of silver_rows) with what silver holds, and the number of
snapshots with the number of runs.

    PYTHONPATH=. .venv/bin/python scripts/measure_back_to_back_runs.py --runs 200 --database sqlite
    PYTHONPATH=. .venv/bin/python scripts/measure_back_to_back_runs.py --runs 200 --database postgresql
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import text

from pipeline.config import Settings
from pipeline.db import make_engine
from pipeline.flow import run_pipeline
from tests.fakes.coingecko import FakeCoinGecko

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--top", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeCoinGecko() as fake:
        if args.database == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'warehouse.db'}"
            name = None
        else:
            name = f"measure_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        settings = Settings.from_env(
            {
                "DATABASE_URL": url,
                "DATA_DIR": tmp,
                "COINGECKO_BASE_URL": fake.base_url,
                "COINGECKO_CALLS_PER_MINUTE": "0",
                "PIPELINE_TOP_N": str(args.top),
            }
        )
        started = time.monotonic()
        for _ in range(args.runs):
            run_pipeline(settings, source="api")
        seconds = time.monotonic() - started
        with make_engine(settings.database_url).connect() as conn:
            claimed = conn.execute(text("SELECT sum(silver_rows) FROM pipeline_runs WHERE status = 'success'")).scalar()
            stored = conn.execute(text("SELECT count(*) FROM staging_crypto_market")).scalar()
            snapshots = conn.execute(text("SELECT count(DISTINCT snapshot_at) FROM staging_crypto_market")).scalar()
        make_engine.cache_clear()
        if name:
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    print(
        f"database={args.database} runs={args.runs} seconds={seconds:.1f} run_log_rows={claimed} "
        f"silver_rows={stored} rows_lost={claimed - stored} snapshots={snapshots}"
    )


if __name__ == "__main__":
    main()
