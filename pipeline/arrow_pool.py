"""Where Arrow's buffers come from: the C library's allocator, not the mimalloc pyarrow bundles.

mimalloc keeps the pages of freed buffers for reuse, so a replay's processes stay at their
largest batch's footprint and more. Measured on a replay of 1M records (4,000 bronze runs, one
worker, PostgreSQL and SQLite, side by side on this 2-core machine): the loading process peaks
17-35 MB lower and the worker ~40 MB lower (217 -> 177 MB), at the same speed within run-to-run
noise. An operator's own ARROW_DEFAULT_MEMORY_POOL (Arrow's variable) is left as it is.

Imported by ``pipeline.arrow_load``, which every process that builds Arrow tables imports (the
replay workers too, whether local threads, processes or Dask workers).
"""

from __future__ import annotations

import os

import pyarrow as pa

#: Arrow's own variable naming the default pool ("system", "jemalloc", "mimalloc").
POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def use_system_pool() -> str:
    """Make the system allocator Arrow's default pool unless the environment names one; returns
    the backend in use."""
    if not os.environ.get(POOL_VARIABLE):
        pa.set_memory_pool(pa.system_memory_pool())
    return str(pa.default_memory_pool().backend_name)


use_system_pool()
