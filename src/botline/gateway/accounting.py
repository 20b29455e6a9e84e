"""Usage accounting written off the request path, in batches."""

from __future__ import annotations

import asyncio

from botline.domain.usage import UsageRecord
from botline.periodic import Periodic
from botline.store.base import StoreError, UsageRepository


class UsageRecorder:
    """Collects usage records in memory and writes them in one batch every `interval` seconds.

    `flush()` writes what is pending now (read paths call it so that what they show is current);
    `close()` flushes and stops. A failed write keeps the records for the next attempt.
    """

    def __init__(self, repository: UsageRepository, *, interval: float = 1.0) -> None:
        self._repository = repository
        self._pending: list[UsageRecord] = []
        self._lock = asyncio.Lock()
        self._writer = Periodic("usage-writer", interval, self.flush)

    def add(self, record: UsageRecord) -> None:
        self._pending.append(record)

    async def start(self) -> None:
        self._writer.start()

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await self._repository.record(batch)
            except StoreError:
                self._pending[:0] = batch
                raise

    async def close(self) -> None:
        await self._writer.close()
        await self.flush()
