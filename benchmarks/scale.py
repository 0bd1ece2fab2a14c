"""Replay on one machine vs on a Dask cluster (issue 13 item 5), and the per-partition costs that let the
README estimate a year of whole-market history on N workers.

The same generated bronze is replayed twice into fresh SQLite (or PostgreSQL) databases: ``local``
(PIPELINE_REPLAY_WORKERS processes beside the loader) and ``dask`` (a LocalCluster of ``--workers``
single-threaded workers, each held to ``--worker-memory``). Then one partition's two costs are timed on
their own: its transform (bronze -> silver Arrow: what a worker does) and its load into the serving
database (what the replaying process does, one partition after another). A year estimate follows:
transforms spread over N workers, loads stay serial, so ``year_s(N) = max(transform_total / N, load_total)``
plus gold once.

    python -m benchmarks.scale                    # 1M records, SQLite, 2 workers
    python -m benchmarks.scale --records 100000 --database postgresql

Last line: ``scale_records=<n> local_s=<a> dask_s=<b> transform_s_per_partition=<t> load_s_per_partition=<l>
worker_peak_mb=<m>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench import PgServer
from benchmarks.benchgen import generate_bronze
from pipeline import bronze, engines
from pipeline.config import Settings
from pipeline.db import make_engine, prepare_database
from pipeline.flow import DEFAULT_BATCH_RECORDS, RunResult, _plan_batches, replay
from pipeline.silver.batches import prepare_batch
from pipeline.silver.load import load_batch

#: A year of the whole market every 15 minutes: ~17,000 coins x 96 snapshots x 365 days.
YEAR_RECORDS = 17_000 * 96 * 365
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _vm_hwm_mb() -> float:
    """This process's own peak resident memory (VmHWM; ru_maxrss would carry a parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _settings(database_url: str, data_dir: Path, batch_records: int, workers: int) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "DATA_DIR": str(data_dir),
            "PIPELINE_REPLAY_BATCH_RECORDS": str(batch_records),
            "PIPELINE_REPLAY_WORKERS": str(workers),
        }
    )


def _timed_replay(settings: Settings, plan: engines.EnginePlan) -> tuple[float, RunResult]:
    prepare_database(settings)
    start = time.perf_counter()
    result = replay(settings, plan=plan)
    return time.perf_counter() - start, result


def _worker_peaks(settings: Settings, workers: int, memory: str) -> tuple[float, list[float]]:
    """A replay on a LocalCluster started here (its start-up, ~2 s, is not timed); then each worker's own
    peak memory, read on the worker."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, memory_limit=memory, dashboard_address=None, host="127.0.0.1"
        ) as cluster,
        Client(cluster) as client,
    ):
        plan = engines.plan(
            "dask", workers=workers, scheduler=cluster.scheduler_address, worker_memory=memory, timeout=60
        )
        seconds, _ = _timed_replay(settings, plan)
        return seconds, list(client.run(_vm_hwm_mb).values())


def _partition_costs(settings: Settings, samples: int) -> tuple[float, float, int]:
    """Median seconds to transform one partition and to load it (into a fresh database), and its rows."""
    runs = [r for r in bronze.list_runs(settings.raw_dir) if r.source != "backfill"]
    size = settings.replay_batch_records or DEFAULT_BATCH_RECORDS  # set by _settings
    batches = _plan_batches(runs, size)
    full = [b for b in batches[:-1] if sum(r.markets_record_count for r in b) >= size]
    picked = (full or batches)[:samples]  # whole partitions (the last batch is the newest run alone)
    engine = prepare_database(settings)
    transform, load, rows = [], [], 0
    for batch in picked:
        start = time.perf_counter()
        prepared = prepare_batch(batch)
        transform.append(time.perf_counter() - start)
        start = time.perf_counter()
        with engine.begin() as conn:
            rows = load_batch(conn, prepared)
        load.append(time.perf_counter() - start)
    return statistics.median(transform), statistics.median(load), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--coins", type=int, default=250)
    parser.add_argument("--workers", type=int, default=2, help="Dask workers (and local replay processes)")
    parser.add_argument("--worker-memory", default="1GiB")
    parser.add_argument("--batch-records", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_PG_ADMIN)
    parser.add_argument("--tmp-dir", default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="scale_", dir=args.tmp_dir) as tmp:
        work = Path(tmp)
        snapshots = max(1, args.records // args.coins)
        print(f"bronze: {args.coins} coins x {snapshots} snapshots ...", flush=True)
        records = generate_bronze(work / "raw", args.coins, snapshots)
        server = PgServer(args.postgres_url) if args.database == "postgresql" else None

        def database(name: str) -> str:
            return server.create(f"bench_scale_{name}") if server else f"sqlite:///{work / (name + '.db')}"

        try:
            local_settings = _settings(database("local"), work, args.batch_records, args.workers)
            local_s, local = _timed_replay(local_settings, engines.EnginePlan("local", workers=args.workers))
            print(f"local replay ({args.workers} processes): {local.silver_rows:,} rows in {local_s:.1f}s", flush=True)
            dask_settings = _settings(database("dask"), work, args.batch_records, args.workers)
            dask_s, peaks = _worker_peaks(dask_settings, args.workers, args.worker_memory)
            print(
                f"dask replay (LocalCluster, {args.workers} workers, {args.worker_memory} each): {dask_s:.1f}s, "
                f"worker peaks {', '.join(f'{p:.0f} MB' for p in peaks)}",
                flush=True,
            )
            costs_settings = _settings(database("costs"), work, args.batch_records, args.workers)
            transform_s, load_s, rows = _partition_costs(costs_settings, samples=5)
        finally:
            make_engine.cache_clear()
            if server:
                server.drop_all()

    partitions = YEAR_RECORDS / max(rows, 1)
    print(f"one partition ({rows:,} records): transform {transform_s:.2f}s on a worker, load {load_s:.2f}s here")
    print(f"a year of the whole market: {YEAR_RECORDS:,} records = {partitions:,.0f} partitions")
    for n in (1, 2, 8, 32):
        transforms = partitions * transform_s / n
        loads = partitions * load_s
        print(
            f"  {n:>2} workers: transforms {transforms / 3600:6.1f} h, loads {loads / 3600:6.1f} h (serial) "
            f"-> ~{max(transforms, loads) / 3600:.1f} h + gold"
        )
    print(
        f"scale_records={records} local_s={local_s:.1f} dask_s={dask_s:.1f} transform_s_per_partition={transform_s:.3f} "
        f"load_s_per_partition={load_s:.3f} worker_peak_mb={max(peaks, default=float('nan')):.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
