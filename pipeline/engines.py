"""Where replay's batch transforms run: here, in processes on this machine, or on a Dask cluster.

Replay splits bronze runs into batches (partitions of ~``PIPELINE_REPLAY_BATCH_RECORDS`` records);
each batch's transform (``pipeline.silver.batches.prepare_batch``: bronze files -> silver Arrow
tables, no database) is a pure function of its runs, so it can run anywhere that can read the
bronze. This module hands out the executor those transforms are submitted to; loading into the
serving database and publishing gold stay in the calling process, unchanged, so the result does not
depend on where the transforms ran.

* ``local``: a ``ProcessPoolExecutor`` of ``workers`` spawned processes (0: in this process), or
  ``workers`` threads of this process when the serving database is PostgreSQL (:func:`for_database`).
* ``dask``: ``distributed.Client.get_executor`` on the scheduler at ``--scheduler`` (or
  ``DASK_SCHEDULER_ADDRESS``), or on a ``LocalCluster`` started for the replay and stopped after it.
  Dask retries a task whose worker died (``retries``) on another worker; the cluster code is
  Dask's own, none of ours.
"""

from __future__ import annotations

import importlib
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from pipeline.errors import ClusterUnavailable, ConfigError

ENGINES = ("local", "dask")
#: How often Dask runs a batch again when its worker died or it failed (then the replay fails).
TASK_RETRIES = 2
#: How long a replay waits to reach a scheduler (and for its first worker) before it gives up.
CONNECT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class EnginePlan:
    """Which engine a replay uses: ``local`` with ``workers`` processes, or ``dask`` at ``scheduler``
    (None: a LocalCluster of ``workers`` processes, each held to ``worker_memory``)."""

    engine: str = "local"
    workers: int = 1
    scheduler: str | None = None
    worker_memory: str = "1GiB"
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS
    #: ``local`` only: the workers are threads of this process, not spawned processes.
    threads: bool = False

    def describe(self) -> str:
        """One line for the log: where the transforms run."""
        if self.engine == "local":
            if not self.workers:
                return "this process"
            return f"{self.workers} thread(s) of this process" if self.threads else f"{self.workers} local process(es)"
        return (
            f"Dask scheduler {self.scheduler}" if self.scheduler else f"a Dask LocalCluster of {self.workers} worker(s)"
        )


def plan(engine: str, *, workers: int, scheduler: str | None, worker_memory: str, timeout: float) -> EnginePlan:
    """Check the engine choice: a scheduler address only with ``dask``; ``dask`` without one starts a
    LocalCluster (the CLI passes ``--scheduler``, else DASK_SCHEDULER_ADDRESS from the settings)."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "local":
        if scheduler:
            raise ConfigError("--scheduler needs --engine dask")
        return EnginePlan("local", workers=workers)
    address = scheduler or None
    if address is not None and not address.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise ConfigError(f"--scheduler must look like tcp://host:8786, got {address!r}")
    return EnginePlan(
        "dask",
        workers=max(1, workers),
        scheduler=address,
        worker_memory=worker_memory,
        connect_timeout_seconds=timeout,
    )


def for_database(chosen: EnginePlan, dialect: str) -> EnginePlan:
    """Local workers as threads when loading into PostgreSQL, as processes into SQLite.

    Loading into PostgreSQL, this process mostly waits on the server (the GIL released), so a thread
    transforms as fast as a spawned process did (1M records: silver 29-31 s either way) without a
    second interpreter holding its own pyarrow, pandas and batches: the replay's process tree peaked at
    413-417 MB with a worker process, 232-233 MB with a thread. SQLite's inserts run in this process's
    own Python (executemany converts every value holding the GIL): with a thread its silver stage took
    38-49 s instead of 30-37 s (tree 321-325 MB instead of 462-463 MB), so the worker stays a process.
    """
    if chosen.engine == "local" and chosen.workers and dialect == "postgresql":
        return replace(chosen, threads=True)
    return chosen


@contextmanager
def batch_executor(chosen: EnginePlan) -> Iterator[tuple[Executor | None, int]]:
    """The executor batches are submitted to and how many run at once; (None, 0): run them here."""
    if chosen.engine == "local":
        if not chosen.workers:
            yield None, 0
            return
        if chosen.threads:
            threads = ThreadPoolExecutor(max_workers=chosen.workers, thread_name_prefix="replay-transform")
            try:
                yield threads, chosen.workers
            finally:  # an interrupted replay does not transform the batches still queued
                threads.shutdown(wait=True, cancel_futures=True)
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=chosen.workers, mp_context=context) as pool:
            yield pool, chosen.workers
        return
    with _dask_client(chosen) as client:
        slots = max(1, sum(client.nthreads().values()))
        yield client.get_executor(retries=TASK_RETRIES, pure=False), slots


@contextmanager
def _dask_client(chosen: EnginePlan) -> Iterator[Any]:
    """A connected ``distributed.Client``: to the scheduler given, or to a LocalCluster started here."""
    distributed: Any = importlib.import_module("distributed")  # only a dask replay pays for the import (untyped)
    Client, LocalCluster = distributed.Client, distributed.LocalCluster
    timeout = f"{chosen.connect_timeout_seconds}s"
    if chosen.scheduler is None:
        cluster = LocalCluster(
            n_workers=chosen.workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=chosen.worker_memory,
            dashboard_address=None,
            host="127.0.0.1",
        )
        try:
            with Client(cluster, timeout=timeout) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(chosen.scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterUnavailable(
            f"Dask scheduler {chosen.scheduler} unreachable within {chosen.connect_timeout_seconds:g}s: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    with client:
        if not client.nthreads():
            try:
                client.wait_for_workers(1, timeout=chosen.connect_timeout_seconds)
            except (OSError, TimeoutError):
                raise ClusterUnavailable(
                    f"Dask scheduler {chosen.scheduler} has no workers (waited {chosen.connect_timeout_seconds:g}s)"
                ) from None
        yield client
