"""Where replay's local transforms run: threads of the loading process on PostgreSQL, processes on SQLite."""

from pipeline import engines


def test_postgresql_local_workers_are_threads():
    chosen = engines.for_database(engines.EnginePlan("local", workers=1), "postgresql")
    assert chosen.threads and chosen.workers == 1
    assert chosen.describe() == "1 thread(s) of this process"


def test_sqlite_local_workers_stay_processes():
    chosen = engines.for_database(engines.EnginePlan("local", workers=2), "sqlite")
    assert not chosen.threads and chosen.workers == 2
    assert chosen.describe() == "2 local process(es)"


def test_no_workers_and_dask_are_left_as_they_are():
    here = engines.EnginePlan("local", workers=0)
    dask = engines.EnginePlan("dask", workers=2)
    assert engines.for_database(here, "postgresql") == here
    assert engines.for_database(dask, "postgresql") == dask


def test_a_thread_executor_runs_the_batches_in_this_process():
    import os

    with engines.batch_executor(engines.EnginePlan("local", workers=1, threads=True)) as (pool, slots):
        assert pool is not None and slots == 1
        assert pool.submit(os.getpid).result() == os.getpid()
