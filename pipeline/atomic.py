"""Atomic file writes: a reader (or a crash) sees the whole new file or no file, never a part of one.

Every write goes to a temporary name in the destination's own folder (same
filesystem), is flushed and fsynced, then renamed into place; the folder is
fsynced so the new name survives a power cut too. On any error (a full disk,
a killed write) the temporary file is removed and the error re-raised, so a
final name never holds a 0-byte or truncated file.

``overwrite=False`` (the default, what bronze needs) publishes with
``os.link(tmp, final)``, which fails atomically when ``final`` exists, then
drops the temporary name. On a filesystem without hard links it falls back to
check-then-rename (a tiny race window, only between two writers of one name).

* :func:`atomic_write_bytes` / :func:`atomic_write_text` — the data is in memory;
* :func:`atomic_path` — for writers that want a path (``pyarrow.parquet.write_table``,
  ``DataFrame.to_csv``): write to the yielded temporary path inside the ``with``.

Temporary names start with a dot and end with ``.tmp``; :func:`is_temp_name` tells them apart.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: errno values meaning "this filesystem cannot hard-link" (FUSE, SMB, some container mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}
_CHUNK = 1 << 20


def temp_name(final: Path) -> Path:
    """A fresh temporary name next to ``final``: ``.<name>.<random>.tmp``."""
    final = Path(final)
    return final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")


def is_temp_name(name: str) -> bool:
    """True for a name :func:`temp_name` makes (left behind only by a process killed mid-write)."""
    return name.startswith(".") and name.endswith(".tmp")


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a new or renamed name) durable. A no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on a directory
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view[:_CHUNK])
        if written <= 0:  # never happens on a sane kernel; do not loop forever
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:  # the original error matters more than a failed cleanup
        pass


def _publish(tmp: Path, final: Path, overwrite: bool) -> None:
    """Give the finished temporary file its final name, atomically."""
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # fails with FileExistsError, atomically, when final exists
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(final)) from None
        os.rename(tmp, final)
        return
    os.unlink(tmp)


def _check_absent(final: Path, overwrite: bool) -> None:
    """Fail before writing anything when the final name is taken (the link checks again, atomically)."""
    if not overwrite and os.path.lexists(final):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(final))


def atomic_write_bytes(
    path: Path | str,
    data: bytes | bytearray | memoryview,
    *,
    overwrite: bool = False,
    mode: int | None = 0o444,
    fsync: bool = True,
) -> Path:
    """Write ``data`` (bytes or any buffer) to ``path`` atomically; return ``path``.

    ``overwrite=False``: FileExistsError when ``path`` exists (checked atomically).
    ``mode``: the final permission bits (default read-only; None: what ``open()`` would give).
    ``fsync=False`` skips the flushes (still atomic for readers, not durable across a power cut).
    """
    final = Path(path)
    _check_absent(final, overwrite)
    tmp = temp_name(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
            os.fchmod(fd, _umask_mode() if mode is None else mode)
        finally:
            os.close(fd)
        _publish(tmp, final, overwrite)
    except BaseException:
        _remove_quietly(tmp)
        raise
    if fsync:
        fsync_dir(final.parent)
    return final


def atomic_write_text(
    path: Path | str,
    text: str,
    *,
    encoding: str = "utf-8",
    overwrite: bool = False,
    mode: int | None = 0o444,
    fsync: bool = True,
) -> Path:
    """:func:`atomic_write_bytes` for text."""
    return atomic_write_bytes(path, text.encode(encoding), overwrite=overwrite, mode=mode, fsync=fsync)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(
    path: Path | str, *, overwrite: bool = False, mode: int | None = 0o444, fsync: bool = True
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error, publish it atomically.

    Example::

        with atomic_path(folder / "prices.parquet") as tmp:
            pyarrow.parquet.write_table(table, tmp)

    If the block raises (or writes nothing), the temporary file is removed and nothing
    appears under ``path``.
    """
    final = Path(path)
    _check_absent(final, overwrite)
    tmp = temp_name(final)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(errno.ENOENT, f"the writer produced no file at {tmp}", str(tmp))
        if fsync:
            _fsync_file(tmp)
        os.chmod(tmp, _umask_mode() if mode is None else mode)
        _publish(tmp, final, overwrite)
    except BaseException:
        _remove_quietly(tmp)
        raise
    if fsync:
        fsync_dir(final.parent)
