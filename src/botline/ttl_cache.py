"""A small read-through cache whose entries are trusted for a fixed number of seconds.

For objects read on every request and edited rarely (gateways, chat clients): an edit through this
replica's API calls `forget` at once; other replicas see it within `ttl` (docs/deploy.md). Misses
(None) are not kept, so a new object is found at once. A load that was under way when `forget` ran
is returned to its caller but not kept: it may have read the object from before the edit.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, *, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[K, tuple[V, float]] = {}
        self._generation = 0
        """Bumped by every `forget`."""

    async def get(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        cached = self._entries.get(key)
        if cached is not None and time.monotonic() - cached[1] < self._ttl:
            return cached[0]
        generation = self._generation
        value = await load()
        if value is None:
            self._entries.pop(key, None)
        elif generation == self._generation:
            self._entries[key] = (value, time.monotonic())
        return value

    def forget(self, stale: Callable[[V], bool]) -> None:
        """Drops every entry whose value `stale` picks."""
        self._generation += 1
        self._entries = {k: v for k, v in self._entries.items() if not stale(v[0])}
