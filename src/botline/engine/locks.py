"""One turn at a time per conversation, within a process and across replicas.

A process-local asyncio.Lock keeps waiters in FIFO order; a lease in the Store (a Redis key; on
SQLite, which one process owns, a lease kept in that process) keeps other replicas out. The lease is
refreshed while held, so a long turn keeps it, and it expires on its own if the holder dies. Losing
the Store for a moment while holding a lease is not the holder's failure: a refresh that fails is
tried again, a release that fails is retried in the background until the Store is back (or the lease
has expired anyway), and the work done under it stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from botline.store.base import LockRepository, StoreError

log = logging.getLogger(__name__)

LEASE_SECONDS = 15.0
FIRST_POLL_SECONDS = 0.02
MAX_POLL_SECONDS = 0.5
RELEASE_RETRY_SECONDS = 0.5


class SessionLocks:
    def __init__(self, leases: LockRepository, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self._leases = leases
        self._lease_seconds = lease_seconds
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self._releasing: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._users[name] = self._users.get(name, 0) + 1
        try:
            async with lock:
                token = await self._acquire(name)
                # Most holds end long before the first refresh is due: a timer, and a refreshing task
                # only once it fires (a task per hold was measurable on the web chat's prompt path).
                refreshers: list[asyncio.Task[None]] = []
                timer = asyncio.get_running_loop().call_later(
                    self._lease_seconds / 3, lambda: refreshers.append(asyncio.create_task(self._refresh(name, token)))
                )
                try:
                    yield
                finally:
                    timer.cancel()
                    for refresher in refreshers:
                        refresher.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await refresher
                    await asyncio.shield(self._release(name, token))
        finally:
            self._users[name] -= 1
            if not self._users[name]:
                del self._users[name], self._locks[name]

    async def _acquire(self, name: str) -> str:
        delay = FIRST_POLL_SECONDS
        while (token := await self._leases.acquire(name, ttl_seconds=self._lease_seconds)) is None:
            await asyncio.sleep(delay)  # another replica holds it: there is no wake-up signal to wait on
            delay = min(delay * 2, MAX_POLL_SECONDS)
        return token

    async def _release(self, name: str, token: str) -> None:
        try:
            await self._leases.release(name, token)
        except StoreError as exc:
            # Not waited for: the holder's result (or its 503) must not wait for the Store to return.
            log.warning("could not release the lease on %s (%s); retrying in the background", name, exc)
            task = asyncio.create_task(self._release_later(name, token))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release_later(self, name: str, token: str) -> None:
        """Without this a chat would stay locked after a Store outage until its lease expired."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._lease_seconds
        while loop.time() < give_up_at:
            await asyncio.sleep(RELEASE_RETRY_SECONDS)
            with contextlib.suppress(StoreError):
                await self._leases.release(name, token)
                return

    async def _refresh(self, name: str, token: str) -> None:
        """Started a third of the lease after acquiring it; refreshes at once, then every third. A
        refresh the Store cannot take is tried again a third later, before the lease runs out."""
        while True:
            try:
                held = await self._leases.refresh(name, token, ttl_seconds=self._lease_seconds)
            except StoreError as exc:
                log.warning("could not refresh the lease on %s (%s); trying again", name, exc)
                held = True
            if not held:
                log.warning("lost the lease on %s while holding it", name)
                return
            await asyncio.sleep(self._lease_seconds / 3)
