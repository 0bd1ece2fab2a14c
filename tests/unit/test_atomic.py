"""Atomic writes: whole file or no file under the final name, whatever fails."""

from __future__ import annotations

import errno
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import atomic
from pipeline.atomic import atomic_path, atomic_write_bytes, atomic_write_text, is_temp_name


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def enospc_after(monkeypatch, limit: int) -> list[int]:
    """os.write accepts ``limit`` more bytes (a short write at the edge, like the kernel), then ENOSPC."""
    real_write = os.write
    left = [limit]

    def write(fd, data):
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        chunk = memoryview(data)[: left[0]]
        n = real_write(fd, chunk)
        left[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)
    return left


def test_writes_bytes_read_only_and_leaves_no_temp(tmp_path):
    path = atomic_write_bytes(tmp_path / "a.json", b'{"x": 1}')
    assert path == tmp_path / "a.json" and path.read_bytes() == b'{"x": 1}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert names(tmp_path) == ["a.json"]


def test_mode_none_follows_the_umask_and_text_helper(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "b.txt", "héllo", mode=None)
    finally:
        os.umask(old)
    assert path.read_text(encoding="utf-8") == "héllo"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_never_overwrites_by_default(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_bytes(path, b"first")
    with pytest.raises(FileExistsError):
        atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"first" and names(tmp_path) == ["a.json"]


def test_the_link_refuses_a_name_taken_meanwhile(tmp_path, monkeypatch):
    """The early existence check can race; the link is what refuses, atomically."""
    path = tmp_path / "a.json"
    monkeypatch.setattr(atomic, "_check_absent", lambda final, overwrite: None)
    path.write_bytes(b"someone else")
    with pytest.raises(FileExistsError):
        atomic_write_bytes(path, b"mine")
    assert path.read_bytes() == b"someone else" and names(tmp_path) == ["a.json"]


def test_overwrite_replaces_in_one_step(tmp_path):
    path = tmp_path / "a.csv"
    atomic_write_bytes(path, b"old", mode=0o644)
    atomic_write_bytes(path, b"new", overwrite=True, mode=0o644)
    assert path.read_bytes() == b"new" and names(tmp_path) == ["a.csv"]


@pytest.mark.parametrize("limit", [0, 10, 4096])
def test_a_full_disk_leaves_nothing_under_the_final_name(tmp_path, monkeypatch, limit):
    enospc_after(monkeypatch, limit)
    with pytest.raises(OSError) as failure:
        atomic_write_bytes(tmp_path / "big.json", b"x" * 100_000)
    assert failure.value.errno == errno.ENOSPC
    assert names(tmp_path) == []  # no final name, no temp file


def test_a_full_disk_keeps_the_old_file_when_overwriting(tmp_path, monkeypatch):
    path = tmp_path / "a.csv"
    atomic_write_bytes(path, b"old complete file", mode=0o644)
    enospc_after(monkeypatch, 5)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new longer content", overwrite=True)
    assert path.read_bytes() == b"old complete file" and names(tmp_path) == ["a.csv"]


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, memoryview(data)[:7]))
    data = bytes(range(256)) * 40
    assert atomic_write_bytes(tmp_path / "a.bin", data).read_bytes() == data


def test_file_and_folder_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync = os.fsync

    def fsync(fd):
        calls.append((stat.S_ISDIR(os.fstat(fd).st_mode), sorted(os.listdir(tmp_path))))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write_bytes(tmp_path / "a.json", b"data")
    (file_sync, before), (dir_sync, after) = calls
    assert not file_sync and len(before) == 1 and is_temp_name(before[0])  # the temp file, not yet renamed
    assert dir_sync and after == ["a.json"]


def test_without_hard_links_it_still_refuses_to_overwrite(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    path = atomic_write_bytes(tmp_path / "a.json", b"one")
    assert path.read_bytes() == b"one" and names(tmp_path) == ["a.json"]
    with pytest.raises(FileExistsError):
        atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"one" and names(tmp_path) == ["a.json"]


def test_atomic_path_for_writers_that_take_a_path(tmp_path):
    table = pa.table({"id": ["a", "b"], "price": [1.0, 2.0]})
    final = tmp_path / "t.parquet"
    with atomic_path(final) as tmp:
        assert tmp.parent == tmp_path and is_temp_name(tmp.name)
        pq.write_table(table, tmp)
        assert not final.exists()
    assert pq.read_table(final).equals(table)
    assert stat.S_IMODE(final.stat().st_mode) == 0o444 and names(tmp_path) == ["t.parquet"]
    with pytest.raises(FileExistsError):
        with atomic_path(final):
            pass


def test_atomic_path_removes_a_half_written_file(tmp_path):
    final = tmp_path / "t.csv"
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(final, mode=0o644) as tmp:
            tmp.write_text("id,price\nbtc,")
            raise RuntimeError("writer died")
    assert names(tmp_path) == []


def test_atomic_path_when_the_writer_wrote_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        with atomic_path(tmp_path / "t.csv"):
            pass
    assert names(tmp_path) == []
