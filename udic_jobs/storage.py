"""Blob storage for uploads and bitstreams, behind a small interface, and the keys jobs use in it.

The API stores a job's upload (or a domain job's sample images) under :func:`upload_key` /
:func:`sample_key`; the worker reads them and stores the bitstream under :func:`bitstream_key`.

The filesystem backend writes atomically (temp file in the same folder, fsync, rename), so a
crash never leaves a half-written bitstream under its final name, and readers never see one.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path
from typing import Protocol

from udic_jobs.payloads import DomainPayload, JobPayload

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$")


class StorageError(RuntimeError):
    pass


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def ping(self) -> bool: ...
    def sweep(self, older_than_s: float) -> int: ...


class FileSystemStorage:
    """Keys are relative paths under ``root`` (validated: no '..', no absolute paths)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise StorageError(f"invalid storage key {key!r}")
        return self.root / key

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
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def ping(self) -> bool:
        probe = self.root / ".ping"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
            return True
        except OSError:
            return False

    def sweep(self, older_than_s: float) -> int:
        """Delete files older than the retention (and stale temp files); returns the count."""
        cutoff = time.time() - older_than_s
        n = 0
        for path in self.root.rglob("*"):
            if path.is_file() and path.name != ".ping":
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        n += 1
                except FileNotFoundError:
                    pass
        return n


class _StorageSettings(Protocol):
    storage_root: Path


def storage_from_settings(settings: _StorageSettings) -> Storage:
    return FileSystemStorage(Path(settings.storage_root))


def upload_key(job_id: str) -> str:
    """An encode job's uploaded image; a domain job's samples lie under it (:func:`sample_key`)."""
    return f"uploads/{job_id}"


def sample_key(job_id: str, index: int) -> str:
    return f"{upload_key(job_id)}/{index}"


def bitstream_key(job_id: str) -> str:
    return f"bitstreams/{job_id}.udic"


def input_keys(job_id: str, payload: JobPayload) -> list[str]:
    """The blobs the API stored for a job: what the worker reads, and deletes once it is done."""
    if isinstance(payload, DomainPayload):
        return [sample_key(job_id, i) for i in range(payload.samples)]
    return [upload_key(job_id)]
