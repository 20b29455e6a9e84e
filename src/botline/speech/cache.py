"""Synthesised audio kept in memory, bounded by bytes; concurrent asks for the same key share one call.

A retry of a turn, a page that reloads its player or a second channel send asks for the same audio:
it is synthesised once. Replicas do not share this cache (docs/decisions.md, "Spoken answers").
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class AudioCache(Generic[T]):
    def __init__(self, max_bytes: int, size_of: Callable[[T], int]) -> None:
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[str, T] = OrderedDict()
        self._used = 0
        self._pending: dict[str, asyncio.Task[T]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    async def get_or_make(self, key: str, make: Callable[[], Awaitable[T]]) -> T:
        """The cached value, the one being made for `key`, or a new one from `make` (stored when it fits).
        A failure is not cached: the next ask tries again."""
        if (found := self._items.get(key)) is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return found
        task = self._pending.get(key)
        if task is None:
            self.misses += 1
            task = asyncio.ensure_future(make())
            self._pending[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        else:
            self.hits += 1
        return await asyncio.shield(task)

    def _settle(self, key: str, task: asyncio.Task[T]) -> None:
        self._pending.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return
        value = task.result()
        size = self._size_of(value)
        if size > self._max_bytes:
            return
        self._items[key] = value
        self._used += size
        while self._used > self._max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._used -= self._size_of(dropped)
