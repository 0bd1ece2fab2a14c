"""Where bronze lives: a local folder (the default) or an S3-compatible object store (``BRONZE_URL``).

Bronze code talks to a :class:`Store` with native paths (``PurePath``): a filesystem
path for :class:`LocalStore`, ``bucket/key`` for :class:`ObjectStore`. Both keep the
bronze rule that a file appears whole or not at all, and is never overwritten:

* local: :mod:`pipeline.atomic` (temporary name, fsync, hard link/rename);
* object store: one PUT per object (pyarrow's S3 output stream sends a small object
  as a single PutObject and a large one as a multipart upload, which also becomes
  visible only when completed). "Never overwrite" is check-then-put there (a tiny
  race, only between two writers of one run id, which are unique). Folders do not
  exist on an object store: a run folder is the prefix its objects share, and the
  manifest, written last, is still the commit.

An :class:`ObjectStore` is built from its URL and the standard AWS settings
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``,
``AWS_DEFAULT_REGION``, read by :mod:`pipeline.config`). It connects lazily and
pickles as its location only (URL, endpoint, region: never the keys, never an open
connection), so a replay worker in another process or on another machine builds its
own client, with the credentials of its own environment. Its repr and every message
name the ``s3://`` location only. A store that cannot be reached fails within its
connect deadline as :class:`~pipeline.errors.ObjectStoreUnavailable`.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from pipeline.atomic import atomic_write_bytes, is_temp_name
from pipeline.errors import ConfigError, ObjectStoreUnavailable

#: Seconds to open a connection to the object store before it counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 5.0
#: Seconds a request may take (honoured by the AWS SDK on some platforms only).
REQUEST_TIMEOUT_SECONDS = 30.0
#: Objects from this size may go up as a multipart upload (pyarrow's part size is larger): checked after.
SINGLE_PUT_BYTES = 5 * 1024 * 1024
#: Tries per request (the first and one retry): an unreachable store fails within seconds.
MAX_ATTEMPTS = 2


class Store(ABC):
    """A place for bronze files: read, write once, list, remove. Paths are the store's own (``root / ...``)."""

    root: PurePath

    @abstractmethod
    def location(self, path: PurePath | None = None) -> str:
        """``path`` (default: the root) as a person reads it; never holds a credential."""

    def check(self) -> None:
        """Fail now when the store cannot be used at all (an object store: unreachable, or no bucket)."""
        return None  # a local folder is created on the first write

    @abstractmethod
    def read_bytes(self, path: PurePath) -> bytes:
        """The whole file; FileNotFoundError when it is missing."""

    @abstractmethod
    def write_once(self, path: PurePath, data: bytes | memoryview) -> None:
        """Create ``path`` with ``data``, whole or not at all; FileExistsError when it exists."""

    @abstractmethod
    def make_folder(self, path: PurePath) -> None:
        """Claim a new run folder; FileExistsError when it is taken."""

    @abstractmethod
    def is_file(self, path: PurePath) -> bool: ...

    @abstractmethod
    def is_folder(self, path: PurePath) -> bool: ...

    @abstractmethod
    def size(self, path: PurePath) -> int:
        """Bytes in the file; FileNotFoundError when it is missing, IsADirectoryError when it is not a file."""

    @abstractmethod
    def folders(self, path: PurePath) -> list[PurePath]:
        """The folders directly under ``path``, by name (none when ``path`` is missing)."""

    @abstractmethod
    def files(self, path: PurePath) -> list[PurePath]:
        """The files directly under ``path``, by name, without temporary files (none when missing)."""

    @abstractmethod
    def tree_bytes(self, path: PurePath) -> int:
        """Bytes in every file under ``path``."""

    @abstractmethod
    def remove_tree(self, path: PurePath) -> None:
        """Remove ``path`` and everything under it (retention only)."""

    @abstractmethod
    def remove_empty_folder(self, path: PurePath) -> bool:
        """Remove ``path`` when nothing is under it; False when something is (it is kept)."""


