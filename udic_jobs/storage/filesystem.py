"""Blob storage in a local folder (one host, or a shared volume).

Writes are atomic (temp file in the same folder, fsync, rename), so a crash never leaves a
half-written bitstream under its final name, and readers never see one. Temp files start with a
dot: listings skip them, except for stale ones (an hour old: a crashed writer's), which they yield
so that a sweep of the kind removes them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from udic_jobs.storage.base import BlobInfo, check_key

STALE_TEMP_S = 3600.0


class FileSystemStorage:
    """Keys are relative paths under ``root`` (validated: no '..', no absolute paths)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # a domain job's samples lie in a folder of their own: remove it once it is empty
        parent = path.parent
        while parent != self.root and parent.parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return
        stale = time.time() - STALE_TEMP_S
        for path in folder.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if not key.startswith(prefix):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # deleted while we looked
                continue
            if not path.is_file() or path.name == ".ping":
                continue
            if path.name.startswith(".") and st.st_mtime > stale:
                continue  # a write in progress
            yield BlobInfo(key, st.st_mtime, st.st_size)

    def ping(self) -> bool:
        probe = self.root / ".ping"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
            return True
        except OSError:
            return False
