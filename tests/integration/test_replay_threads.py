"""On PostgreSQL, replay's batch transforms run in a thread of the loading process, not a spawned process.

The loading process mostly waits on the server there, so one thread transforms as fast as a worker
process did (1M records: silver 29-31 s either way) without a second interpreter with its own pyarrow,
pandas and batches in memory: the replay's process tree peaked at 413-417 MB with a worker process,
232-233 MB with the thread (benchmarks.bench child replay, this machine). The result is the same rows."""

from __future__ import annotations

import os
import threading

from pipeline import engines, flow
from pipeline.flow import replay
from tests.conftest import _fresh_postgres_database
from tests.replay_compare import contents, settings_for


def test_postgresql_transforms_in_a_thread_and_loads_the_same_rows(replay_bronze, postgres_url, monkeypatch):
    single = replay(settings_for(postgres_url, replay_bronze), plan=engines.EnginePlan("local", workers=0))
    expected = contents(postgres_url)
    assert single.silver_rows > 0 and single.quarantined > 0

    ran_in: set[tuple[int, str]] = set()
    prepare = flow.prepare_batch

    def recorded(*args, **kwargs):
        ran_in.add((os.getpid(), threading.current_thread().name))
        return prepare(*args, **kwargs)

    monkeypatch.setattr(flow, "prepare_batch", recorded)
    with _fresh_postgres_database() as second:
        result = replay(
            settings_for(second, replay_bronze),
            plan=engines.plan("local", workers=1, scheduler=None, worker_memory="1GiB", timeout=10),
        )
        assert (result.silver_rows, result.quarantined) == (single.silver_rows, single.quarantined)
        assert contents(second) == expected
    assert {pid for pid, _ in ran_in} == {os.getpid()}  # no other process transformed a batch
    assert all(name != threading.main_thread().name for _, name in ran_in)
    assert len(ran_in) >= 1
