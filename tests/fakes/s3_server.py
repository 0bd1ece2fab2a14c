"""A real S3 API on loopback for tests: moto's server in a subprocess.

Why: bronze on an object store must be proved against the S3 protocol itself (HTTP
requests, listing, PUT, 404s), not a mock of the client. moto answers any
credentials; each test takes a bucket of its own, so one server serves a session.

Usage::

    with FakeS3() as s3:
        bucket = s3.new_bucket()
        env = s3.env(f"s3://{bucket}/bronze")  # BRONZE_URL and the AWS_* settings
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

ACCESS_KEY = "AKIATESTBRONZE0000001"
#: Tests assert this never shows in a log, an error, a repr or a pickle.
SECRET_KEY = "s3cr3t-bronze-key-must-never-be-printed-9d1f"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeS3:
    """moto's S3 server on 127.0.0.1, started and stopped by this object."""

    def __init__(self, start_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._fs: Any = None

    def __enter__(self) -> FakeS3:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._process.returncode}")
            try:
                with urllib.request.urlopen(self.endpoint_url + "/", timeout=1):
                    break
            except urllib.error.HTTPError:
                break  # it answers (an error status is an answer)
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"moto server did not answer on {self.endpoint_url}") from None
                time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    @property
    def fs(self) -> Any:
        """A pyarrow S3FileSystem on the fake, for the tests' own look-ups and tampering."""
        if self._fs is None:
            from pyarrow import fs

            self._fs = fs.S3FileSystem(
                access_key=ACCESS_KEY,
                secret_key=SECRET_KEY,
                region=REGION,
                scheme="http",
                endpoint_override=f"127.0.0.1:{self.port}",
                allow_bucket_creation=True,
                allow_bucket_deletion=True,
            )
        return self._fs

    def new_bucket(self) -> str:
        name = f"bronze-{uuid.uuid4().hex[:12]}"
        self.fs.create_dir(name)
        return name

    def env(self, bronze_url: str, *, endpoint_url: str | None = None) -> dict[str, str]:
        """BRONZE_URL and the standard AWS settings pointing at this server (or at ``endpoint_url``)."""
        return {
            "BRONZE_URL": bronze_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": endpoint_url or self.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
        }

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` (folder markers left out)."""
        from pyarrow import fs

        base = f"{bucket}/{prefix}".rstrip("/")
        infos = self.fs.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
        return sorted(i.path[len(bucket) + 1 :] for i in infos if i.type == fs.FileType.File)

    def read(self, bucket: str, key: str) -> bytes:
        with self.fs.open_input_stream(f"{bucket}/{key}", compression=None) as stream:
            return bytes(stream.read())

    def write(self, bucket: str, key: str, data: bytes) -> None:
        with self.fs.open_output_stream(f"{bucket}/{key}", compression=None) as stream:
            stream.write(data)