@dataclass(frozen=True)
class LocalStore(Store):
    """Bronze in a local folder (``DATA_DIR/raw``): files written through :mod:`pipeline.atomic`."""

    root: Path

    def location(self, path: PurePath | None = None) -> str:
        return str(self.root if path is None else path)

    def read_bytes(self, path: PurePath) -> bytes:
        return Path(path).read_bytes()

    def write_once(self, path: PurePath, data: bytes | memoryview) -> None:
        atomic_write_bytes(Path(path), data, overwrite=False, mode=0o444)

    def make_folder(self, path: PurePath) -> None:
        Path(path).mkdir(parents=True, exist_ok=False)

    def is_file(self, path: PurePath) -> bool:
        return Path(path).is_file()

    def is_folder(self, path: PurePath) -> bool:
        return Path(path).is_dir()

    def size(self, path: PurePath) -> int:
        info = Path(path).stat()
        if not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(f"not a regular file: {path}")
        return info.st_size

    def folders(self, path: PurePath) -> list[PurePath]:
        folder = Path(path)
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def files(self, path: PurePath) -> list[PurePath]:
        folder = Path(path)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if not p.is_dir() and not is_temp_name(p.name))

    def tree_bytes(self, path: PurePath) -> int:
        return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())

    def remove_tree(self, path: PurePath) -> None:
        folder = Path(path)
        for item in folder.rglob("*"):  # bronze files are read-only: make them writable first
            os.chmod(item, 0o644)
        shutil.rmtree(folder)

    def remove_empty_folder(self, path: PurePath) -> bool:
        try:
            Path(path).rmdir()
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible store, from the AWS_* settings (read once, in
    ``pipeline.config``, for bronze and the lake alike). Keys stay out of repr."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    #: AWS_ALLOW_HTTP as given (delta-rs refuses a plain-http endpoint without it); None: unset.
    allow_http: str | None = None

    def delta_options(self) -> dict[str, str]:
        """The same settings under delta-rs's storage option names (for an ``s3://`` lake).
        An ``http://`` endpoint (MinIO, moto) implies AWS_ALLOW_HTTP=true unless it is set."""
        options = {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_SESSION_TOKEN": self.session_token,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ALLOW_HTTP": self.allow_http,
        }
        if self.allow_http is None and (self.endpoint_url or "").startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
        return {name: value for name, value in options.items() if value}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes at the ends); ConfigError when malformed."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError("BRONZE_URL must be a local folder or s3://bucket/prefix")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            "BRONZE_URL must be s3://bucket/prefix without credentials or options "
            "(the keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        )
    return parts.netloc, parts.path.strip("/")


