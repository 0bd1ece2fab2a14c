"""benchmarks.history_copies: a loaded history copied back in time, gold rebuilt over all of it, the
newest snapshot left as it was (both databases). Nothing here is timed against a target."""

from __future__ import annotations

from sqlalchemy import text

from benchmarks import history_copies
from pipeline.db import make_engine
from pipeline.flow import run_pipeline


def _one(settings, sql: str):
    with make_engine(settings.database_url).connect() as conn:
        return conn.execute(text(sql)).one()


def test_copies_grow_the_history_backwards_and_gold_covers_it(settings, capsys):
    run_pipeline(settings, source="api")
    run_pipeline(settings, source="api")
    rows, newest = _one(settings, "SELECT count(*), max(snapshot_at) FROM staging_crypto_market")
    mart = _one(settings, "SELECT count(*), max(snapshot_at) FROM crypto_analytics_mart")

    assert (
        history_copies.main(
            ["--database-url", settings.database_url, "--copies", "2", "--repeat", "1", "--refresh-clicks", "0"]
        )
        == 0
    )

    assert _one(settings, "SELECT count(*), max(snapshot_at) FROM staging_crypto_market") == (rows * 3, newest)
    assert _one(settings, "SELECT count(*), max(snapshot_at) FROM crypto_analytics_mart") == mart
    assert _one(settings, "SELECT count(*) FROM market_history")[0] == 6
    assert _one(settings, "SELECT count(*) FROM snapshots WHERE status = 'published'")[0] == 6
    oldest_hour = _one(settings, "SELECT min(bucket) FROM coin_history_hourly")[0]
    oldest_snapshot = _one(settings, "SELECT min(snapshot_at) FROM staging_crypto_market")[0]
    assert str(oldest_hour)[:13] == str(oldest_snapshot)[:13], "the rollups were not rebuilt over the copies"
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"history_rows={rows * 3} dashboard_p95_ms=") and last.endswith("refresh_p95_s=-")
