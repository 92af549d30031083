"""Domain adapter files kept in the blob storage (``domains/{id}.pt``), so that every host sees them.

The codec's :class:`codec.domains.store.DomainStore` reads and writes adapter files through a small
interface (``read``/``write``/``names``/``remove`` by file name); this class is that interface over
a :class:`~udic_jobs.storage.base.Storage`. Structural typing keeps ``udic_jobs`` free of ``codec``.
"""

from __future__ import annotations

from dataclasses import dataclass

from udic_jobs.storage.base import Storage
from udic_jobs.storage.keys import DOMAINS


@dataclass(frozen=True, eq=False)
class StorageAdapterFiles:
    storage: Storage

    @property
    def where(self) -> str:
        return f"{self.storage.location}/{DOMAINS.rstrip('/')}"

    def read(self, name: str) -> bytes:
        return self.storage.get(DOMAINS + name)

    def exists(self, name: str) -> bool:
        return self.storage.exists(DOMAINS + name)

    def write(self, name: str, data: bytes) -> None:
        self.storage.put(DOMAINS + name, data)

    def names(self) -> list[str]:
        return [b.key[len(DOMAINS) :] for b in self.storage.list(DOMAINS) if "/" not in b.key[len(DOMAINS) :]]

    def remove(self, name: str) -> None:
        self.storage.delete(DOMAINS + name)
