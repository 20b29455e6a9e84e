"""Fixed-window rate limits kept in the Store, so every replica shares one count."""

from __future__ import annotations

import math
from datetime import datetime

from botline.domain.clock import Clock
from botline.store.base import Store


class RateLimiter:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def hit(self, scope: str, *, limit: int, window_seconds: int) -> float | None:
        """Counts one attempt; returns None when allowed, else the seconds until the window resets."""
        now = self._clock.now()
        window_start = _window_start(now, window_seconds)
        count = await self._store.counters.increment(f"{scope}:{window_start}", ttl_seconds=window_seconds * 2)
        if count <= limit:
            return None
        return max(1.0, math.ceil(window_start + window_seconds - now.timestamp()))


def _window_start(now: datetime, window_seconds: int) -> int:
    timestamp = int(now.timestamp())
    return timestamp - timestamp % window_seconds
