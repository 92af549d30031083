"""A small thread-safe LRU map: loaded models are large, so a process keeps only a few.

The API process serves decodes of many models from several threads and the worker keeps the
models it encoded with; both want "load once, reuse, forget the least recently used" and loads
that do not run twice for the same key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``capacity`` entries; reading an entry makes it the most recent."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: K) -> V | None:
        """The entry (now the most recent), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recent entry, forgetting the oldest beyond capacity."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The entry, loaded (once, under the lock: concurrent callers wait for it) when missing."""
        with self._lock:
            found = self.get(key)
            if found is not None:
                return found
            value = load()
            self.put(key, value)
            return value

    def discard_where(self, stale: Callable[[K], bool]) -> None:
        """Forget every entry whose key is ``stale`` (e.g. all qualities of a re-registered name)."""
        with self._lock:
            for key in [k for k in self._items if stale(k)]:
                del self._items[key]
