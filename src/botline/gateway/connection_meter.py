"""Counters of LLM connections (calls, tokens, policy outcomes), summed in memory and written in one
batch every `interval` seconds, off the request path (like UsageRecorder)."""

from __future__ import annotations

import asyncio

from botline.domain.llm_connections import ConnectionStats
from botline.periodic import Periodic
from botline.store.base import LlmConnectionRepository, StoreError


class ConnectionMeter:
    def __init__(self, repository: LlmConnectionRepository, *, interval: float = 1.0) -> None:
        self._repository = repository
        self._pending: dict[tuple[str, str], ConnectionStats] = {}
        self._lock = asyncio.Lock()
        self._writer = Periodic("connection-meter", interval, self.flush)

    def add(self, account_id: str, connection_id: str, delta: ConnectionStats) -> None:
        key = (account_id, connection_id)
        held = self._pending.get(key)
        self._pending[key] = delta if held is None else held + delta

    async def start(self) -> None:
        self._writer.start()

    async def flush(self) -> None:
        """Writes what is pending now (read paths call it first, so what they show is current)."""
        async with self._lock:
            batch, self._pending = self._pending, {}
            if not batch:
                return
            try:
                await self._repository.add_stats(batch)
            except StoreError:
                for key, delta in batch.items():
                    self.add(*key, delta)
                raise

    async def close(self) -> None:
        await self._writer.close()
        await self.flush()
