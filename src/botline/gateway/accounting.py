"""Usage accounting written off the request path, in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from botline.domain.usage import UsageRecord
from botline.store.base import StoreError, UsageRepository

log = logging.getLogger(__name__)


class UsageRecorder:
    """Collects usage records in memory and writes them in one batch every `interval` seconds.

    `flush()` writes what is pending now (read paths call it so that what they show is current);
    `close()` flushes and stops. A failed write keeps the records for the next attempt.
    """

    def __init__(self, repository: UsageRepository, *, interval: float = 1.0) -> None:
        self._repository = repository
        self._interval = interval
        self._pending: list[UsageRecord] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def add(self, record: UsageRecord) -> None:
        self._pending.append(record)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-recorder")

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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except StoreError as exc:
                log.warning("usage batch not written yet, will retry: %s", exc)
