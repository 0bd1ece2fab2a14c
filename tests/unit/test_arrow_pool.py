"""pipeline.arrow_pool: every process that builds Arrow tables allocates from the system pool
(mimalloc kept freed batches' pages: ~40 MB more per replay worker), unless the operator named one."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

#: Arrow's variable (not imported from pipeline.arrow_pool: a spawned worker imports this module, and
#: importing that would set the pool by itself).
POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def _backend_in_fresh_process(env: dict[str, str]) -> str:
    code = "import pyarrow as pa, pipeline.silver.transform; print(pa.default_memory_pool().backend_name)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def _worker_backend() -> str:
    import pyarrow as pa

    import pipeline.silver.transform  # noqa: F401  (what a replay worker imports to transform a batch)

    return str(pa.default_memory_pool().backend_name)


def _env_without_pool() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != POOL_VARIABLE}


def test_the_transform_allocates_from_the_system_pool() -> None:
    assert _backend_in_fresh_process(_env_without_pool()) == "system"


def test_a_spawned_replay_worker_allocates_from_the_system_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POOL_VARIABLE, raising=False)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_worker_backend).result(timeout=120) == "system"


def test_a_pool_the_operator_names_is_kept() -> None:
    env = _env_without_pool() | {POOL_VARIABLE: "mimalloc"}
    assert _backend_in_fresh_process(env) == "mimalloc"
