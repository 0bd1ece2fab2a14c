"""A real Dask cluster on loopback for tests: ``python -m dask scheduler`` and ``python -m dask worker``
processes, as the Compose ``scale`` profile runs them (each worker its own process, no nanny, so a test
can kill one and see its tasks move to the other)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LoopbackCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)
    logs: Path | None = None

    def kill_worker(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The repository on the workers' path (they unpickle pipeline functions), no stray settings, and
    ``extra`` (e.g. the AWS_* variables a worker needs to read bronze from an object store)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "COINGECKO_", "DASK_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    return {**env, **(extra or {})}


def _wait_for_workers(address: str, count: int, deadline: float) -> None:
    from distributed import Client

    with Client(address, timeout="20s") as client:
        client.wait_for_workers(count, timeout=max(1.0, deadline - time.monotonic()))


@contextmanager
def loopback_cluster(
    workers: int = 2, *, memory_limit: str = "1GiB", logs: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[LoopbackCluster]:
    """A scheduler and ``workers`` single-threaded workers on 127.0.0.1 (``env``: more variables for
    them, e.g. the AWS_* a worker reads bronze from an object store with); everything stopped afterwards."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    out = open(logs, "ab") if logs else subprocess.DEVNULL  # noqa: SIM115 - closed below
    procs: list[subprocess.Popen] = []
    try:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=_env(),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=out,
        )
        procs.append(scheduler)
        cluster = LoopbackCluster(address, scheduler, logs=logs)
        for _ in range(workers):
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dask",
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--memory-limit",
                    memory_limit,
                ],
                env=_env(env),
                cwd=REPO_ROOT,
                stdout=out,
                stderr=out,
            )
            procs.append(worker)
            cluster.workers.append(worker)
        _wait_for_workers(address, workers, time.monotonic() + 60)
        yield cluster
    finally:
        for proc in reversed(procs):
            with suppress(ProcessLookupError):
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if logs:
            out.close()  # type: ignore[union-attr]