class ObjectStore(Store):
    """Bronze under ``s3://bucket/prefix`` on any S3-compatible store, through pyarrow.fs.S3FileSystem."""

    def __init__(self, url: str, options: S3Options | None = None) -> None:
        bucket, prefix = parse_s3_url(url)
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self.root = PurePosixPath(bucket, prefix) if prefix else PurePosixPath(bucket)
        self.options = options or S3Options()
        self._fs: Any = None

    # Pickled as its location only: the worker connects itself, with its own credentials.
    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "endpoint_url": self.options.endpoint_url, "region": self.options.region}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], S3Options(endpoint_url=state["endpoint_url"], region=state["region"]))  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r}, endpoint={self.options.endpoint_url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectStore) and (self.url, self.options.endpoint_url) == (
            other.url,
            other.options.endpoint_url,
        )

    def __hash__(self) -> int:
        return hash((self.url, self.options.endpoint_url))

    def location(self, path: PurePath | None = None) -> str:
        return f"s3://{self.root if path is None else path}"

    def _filesystem(self) -> Any:  # a pyarrow.fs.S3FileSystem (pyarrow is untyped)
        if self._fs is None:
            from pyarrow import fs

            endpoint, scheme = None, None
            if self.options.endpoint_url:
                parts = urlsplit(self.options.endpoint_url)
                scheme = parts.scheme or "https"
                endpoint = parts.netloc or parts.path
            self._fs = fs.S3FileSystem(
                access_key=self.options.access_key,
                secret_key=self.options.secret_key,
                session_token=self.options.session_token,
                region=self.options.region,
                endpoint_override=endpoint,
                scheme=scheme,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                request_timeout=REQUEST_TIMEOUT_SECONDS,
                retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS),
                # Open output streams lazily: an object smaller than a part is then sent on close as one
                # PutObject (eager opening starts a multipart upload for every object, three requests).
                allow_delayed_open=True,
            )
        return self._fs

    def _failed(self, exc: OSError, doing: str) -> ObjectStoreUnavailable:
        """The store's error as one line naming the location (AWS messages name no key or secret)."""
        detail = " ".join(str(exc).split())
        if len(detail) > 300:
            detail = detail[:297] + "..."
        return ObjectStoreUnavailable(f"object store {self.url} failed while {doing}: {detail}")

    def _info(self, path: PurePath) -> Any:
        try:
            return self._filesystem().get_file_info(str(path))
        except OSError as exc:
            raise self._failed(exc, f"looking up {self.location(path)}") from None

    def _listing(self, path: PurePath, *, recursive: bool = False) -> list[Any]:
        from pyarrow import fs

        try:
            found = self._filesystem().get_file_info(
                fs.FileSelector(str(path), allow_not_found=True, recursive=recursive)
            )
        except OSError as exc:
            raise self._failed(exc, f"listing {self.location(path)}") from None
        return sorted(found, key=lambda info: info.path)

    def check(self) -> None:
        """Fail now, within the connect deadline, when the store cannot be reached or the bucket is not there."""
        from pyarrow import fs

        info = self._info(PurePosixPath(self.root.parts[0]))
        if info.type == fs.FileType.NotFound:
            raise ObjectStoreUnavailable(f"object store {self.url}: bucket {self.root.parts[0]!r} not found")

    def read_bytes(self, path: PurePath) -> bytes:
        try:
            with self._filesystem().open_input_stream(str(path), compression=None) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self._failed(exc, f"reading {self.location(path)}") from None

    def write_once(self, path: PurePath, data: bytes | memoryview) -> None:
        from pyarrow import fs

        if self._info(path).type != fs.FileType.NotFound:
            raise FileExistsError(f"already in the object store: {self.location(path)}")
        try:
            # All the data goes in one write and is sent when the stream closes: one PutObject below the
            # part size, else a multipart upload, which becomes visible only when completed.
            with self._filesystem().open_output_stream(str(path), compression=None) as stream:
                stream.write(data)
        except OSError as exc:
            raise self._failed(exc, f"writing {self.location(path)}") from None
        if len(data) >= SINGLE_PUT_BYTES and self.size(path) != len(data):
            # A multipart upload completed without a failed part: never leave it under its final name.
            self._filesystem().delete_file(str(path))
            raise ObjectStoreUnavailable(f"object store {self.url}: {self.location(path)} was stored incomplete")

    def make_folder(self, path: PurePath) -> None:
        if self._listing(path):
            raise FileExistsError(f"already in the object store: {self.location(path)}")

    def is_file(self, path: PurePath) -> bool:
        from pyarrow import fs

        return bool(self._info(path).type == fs.FileType.File)

    def is_folder(self, path: PurePath) -> bool:
        from pyarrow import fs

        return bool(self._info(path).type == fs.FileType.Directory)

    def size(self, path: PurePath) -> int:
        from pyarrow import fs

        info = self._info(path)
        if info.type == fs.FileType.NotFound:
            raise FileNotFoundError(f"not in the object store: {self.location(path)}")
        if info.type != fs.FileType.File:
            raise IsADirectoryError(f"not an object: {self.location(path)}")
        return int(info.size)

    def folders(self, path: PurePath) -> list[PurePath]:
        from pyarrow import fs

        return [PurePosixPath(i.path) for i in self._listing(path) if i.type == fs.FileType.Directory]

    def files(self, path: PurePath) -> list[PurePath]:
        from pyarrow import fs

        return [
            PurePosixPath(i.path)
            for i in self._listing(path)
            if i.type == fs.FileType.File and not is_temp_name(PurePosixPath(i.path).name)
        ]

    def tree_bytes(self, path: PurePath) -> int:
        from pyarrow import fs

        return sum(int(i.size) for i in self._listing(path, recursive=True) if i.type == fs.FileType.File)

    def remove_tree(self, path: PurePath) -> None:
        try:
            self._filesystem().delete_dir(str(path))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._failed(exc, f"removing {self.location(path)}") from None

    def remove_empty_folder(self, path: PurePath) -> bool:
        if self._listing(path):
            return False
        self.remove_tree(path)  # the folder marker pyarrow may leave after deleting what was under it
        return True


@functools.lru_cache(maxsize=8)
def open_store(url: str, options: S3Options | None = None) -> Store:
    """The store for ``url``: ``s3://bucket/prefix`` or a local folder (a path or ``file://`` URL)."""
    if url.startswith("s3://"):
        return ObjectStore(url, options)
    if "://" in url and not url.startswith("file://"):
        raise ConfigError(f"BRONZE_URL must be a local folder or s3://bucket/prefix, got {url.split('://')[0]}://...")
    return LocalStore(Path(url.removeprefix("file://")))
