"""What every blob storage backend offers, and the one rule for keys.

Two backends implement :class:`Storage`: a folder (:mod:`udic_jobs.storage.filesystem`) and an
S3-compatible bucket (:mod:`udic_jobs.storage.s3`). Keys are validated the same way for both, so a
key that works on one host's folder works in the bucket, and none can escape its root or prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$")


class StorageError(RuntimeError):
    """A bad key, or a backend that cannot be reached or configured."""


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob as a listing shows it: its key, when it was last written (epoch s) and its size."""

    key: str
    modified: float
    size: int


class Storage(Protocol):
    """Blobs by key. ``put`` is atomic: readers see the old bytes or the new ones, never a part.

    ``get`` raises KeyError for a missing key; ``delete`` of a missing key is not an error;
    ``list`` yields every blob whose key starts with ``prefix``, in no particular order.
    """

    #: where the blobs live, for logs and messages ("/data/storage", "s3://bucket/prefix")
    location: str

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> Iterator[BlobInfo]: ...
    def ping(self) -> bool: ...


def check_key(key: str) -> str:
    """``key`` if it is a valid storage key (relative, no '..' segment), else StorageError."""
    if not _KEY.match(key) or ".." in key.split("/"):
        raise StorageError(f"invalid storage key {key!r}")
    return key
