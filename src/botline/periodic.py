"""A background job that runs every few seconds, survives Store hiccups, and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from botline.store.base import StoreError

log = logging.getLogger(__name__)


class Periodic:
    """Runs `work` every `interval` seconds; a StoreError is logged and the next round tries again."""

    def __init__(self, name: str, interval: float, work: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        self._interval = interval
        self._work = work
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._work()
            except StoreError as exc:
                log.warning("%s failed, will retry: %s", self._name, exc)
            except Exception:  # a bug in one round must not stop the job for good
                log.exception("%s failed, will retry", self._name)
