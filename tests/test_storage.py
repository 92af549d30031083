"""Filesystem storage: atomic writes, safe keys, retention sweep."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from udic_jobs.storage import FileSystemStorage, StorageError


def test_put_get_delete_and_no_temp_files_left(tmp_path: Path) -> None:
    s = FileSystemStorage(tmp_path)
    s.put("bitstreams/a.udic", b"abc")
    assert s.get("bitstreams/a.udic") == b"abc" and s.exists("bitstreams/a.udic")
    s.put("bitstreams/a.udic", b"new")  # replace atomically
    assert s.get("bitstreams/a.udic") == b"new"
    assert [p.name for p in (tmp_path / "bitstreams").iterdir()] == ["a.udic"]
    s.delete("bitstreams/a.udic")
    with pytest.raises(KeyError):
        s.get("bitstreams/a.udic")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "", ".hidden"])
def test_keys_cannot_escape_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError):
        FileSystemStorage(tmp_path).put(key, b"x")


def test_sweep_removes_only_expired_files(tmp_path: Path) -> None:
    s = FileSystemStorage(tmp_path)
    s.put("uploads/old", b"1")
    s.put("uploads/new", b"2")
    old = time.time() - 3600
    os.utime(tmp_path / "uploads" / "old", (old, old))
    assert s.sweep(older_than_s=600) == 1
    assert not s.exists("uploads/old") and s.exists("uploads/new")
    assert s.ping()
